// FaultInjectingBackend: an IommuBackend decorator that asks a FaultInjector at the backend.*
// injection points before forwarding each mutating call; an injected error is returned without
// reaching the hardware (so the call changed nothing, as the backend contract requires).
// Translation and read-back are never injected. Thread-safe as the wrapped backend is.
#ifndef IOMMUD_CORE_BACKEND_FAULT_INJECTING_BACKEND_H_
#define IOMMUD_CORE_BACKEND_FAULT_INJECTING_BACKEND_H_

#include <vector>

#include "core/backend/iommu_backend.h"
#include "core/fault_injector.h"

namespace iommud {

class FaultInjectingBackend : public IommuBackend {
 public:
  // Neither is owned; both must outlive this.
  FaultInjectingBackend(IommuBackend* wrapped, FaultInjector* injector)
      : wrapped_(wrapped), injector_(injector) {}

  absl::string_view name() const override { return wrapped_->name(); }
  absl::Status AddUnit(absl::string_view unit, const UnitCaps& caps) override;
  absl::Status AllocDomain(absl::string_view unit, DomainId id, DomainType type) override;
  absl::Status FreeDomain(DomainId id) override;
  absl::Status AttachRid(absl::string_view unit, Rid rid, DomainId domain) override;
  absl::Status ReleaseRid(absl::string_view unit, Rid rid) override;
  absl::Status Map(DomainId domain, uint64_t iova, uint64_t paddr, uint64_t size,
                   uint32_t prot) override;
  absl::StatusOr<uint64_t> Unmap(DomainId domain, uint64_t iova, uint64_t size) override;
  absl::Status InvalidateIotlb(DomainId domain, uint64_t iova, uint64_t size) override;
  Translation Translate(absl::string_view unit, Rid rid, uint64_t iova, uint32_t access) override {
    return wrapped_->Translate(unit, rid, iova, access);
  }
  std::vector<FaultRecord> DrainFaults() override { return wrapped_->DrainFaults(); }
  absl::StatusOr<RidEntry> ReadRid(absl::string_view unit, Rid rid) override {
    return wrapped_->ReadRid(unit, rid);
  }
  absl::StatusOr<std::vector<RidEntry>> ReadRids(absl::string_view unit) override {
    return wrapped_->ReadRids(unit);
  }
  std::vector<DomainId> ReadDomains() override { return wrapped_->ReadDomains(); }
  absl::StatusOr<std::vector<Mapping>> ReadMappings(DomainId domain) override {
    return wrapped_->ReadMappings(domain);
  }
  BackendStats Stats() override { return wrapped_->Stats(); }

 private:
  IommuBackend* const wrapped_;
  FaultInjector* const injector_;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_BACKEND_FAULT_INJECTING_BACKEND_H_

// ForwardingBackend: an IommuBackend that forwards every call to another one. Decorators (fault
// injection, instrumentation, test doubles) derive from it and override only what they change.
#ifndef IOMMUD_CORE_BACKEND_FORWARDING_BACKEND_H_
#define IOMMUD_CORE_BACKEND_FORWARDING_BACKEND_H_

#include <optional>
#include <vector>

#include "core/backend/iommu_backend.h"

namespace iommud {

class ForwardingBackend : public IommuBackend {
 public:
  // `wrapped` is not owned and must outlive this.
  explicit ForwardingBackend(IommuBackend* wrapped) : wrapped_(wrapped) {}

  absl::string_view name() const override { return wrapped_->name(); }
  absl::Status AddUnit(absl::string_view unit, const UnitCaps& caps) override {
    return wrapped_->AddUnit(unit, caps);
  }
  absl::Status AllocDomain(absl::string_view unit, DomainId id, DomainType type) override {
    return wrapped_->AllocDomain(unit, id, type);
  }
  absl::Status FreeDomain(DomainId id) override { return wrapped_->FreeDomain(id); }
  absl::Status AttachRid(absl::string_view unit, Rid rid, DomainId domain) override {
    return wrapped_->AttachRid(unit, rid, domain);
  }
  absl::Status ReleaseRid(absl::string_view unit, Rid rid) override {
    return wrapped_->ReleaseRid(unit, rid);
  }
  absl::Status Map(DomainId domain, uint64_t iova, uint64_t paddr, uint64_t size,
                   uint32_t prot) override {
    return wrapped_->Map(domain, iova, paddr, size, prot);
  }
  absl::StatusOr<uint64_t> Unmap(DomainId domain, uint64_t iova, uint64_t size) override {
    return wrapped_->Unmap(domain, iova, size);
  }
  absl::Status InvalidateIotlb(DomainId domain, uint64_t iova, uint64_t size) override {
    return wrapped_->InvalidateIotlb(domain, iova, size);
  }
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
  absl::Status CanReplaceDomain(absl::string_view unit, Rid rid) override {
    return wrapped_->CanReplaceDomain(unit, rid);
  }
  absl::StatusOr<std::optional<std::vector<IovaRange>>> KernelIovaRanges(
      DomainId domain) override {
    return wrapped_->KernelIovaRanges(domain);
  }
  absl::Status HandOverGroup(absl::string_view unit, Rid rid, uint32_t uid, uint32_t gid) override {
    return wrapped_->HandOverGroup(unit, rid, uid, gid);
  }
  absl::Status TakeBackGroup(absl::string_view unit, Rid rid, bool force) override {
    return wrapped_->TakeBackGroup(unit, rid, force);
  }
  std::vector<HandoverLeak> AuditHandovers() override { return wrapped_->AuditHandovers(); }

 protected:
  IommuBackend* wrapped() const { return wrapped_; }

 private:
  IommuBackend* const wrapped_;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_BACKEND_FORWARDING_BACKEND_H_

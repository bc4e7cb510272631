// FaultInjectingBackend: an IommuBackend decorator that asks a FaultInjector at the backend.*
// injection points before forwarding each mutating call; an injected error is returned without
// reaching the hardware (so the call changed nothing, as the backend contract requires).
// Translation and read-back are never injected. Thread-safe as the wrapped backend is.
//
// The registry makes one per call it drives the backend for (Registry::State::Backend: a cheap
// stack object), carrying that call's FaultScope, so scoped faults see the group and device of the
// operation without any thread-local.
#ifndef IOMMUD_CORE_BACKEND_FAULT_INJECTING_BACKEND_H_
#define IOMMUD_CORE_BACKEND_FAULT_INJECTING_BACKEND_H_

#include <utility>
#include <vector>

#include "core/backend/forwarding_backend.h"
#include "core/fault_injector.h"

namespace iommud {

class FaultInjectingBackend : public ForwardingBackend {
 public:
  // Neither is owned; both must outlive this. `injector` null: every call passes through.
  // `scope`: what every hit names (the operation's group and device; empty: none).
  FaultInjectingBackend(IommuBackend* wrapped, FaultInjector* injector,
                        FaultScope scope = FaultScope())
      : ForwardingBackend(wrapped), injector_(injector), scope_(std::move(scope)) {}

  absl::Status AddUnit(absl::string_view unit, const UnitCaps& caps) override;
  absl::Status AllocDomain(absl::string_view unit, DomainId id, DomainType type) override;
  absl::Status FreeDomain(DomainId id) override;
  absl::Status AttachRid(absl::string_view unit, Rid rid, DomainId domain) override;
  absl::Status ReleaseRid(absl::string_view unit, Rid rid) override;
  absl::Status Map(DomainId domain, uint64_t iova, uint64_t paddr, uint64_t size,
                   uint32_t prot) override;
  absl::StatusOr<uint64_t> Unmap(DomainId domain, uint64_t iova, uint64_t size) override;
  absl::Status InvalidateIotlb(DomainId domain, uint64_t iova, uint64_t size) override;

 private:
  absl::Status Hit(absl::string_view point) {
    return injector_ == nullptr ? absl::OkStatus() : injector_->Hit(point, scope_);
  }

  FaultInjector* const injector_;
  const FaultScope scope_;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_BACKEND_FAULT_INJECTING_BACKEND_H_

#include "core/backend/fault_injecting_backend.h"

#include "core/status_macros.h"

namespace iommud {

absl::Status FaultInjectingBackend::AddUnit(absl::string_view unit, const UnitCaps& caps) {
  RETURN_IF_ERROR(Hit("backend.add_unit"));
  return wrapped()->AddUnit(unit, caps);
}

absl::Status FaultInjectingBackend::AllocDomain(absl::string_view unit, DomainId id,
                                                DomainType type) {
  RETURN_IF_ERROR(Hit("backend.alloc_domain"));
  return wrapped()->AllocDomain(unit, id, type);
}

absl::Status FaultInjectingBackend::FreeDomain(DomainId id) {
  RETURN_IF_ERROR(Hit("backend.free_domain"));
  return wrapped()->FreeDomain(id);
}

absl::Status FaultInjectingBackend::AttachRid(absl::string_view unit, Rid rid, DomainId domain) {
  RETURN_IF_ERROR(Hit("backend.attach"));
  return wrapped()->AttachRid(unit, rid, domain);
}

absl::Status FaultInjectingBackend::ReleaseRid(absl::string_view unit, Rid rid) {
  RETURN_IF_ERROR(Hit("backend.release"));
  return wrapped()->ReleaseRid(unit, rid);
}

absl::Status FaultInjectingBackend::Map(DomainId domain, uint64_t iova, uint64_t paddr,
                                        uint64_t size, uint32_t prot) {
  RETURN_IF_ERROR(Hit("backend.map"));
  return wrapped()->Map(domain, iova, paddr, size, prot);
}

absl::StatusOr<uint64_t> FaultInjectingBackend::Unmap(DomainId domain, uint64_t iova,
                                                      uint64_t size) {
  RETURN_IF_ERROR(Hit("backend.unmap"));
  return wrapped()->Unmap(domain, iova, size);
}

absl::Status FaultInjectingBackend::InvalidateIotlb(DomainId domain, uint64_t iova,
                                                    uint64_t size) {
  RETURN_IF_ERROR(Hit("backend.invalidate"));
  return wrapped()->InvalidateIotlb(domain, iova, size);
}

}  // namespace iommud

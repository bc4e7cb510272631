#include "core/types.h"

#include <algorithm>

namespace iommud {

absl::string_view DomainTypeName(DomainType type) {
  switch (type) {
    case DomainType::kBlocked: return "BLOCKED";
    case DomainType::kIdentity: return "IDENTITY";
    case DomainType::kUnmanaged: return "UNMANAGED";
    case DomainType::kDma: return "DMA";
    case DomainType::kDmaFq: return "DMA_FQ";
  }
  return "UNKNOWN";
}

absl::string_view DriverBindingName(DriverBinding binding) {
  switch (binding) {
    case DriverBinding::kNone: return "NONE";
    case DriverBinding::kKernelDriver: return "KERNEL_DRIVER";
    case DriverBinding::kUserOwned: return "USER_OWNED";
  }
  return "UNKNOWN";
}

absl::string_view FaultReasonName(FaultReason reason) {
  switch (reason) {
    case FaultReason::kNone: return "NONE";
    case FaultReason::kUnknownRid: return "UNKNOWN_RID";
    case FaultReason::kBlocked: return "BLOCKED";
    case FaultReason::kNoMapping: return "NO_MAPPING";
    case FaultReason::kPermission: return "PERMISSION";
  }
  return "UNKNOWN";
}

bool UnitCaps::Supports(DomainType type) const {
  return std::find(domain_types.begin(), domain_types.end(), type) != domain_types.end();
}

}  // namespace iommud

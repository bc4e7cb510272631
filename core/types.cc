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

absl::string_view ReservedRegionTypeName(ReservedRegionType type) {
  switch (type) {
    case ReservedRegionType::kDirect: return "direct";
    case ReservedRegionType::kDirectRelaxable: return "direct-relaxable";
    case ReservedRegionType::kReserved: return "reserved";
    case ReservedRegionType::kMsi: return "msi";
    case ReservedRegionType::kSwMsi: return "msi-sw";
  }
  return "unknown";
}

bool ParseReservedRegionType(absl::string_view name, ReservedRegionType* type) {
  for (ReservedRegionType candidate :
       {ReservedRegionType::kDirect, ReservedRegionType::kDirectRelaxable,
        ReservedRegionType::kReserved, ReservedRegionType::kMsi, ReservedRegionType::kSwMsi}) {
    if (name == ReservedRegionTypeName(candidate)) {
      *type = candidate;
      return true;
    }
  }
  return false;
}

bool UnitCaps::Supports(DomainType type) const {
  return std::find(domain_types.begin(), domain_types.end(), type) != domain_types.end();
}

}  // namespace iommud

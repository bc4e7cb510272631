// Wire conversions of the fault-injection API (iommu.v1.FaultSpec <-> core FaultSpec).
#ifndef IOMMUD_SERVER_API_FAULT_INJECTION_CONVERT_H_
#define IOMMUD_SERVER_API_FAULT_INJECTION_CONVERT_H_

#include "absl/status/statusor.h"
#include "core/fault_injector.h"
#include "iommu/v1/iommu.pb.h"

namespace iommud {

// INVALID_ARGUMENT (INVALID_FAULT) for an unknown mode or code name; the injector validates the rest.
absl::StatusOr<FaultSpec> FaultSpecFromProto(const iommu::v1::FaultSpec& spec);
void FaultSpecToProto(const FaultSpec& spec, iommu::v1::FaultSpec* out);
void FaultStateToProto(const FaultState& state, iommu::v1::InjectedFault* out);

}  // namespace iommud

#endif  // IOMMUD_SERVER_API_FAULT_INJECTION_CONVERT_H_

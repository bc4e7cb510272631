// Conversions between the public API protos (proto/iommu/v1/*.proto) and the core's value types.
//
// Core -> proto never fails. Proto -> core checks what only the wire can get wrong (an enum value
// this build does not know, a field left empty) and fails with INVALID_ARGUMENT and a reason
// (INVALID_ENUM_VALUE, MISSING_FIELD) naming the field in the error metadata ("field"). Whether a
// well-formed value is allowed (e.g. which domain types AllocDomain accepts) is the registry's
// call.
#ifndef IOMMUD_SERVER_API_PROTO_CONVERT_H_
#define IOMMUD_SERVER_API_PROTO_CONVERT_H_

#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/registry.h"
#include "core/types.h"
#include "iommu/v1/iommu.pb.h"
#include "iommu/v1/topology.pb.h"

namespace iommud {

// --- Enums ---
iommu::v1::DomainType DomainTypeToProto(DomainType type);
// UNSPECIFIED -> nullopt ("use the default"); an unknown value -> INVALID_ENUM_VALUE for `field`.
absl::StatusOr<std::optional<DomainType>> DomainTypeFromProto(int value, absl::string_view field);
iommu::v1::DriverBinding DriverBindingToProto(DriverBinding binding);
iommu::v1::FaultReason FaultReasonToProto(FaultReason reason);

// --- Resources (core snapshot -> proto; `out` is overwritten) ---
void UnitToProto(const UnitInfo& unit, iommu::v1::IommuUnit* out);
void DeviceToProto(const DeviceInfo& device, iommu::v1::Device* out);
void GroupToProto(const GroupInfo& group, iommu::v1::Group* out);
void DomainToProto(const DomainInfo& domain, iommu::v1::Domain* out);
void MappingToProto(const Mapping& mapping, iommu::v1::Mapping* out);
void MemoryRegionToProto(const MemoryRegionInfo& region, iommu::v1::MemoryRegion* out);
// `device` is the name of the device owning the faulting RID, empty if none.
void FaultToProto(const FaultRecord& fault, absl::string_view device, iommu::v1::FaultRecord* out);

// --- Requests (proto -> core) ---
// Requires `unit` and `device`; checks default_domain_type (UNSPECIFIED = the registry's policy).
absl::StatusOr<ProbeRequest> ProbeRequestFromProto(const iommu::v1::ProbeDeviceRequest& request);
// The same for a device of a topology file.
absl::StatusOr<ProbeRequest> ProbeRequestFromTopology(const iommu::v1::Topology::Device& device);
// Fields left at 0/empty take UnitCaps' defaults.
absl::StatusOr<UnitCaps> UnitCapsFromProto(const iommu::v1::Topology::UnitCaps& caps);

// Prot bits of a request (MapRequest.prot, TranslateRequest.access): 0 -> `if_zero`; bits other
// than PROT_READ|PROT_WRITE -> INVALID_ARGUMENT (INVALID_PROT) for `field`.
absl::StatusOr<uint32_t> ProtFromProto(uint32_t bits, uint32_t if_zero, absl::string_view field);

// INVALID_ARGUMENT (MISSING_FIELD) naming `field` when `value` is empty / zero.
absl::Status RequireField(absl::string_view value, absl::string_view field);
absl::Status RequireId(uint64_t value, absl::string_view field);

}  // namespace iommud

#endif  // IOMMUD_SERVER_API_PROTO_CONVERT_H_

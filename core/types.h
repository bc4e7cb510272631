// Value types shared by the registry, the backends and the server adapter.
#ifndef IOMMUD_CORE_TYPES_H_
#define IOMMUD_CORE_TYPES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace iommud {

// Requester id (PCI RID / SMMU stream id).
using Rid = uint32_t;
// Registry-assigned ids. 0 is never a valid id.
using GroupId = uint64_t;
using DomainId = uint64_t;

inline constexpr uint64_t kPage4K = uint64_t{1} << 12;
inline constexpr uint64_t kPage2M = uint64_t{1} << 21;
inline constexpr uint64_t kPage1G = uint64_t{1} << 30;

enum class DomainType { kBlocked, kIdentity, kUnmanaged, kDma, kDmaFq };

// True for the types that have a page table (UNMANAGED, DMA, DMA_FQ).
inline bool IsPaging(DomainType type) {
  return type == DomainType::kUnmanaged || type == DomainType::kDma ||
         type == DomainType::kDmaFq;
}
absl::string_view DomainTypeName(DomainType type);  // "BLOCKED", "IDENTITY", ...

enum class DriverBinding { kNone, kKernelDriver, kUserOwned };
absl::string_view DriverBindingName(DriverBinding binding);

// Bits of a mapping's protection and of a DMA's access.
enum Prot : uint32_t { kProtRead = 1, kProtWrite = 2 };

enum class FaultReason { kNone, kUnknownRid, kBlocked, kNoMapping, kPermission };
absl::string_view FaultReasonName(FaultReason reason);  // "UNKNOWN_RID", ...

// The group and device a registry operation works on, for fault injection: a fault scoped to a
// group or a device (FaultSpec) only fires at hits carrying that scope. Hits outside any group
// operation carry the empty scope and match only unscoped faults.
struct FaultScope {
  GroupId group = 0;   // 0: none
  std::string device;  // "": none
};

struct IovaRange {
  uint64_t start = 0;
  uint64_t size = 0;
  uint64_t end() const { return start + size; }  // exclusive
  bool Overlaps(uint64_t other_start, uint64_t other_size) const {
    return start < other_start + other_size && other_start < start + size;
  }
};

// The kinds of a device's reserved IOVA region, as the kernel's enum iommu_resv_type
// (include/linux/iommu.h) and /sys/kernel/iommu_groups/N/reserved_regions name them.
enum class ReservedRegionType {
  kDirect,           // IOMMU_RESV_DIRECT: must be identity-mapped; the device cannot be user-owned
  kDirectRelaxable,  // IOMMU_RESV_DIRECT_RELAXABLE: identity-mapped in the default domain only
  kReserved,         // IOMMU_RESV_RESERVED: never mappable
  kMsi,              // IOMMU_RESV_MSI: hardware MSI doorbells, never mappable
  kSwMsi,            // IOMMU_RESV_SW_MSI: the software MSI window, never mappable
};
// "direct", "direct-relaxable", "reserved", "msi", "msi-sw" (the kernel's sysfs spelling
// has "msi" for both MSI kinds; iommud spells SW_MSI "msi-sw").
absl::string_view ReservedRegionTypeName(ReservedRegionType type);
// Parses ReservedRegionTypeName()'s names and the kernel's sysfs ones; false if unknown.
bool ParseReservedRegionType(absl::string_view name, ReservedRegionType* type);
// True for the types identity-mapped in a default (DMA) domain.
inline bool IsDirect(ReservedRegionType type) {
  return type == ReservedRegionType::kDirect || type == ReservedRegionType::kDirectRelaxable;
}

// A reserved IOVA region of one device (the kernel's struct iommu_resv_region).
struct ReservedRegion {
  uint64_t start = 0;
  uint64_t length = 0;
  ReservedRegionType type = ReservedRegionType::kReserved;
  bool operator==(const ReservedRegion& other) const {
    return start == other.start && length == other.length && type == other.type;
  }
};

// What a hardware IOMMU unit can do.
struct UnitCaps {
  uint64_t pgsize_bitmap = kPage4K | kPage2M | kPage1G;
  uint32_t iova_bits = 48;  // the input aperture is [0, 2^iova_bits)
  uint32_t max_rids = 1u << 16;
  std::vector<DomainType> domain_types = {DomainType::kBlocked, DomainType::kIdentity,
                                          DomainType::kUnmanaged, DomainType::kDma,
                                          DomainType::kDmaFq};
  // Never mappable (e.g. the MSI doorbell window): the unit-wide default that applies to every
  // device of the unit, besides each device's own ReservedRegions.
  std::vector<IovaRange> reserved_regions = {{0xfee00000, 0x100000}};

  uint64_t aperture_end() const {  // exclusive; saturates at 2^64-1 for iova_bits >= 64
    return iova_bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << iova_bits);
  }
  uint64_t min_page_size() const { return pgsize_bitmap & (~pgsize_bitmap + 1); }
  bool Supports(DomainType type) const;
};

struct Mapping {
  uint64_t iova = 0;
  uint64_t paddr = 0;
  uint64_t size = 0;
  uint32_t prot = kProtRead | kProtWrite;
};

// The outcome of an emulated DMA.
struct Translation {
  FaultReason fault = FaultReason::kNone;
  uint64_t paddr = 0;      // valid when fault == kNone
  DomainId domain = 0;     // the domain the hardware used; 0 if none
};

// A translation fault as the hardware reports it.
struct FaultRecord {
  std::string unit;
  Rid rid = 0;
  uint64_t iova = 0;
  uint32_t access = 0;
  FaultReason reason = FaultReason::kNone;
  int64_t time_unix_nanos = 0;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_TYPES_H_

// SysfsInventory: what the kernel says about IOMMUs, IOMMU groups and PCI devices, read from sysfs.
//
//   <root>/class/iommu/<unit>/devices/<device>           IOMMU units (e.g. dmar0) and their devices
//   <root>/kernel/iommu_groups/<N>/{devices/,type,reserved_regions}
//   <root>/bus/pci/devices/<dddd:bb:dd.f>/{vendor,device,class,config,driver,iommu_group}
//
// The root is a constructor argument ("/sys" in production) so tests can point it at a fake tree.
// Every call reads sysfs afresh (nothing is cached: devices and drivers change under us). The
// object holds no mutable state: calls are safe from any thread. Errors: SYSFS_READ_FAILED
// (unreadable or missing attribute), GROUP_NOT_FOUND, DEVICE_NOT_FOUND, SYSFS_PARSE_FAILED
// (an attribute that does not have the kernel's format).
#ifndef IOMMUD_CORE_HOST_SYSFS_INVENTORY_H_
#define IOMMUD_CORE_HOST_SYSFS_INVENTORY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/host/pci_address.h"

namespace iommud {
namespace host {

// One line of an IOMMU group's reserved_regions: [start, end] (end inclusive) of IOVA space the
// group cannot use freely; type is the kernel's word: "direct", "direct-relaxable", "reserved",
// "msi", "msi-sw".
struct ReservedRegion {
  uint64_t start = 0;
  uint64_t end = 0;
  std::string type;

  friend bool operator==(const ReservedRegion& a, const ReservedRegion& b) {
    return a.start == b.start && a.end == b.end && a.type == b.type;
  }
};

struct IommuUnit {
  std::string name;                  // "dmar0"
  std::vector<std::string> devices;  // names under devices/ (PCI addresses for DMAR), sorted
};

struct IommuGroupInfo {
  int id = -1;
  std::string type;                  // "DMA", "DMA-FQ", "identity", "blocked"; "" if not exposed
  std::vector<std::string> devices;  // device names (PCI addresses), sorted
  std::vector<ReservedRegion> reserved_regions;
};

struct PciDeviceInfo {
  PciAddress address;
  std::string name;         // "0000:01:02.0"
  uint16_t vendor = 0;
  uint16_t device = 0;
  uint32_t class_code = 0;  // 24 bits: base class, sub class, prog-if (0x060400: PCI bridge)
  std::string driver;       // bound driver ("" when none)
  std::string driver_override;  // "" when not set
  std::optional<int> iommu_group;  // nullopt: the device is not behind an IOMMU
  std::string iommu;        // the IOMMU unit translating it ("dmar0"), "" if unknown
  // The requester id the IOMMU sees on this device's DMA (bus << 8 | devfn), derived from the
  // topology the way the kernel derives DMA aliases: a conventional PCI bridge on the way up
  // replaces it with the bridge's own id; a PCIe-to-PCI bridge with (secondary bus, devfn 0); a
  // PCIe root or switch port passes it through. nullopt when a bridge's PCIe capability could not
  // be read (config space beyond 64 bytes needs root). Device-specific quirks are not modelled.
  std::optional<uint16_t> dma_requester_id;

  bool IsBridge() const { return (class_code >> 8) == 0x0604; }
};

class SysfsInventory {
 public:
  explicit SysfsInventory(std::string sysfs_root = "/sys");

  const std::string& root() const { return root_; }

  // The IOMMU units (/sys/class/iommu), sorted by name; empty when the directory does not exist
  // (no IOMMU enabled).
  absl::StatusOr<std::vector<IommuUnit>> IommuUnits() const;

  // The ids of all IOMMU groups, ascending; empty when there are none.
  absl::StatusOr<std::vector<int>> GroupIds() const;
  // One group. GROUP_NOT_FOUND when it does not exist.
  absl::StatusOr<IommuGroupInfo> Group(int group_id) const;

  // All PCI devices, sorted by address (a device removed while they are read is left out).
  absl::StatusOr<std::vector<PciDeviceInfo>> PciDevices() const;
  // One PCI device by its sysfs name ("0000:00:02.0"). DEVICE_NOT_FOUND when absent.
  absl::StatusOr<PciDeviceInfo> PciDevice(absl::string_view name) const;

  // Parses a reserved_regions file's content ("0x...fee00000 0x...feefffff msi" per line).
  // SYSFS_PARSE_FAILED on a malformed line.
  static absl::StatusOr<std::vector<ReservedRegion>> ParseReservedRegions(absl::string_view text);

 private:
  std::string PciDevicePath(absl::string_view name) const;
  absl::StatusOr<std::optional<uint16_t>> DmaRequesterId(const std::string& device_path,
                                                         const PciAddress& address) const;

  std::string root_;
};

}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_CORE_HOST_SYSFS_INVENTORY_H_

// FakeSysfs: a sysfs-shaped tree in a temporary directory, for testing core/host without a kernel.
// It lays out what SysfsInventory and PciDriverBinder read (IOMMU classes, groups, PCI devices with
// the realpath hierarchy of bridges, drivers) and, with Write(), plays the kernel's part for the
// attributes PciDriverBinder writes: driver_override, drivers/X/{bind,unbind}, drivers_probe.
#ifndef IOMMUD_TESTS_CORE_HOST_FAKE_SYSFS_H_
#define IOMMUD_TESTS_CORE_HOST_FAKE_SYSFS_H_

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace iommud {
namespace host {
namespace test {

struct FakePciDevice {
  // Path below devices/, parents first: "pci0000:00/0000:00:03.0/0000:01:01.0".
  std::string path;
  std::string vendor = "0x1234";
  std::string device = "0x11e8";
  std::string pci_class = "0x00ff00";
  std::string config;           // config space bytes (size 256: conventional, 4096: PCIe)
  std::optional<int> group;     // iommu_group link
  std::string iommu;            // iommu link ("dmar0"), "" for none
  std::string driver;           // bound driver, "" for none
  std::string driver_override = "(null)";
};

class FakeSysfs {
 public:
  FakeSysfs();   // creates the temporary root
  ~FakeSysfs();  // removes it

  const std::string& root() const { return root_; }

  void AddIommu(const std::string& name);
  void AddGroup(int id, const std::string& type, const std::string& reserved_regions);
  void AddDriver(const std::string& name);
  // Adds the device, its bus/pci/devices link, and its entries in the group and IOMMU it names.
  void AddPciDevice(const FakePciDevice& device);

  // 256 bytes of a conventional function's config space, or 4096 of a PCIe one whose PCI Express
  // capability says `pcie_type` (4: root port, 7: PCIe-to-PCI bridge). `with_capability` false:
  // 4096 bytes but no capability list (what an unprivileged reader would make of a PCIe device).
  static std::string ConventionalConfig();
  static std::string PcieConfig(int pcie_type, bool with_capability = true);

  // The fake kernel's store handlers (PciDriverBinder::AttributeWriter).
  absl::Status Write(const std::string& path, absl::string_view value);
  // Drivers that refuse to bind (probe fails: the device stays unbound).
  std::set<std::string> refusing_drivers;
  // Every write Write() received, "path=value", in order.
  std::vector<std::string> writes;

  // The device's current driver ("" for none) and driver_override ("(null)" when unset).
  std::string DriverOf(const std::string& bdf) const;
  std::string OverrideOf(const std::string& bdf) const;

 private:
  std::string DevicePath(const std::string& bdf) const;
  void Bind(const std::string& bdf, const std::string& driver);

  std::string root_;
};

}  // namespace test
}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_TESTS_CORE_HOST_FAKE_SYSFS_H_

// PciDriverBinder: hands PCI devices to vfio-pci and gives them back to their previous driver.
//
// Binding uses the kernel's driver_override mechanism:
//   echo vfio-pci > <sysfs>/bus/pci/devices/BDF/driver_override
//   echo BDF      > <sysfs>/bus/pci/drivers/<current>/unbind     (if bound)
//   echo BDF      > <sysfs>/bus/pci/drivers_probe
// and checks the device's driver link afterwards. Restoring undoes it: unbind from vfio-pci, put
// the previous driver_override back (usually: clear it), then bind to the remembered driver (or
// leave the device unbound if it had none).
//
// Safety: taking a device from a kernel driver can take the host's disk or network with it, so
// only devices that are unbound, already on vfio-pci, or bound to a driver the caller lists in
// BindOptions::replaceable_drivers are rebound; others fail with DRIVER_UNSAFE. Bridges are never
// bound (vfio-pci only drives normal functions; a group's bridge needs no driver for VFIO).
//
// The binder does not load kernel modules: vfio-pci must be loaded (DRIVER_NOT_LOADED otherwise).
// It keeps no state between calls (the DriverBinding values are the memory of what to restore), so
// calls on distinct devices may run from different threads; concurrent calls on the same device
// race in the kernel and are the caller's to serialize (the registry's group lock does).
//
// Errors: DEVICE_NOT_FOUND, DEVICE_NOT_BINDABLE (a bridge), DRIVER_UNSAFE, DRIVER_NOT_LOADED,
// DRIVER_BIND_FAILED, DRIVER_RESTORE_FAILED, GROUP_NOT_FOUND, SYSFS_* (see sysfs_io.h).
#ifndef IOMMUD_CORE_HOST_PCI_DRIVER_BINDER_H_
#define IOMMUD_CORE_HOST_PCI_DRIVER_BINDER_H_

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/host/sysfs_inventory.h"

namespace iommud {
namespace host {

inline constexpr absl::string_view kVfioPciDriver = "vfio-pci";

struct BindOptions {
  // Kernel drivers a device may be taken from (e.g. {"pci-stub"}). Empty: only unbound devices.
  std::set<std::string> replaceable_drivers;
};

// What a bind changed, and so what Restore() puts back.
struct DriverBinding {
  std::string device;             // "0000:00:02.0"
  std::string previous_driver;    // "" when it was unbound
  std::string previous_override;  // driver_override before the bind ("" when unset)
  bool changed = false;           // false: it was already on vfio-pci, Restore() does nothing
};

class PciDriverBinder {
 public:
  // How attributes are written: WriteSysfsAttribute in production; tests substitute a fake kernel
  // that applies the write to a fake sysfs tree (the kernel's store handlers act synchronously).
  using AttributeWriter = std::function<absl::Status(const std::string& path,
                                                     absl::string_view value)>;

  explicit PciDriverBinder(std::string sysfs_root = "/sys");
  PciDriverBinder(std::string sysfs_root, AttributeWriter writer);

  // Binds one device to vfio-pci (a no-op binding if it already is).
  absl::StatusOr<DriverBinding> BindToVfio(absl::string_view device,
                                           const BindOptions& options = {});

  // Binds every non-bridge device of IOMMU group `group_id`, all or nothing: every device is checked
  // first (nothing changes if one is unsafe), and if a bind fails the devices already rebound are
  // restored before the error is returned (the error says whether that restore failed too).
  absl::StatusOr<std::vector<DriverBinding>> BindGroupToVfio(int group_id,
                                                             const BindOptions& options = {});

  // Gives the device back to binding.previous_driver (unbound if it had none) and restores its
  // driver_override. DRIVER_RESTORE_FAILED if the device does not end up on that driver. A device
  // the kernel removed meanwhile is restored trivially (OK: nothing of the bind survives it).
  absl::Status Restore(const DriverBinding& binding);

  // Restores `bindings` in reverse order; continues past failures and returns the first one.
  absl::Status RestoreAll(const std::vector<DriverBinding>& bindings);

 private:
  // DEVICE_NOT_FOUND / DEVICE_NOT_BINDABLE / DRIVER_UNSAFE / DRIVER_NOT_LOADED for `device`.
  absl::Status CheckBindable(const PciDeviceInfo& device, const BindOptions& options) const;
  absl::StatusOr<DriverBinding> Bind(const PciDeviceInfo& device);
  std::string DevicePath(absl::string_view device) const;
  std::string DriverPath(absl::string_view driver) const;

  std::string root_;
  SysfsInventory inventory_;
  AttributeWriter write_;
};

}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_CORE_HOST_PCI_DRIVER_BINDER_H_

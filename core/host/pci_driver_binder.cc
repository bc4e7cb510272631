#include "core/host/pci_driver_binder.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/host/sysfs_io.h"
#include "core/status_macros.h"

namespace iommud {
namespace host {

PciDriverBinder::PciDriverBinder(std::string sysfs_root)
    : PciDriverBinder(std::move(sysfs_root), WriteSysfsAttribute) {}

PciDriverBinder::PciDriverBinder(std::string sysfs_root, AttributeWriter writer)
    : root_(std::move(sysfs_root)), inventory_(root_), write_(std::move(writer)) {}

std::string PciDriverBinder::DevicePath(absl::string_view device) const {
  return absl::StrCat(root_, "/bus/pci/devices/", device);
}

std::string PciDriverBinder::DriverPath(absl::string_view driver) const {
  return absl::StrCat(root_, "/bus/pci/drivers/", driver);
}

absl::Status PciDriverBinder::CheckBindable(const PciDeviceInfo& device,
                                            const BindOptions& options) const {
  if (device.IsBridge()) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kDeviceNotBindable,
                 absl::StrCat(device.name, " is a PCI bridge; vfio-pci drives only normal functions"),
                 {{"device", device.name}});
  }
  if (!device.driver.empty() && device.driver != kVfioPciDriver &&
      options.replaceable_drivers.count(device.driver) == 0) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kDriverUnsafe,
                 absl::StrCat(device.name, " is bound to ", device.driver,
                              ", which is not listed as replaceable"),
                 {{"device", device.name}, {"driver", device.driver}});
  }
  if (device.driver != kVfioPciDriver && !SysfsPathExists(DriverPath(kVfioPciDriver))) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kDriverNotLoaded,
                 "the vfio-pci driver is not loaded", {{"device", device.name}});
  }
  return absl::OkStatus();
}

absl::StatusOr<DriverBinding> PciDriverBinder::Bind(const PciDeviceInfo& device) {
  DriverBinding binding;
  binding.device = device.name;
  binding.previous_driver = device.driver;
  binding.previous_override = device.driver_override;
  if (device.driver == kVfioPciDriver) return binding;

  binding.changed = true;
  const std::string path = DevicePath(device.name);
  absl::Status status = write_(path + "/driver_override", kVfioPciDriver);
  if (status.ok() && !device.driver.empty()) {
    status = write_(DriverPath(device.driver) + "/unbind", device.name);
  }
  if (status.ok()) status = write_(root_ + "/bus/pci/drivers_probe", device.name);
  if (status.ok()) {
    absl::StatusOr<std::string> driver = ReadSysfsLinkName(path + "/driver");
    if (!driver.ok()) {
      status = driver.status();
    } else if (*driver != kVfioPciDriver) {
      status = Error(absl::StatusCode::kInternal, reason::kDriverBindFailed,
                     absl::StrCat(device.name, " is on \"", *driver,
                                  "\" after probing with driver_override=vfio-pci"),
                     {{"device", device.name}});
    }
  }
  if (status.ok()) return binding;

  // Put back whatever was changed, then report the bind failure.
  const absl::Status restored = Restore(binding);
  ErrorMetadata metadata = GetErrorMetadata(status);
  metadata["device"] = device.name;
  return Error(absl::StatusCode::kInternal, reason::kDriverBindFailed,
               absl::StrCat("binding ", device.name, " to vfio-pci failed: ", status.message(),
                            restored.ok() ? "" : absl::StrCat("; restoring it failed too: ",
                                                              restored.message())),
               metadata);
}

absl::StatusOr<DriverBinding> PciDriverBinder::BindToVfio(absl::string_view device,
                                                          const BindOptions& options) {
  ASSIGN_OR_RETURN(const PciDeviceInfo info, inventory_.PciDevice(device));
  RETURN_IF_ERROR(CheckBindable(info, options));
  return Bind(info);
}

absl::StatusOr<std::vector<DriverBinding>> PciDriverBinder::BindGroupToVfio(
    int group_id, const BindOptions& options) {
  ASSIGN_OR_RETURN(const IommuGroupInfo group, inventory_.Group(group_id));
  std::vector<PciDeviceInfo> devices;
  for (const std::string& name : group.devices) {
    ASSIGN_OR_RETURN(PciDeviceInfo device, inventory_.PciDevice(name));
    if (device.IsBridge()) continue;
    RETURN_IF_ERROR(CheckBindable(device, options));
    devices.push_back(std::move(device));
  }
  std::vector<DriverBinding> bindings;
  for (const PciDeviceInfo& device : devices) {
    absl::StatusOr<DriverBinding> binding = Bind(device);
    if (!binding.ok()) {
      const absl::Status restored = RestoreAll(bindings);
      if (restored.ok()) return binding.status();
      ErrorMetadata metadata = GetErrorMetadata(binding.status());
      metadata["group_id"] = absl::StrCat(group_id);
      return Error(binding.status().code(), ErrorReason(binding.status()),
                   absl::StrCat(binding.status().message(),
                                "; restoring the group's other devices failed: ",
                                restored.message()),
                   metadata);
    }
    bindings.push_back(*std::move(binding));
  }
  return bindings;
}

absl::Status PciDriverBinder::Restore(const DriverBinding& binding) {
  if (!binding.changed) return absl::OkStatus();
  const std::string path = DevicePath(binding.device);
  // The kernel removed the device (hot-unplug, sysfs remove): nothing of the bind is left to undo
  // (a device added again later starts with no driver_override and its own driver probe).
  if (!SysfsPathExists(path)) return absl::OkStatus();
  ASSIGN_OR_RETURN(const std::string current, ReadSysfsLinkName(path + "/driver"));
  if (!current.empty() && current != binding.previous_driver) {
    RETURN_IF_ERROR(write_(DriverPath(current) + "/unbind", binding.device));
  }
  // An empty write would not clear driver_override; a lone newline does.
  RETURN_IF_ERROR(write_(
      path + "/driver_override",
      binding.previous_override.empty() ? "\n" : binding.previous_override));
  if (!binding.previous_driver.empty() && current != binding.previous_driver) {
    const absl::Status bound =
        write_(DriverPath(binding.previous_driver) + "/bind", binding.device);
    if (!bound.ok()) {
      // The driver may not accept a direct bind (e.g. it has an id table only): let it probe.
      (void)write_(root_ + "/bus/pci/drivers_probe", binding.device);
    }
  }
  ASSIGN_OR_RETURN(const std::string now, ReadSysfsLinkName(path + "/driver"));
  if (now != binding.previous_driver) {
    return Error(absl::StatusCode::kInternal, reason::kDriverRestoreFailed,
                 absl::StrCat(binding.device, " is on \"", now, "\" instead of \"",
                              binding.previous_driver, "\" after restoring"),
                 {{"device", binding.device}, {"driver", binding.previous_driver}});
  }
  return absl::OkStatus();
}

absl::Status PciDriverBinder::RestoreAll(const std::vector<DriverBinding>& bindings) {
  absl::Status first;
  for (auto it = bindings.rbegin(); it != bindings.rend(); ++it) {
    const absl::Status status = Restore(*it);
    if (first.ok() && !status.ok()) first = status;
  }
  return first;
}

}  // namespace host
}  // namespace iommud

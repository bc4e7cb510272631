#include "server/topology/host_topology.h"

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/host/pci_driver_binder.h"

namespace iommud {

LoadedTopology TopologyOfHost(const host::HostTopology& host) {
  LoadedTopology loaded;
  loaded.source = "<sysfs>";
  for (const host::HostUnit& unit : host.units) {
    iommu::v1::Topology::Unit* proto = loaded.topology.add_units();
    proto->set_name(unit.name);
    iommu::v1::Topology::UnitCaps* caps = proto->mutable_caps();
    caps->set_pgsize_bitmap(unit.caps.pgsize_bitmap);
    caps->set_iova_bits(unit.caps.iova_bits);
    caps->set_max_rids(unit.caps.max_rids);
    for (const IovaRange& range : unit.caps.reserved_regions) {
      iommu::v1::IovaRange* reserved = caps->add_reserved_regions();
      reserved->set_start(range.start);
      reserved->set_size(range.size);
    }
    loaded.unit_lines.push_back(static_cast<int>(loaded.unit_lines.size()) + 1);
  }
  for (const host::HostDevice& device : host.devices) {
    iommu::v1::Topology::Device* proto = loaded.topology.add_devices();
    proto->set_unit(device.unit);
    proto->set_name(device.name);
    proto->set_rid(device.rid);
    for (Rid alias : device.alias_rids) proto->add_alias_rids(alias);
    loaded.device_lines.push_back(static_cast<int>(loaded.device_lines.size()) + 1);
  }
  return loaded;
}

absl::Status MarkKernelDrivers(const host::HostTopology& host,
                               const std::set<std::string>& replaceable, Registry* registry) {
  for (const host::HostDevice& device : host.devices) {
    if (device.bridge || device.driver.empty() || device.driver == host::kVfioPciDriver ||
        replaceable.count(device.driver) != 0) {
      continue;
    }
    absl::StatusOr<GroupInfo> used = registry->UseDefaultDomain(device.name);
    // A registry recovered from its store (--state=sqlite with the fd store) marked it before.
    if (!used.ok() && ErrorReason(used.status()) == reason::kDriverAlreadyBound) continue;
    if (!used.ok()) return used.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<ProbeRequest> ReprobeHostDevice(const host::HostTopology& host,
                                               const host::SysfsInventory& inventory,
                                               absl::string_view device) {
  const host::HostDevice* known = nullptr;
  for (const host::HostDevice& candidate : host.devices) {
    if (candidate.name == device) known = &candidate;
  }
  if (known == nullptr) {
    return Error(absl::StatusCode::kNotFound, reason::kDeviceNotFound,
                 absl::StrCat(device, " was not in the host's inventory at start-up"),
                 {{"device", std::string(device)}});
  }
  absl::StatusOr<host::PciDeviceInfo> now = inventory.PciDevice(device);
  if (!now.ok()) return now.status();
  if (!now->iommu_group.has_value() || *now->iommu_group != known->kernel_group) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kRidNotInKernelGroup,
                 absl::StrCat(device, " came back in IOMMU group ",
                              now->iommu_group.has_value() ? absl::StrCat(*now->iommu_group) : "none",
                              ", not ", known->kernel_group, " as at start-up"),
                 {{"device", std::string(device)}});
  }
  ProbeRequest probe;
  probe.unit = known->unit;
  probe.device = known->name;
  probe.rid = known->rid;
  probe.alias_rids = known->alias_rids;
  return probe;
}

}  // namespace iommud

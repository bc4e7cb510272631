// The start-up topology of `--backend=linux`: the host's own, as the backend read it from sysfs
// (core/host/linux_backend.h), instead of a topology file.
#ifndef IOMMUD_SERVER_TOPOLOGY_HOST_TOPOLOGY_H_
#define IOMMUD_SERVER_TOPOLOGY_HOST_TOPOLOGY_H_

#include <set>
#include <string>

#include "absl/status/status.h"
#include "core/host/linux_backend.h"
#include "core/registry.h"
#include "server/topology/topology.h"

namespace iommud {

// The host's units and devices as a topology ApplyTopology can apply (source "<sysfs>"; every
// device's line is its index + 1).
LoadedTopology TopologyOfHost(const host::HostTopology& host);

// Tells the registry which devices a kernel driver holds (UseDefaultDomain), so that claiming their
// group is refused (GROUP_IN_USE) as the kernel refuses DMA ownership of a group with a driver
// bound. Bridges (no DMA of their own), vfio-pci and the drivers a claim may replace
// (`replaceable`) do not count. Errors: the registry's, for the first device it refuses.
absl::Status MarkKernelDrivers(const host::HostTopology& host,
                               const std::set<std::string>& replaceable, Registry* registry);

// The probe of `device` when the kernel adds it again (server/host/device_removal.h): only a device
// of the start-up inventory `host`, back in the same IOMMU group (the backend's group records are
// the start-up ones). NOT_FOUND (DEVICE_NOT_FOUND) for a device the inventory did not have or that
// is gone again; FAILED_PRECONDITION (RID_NOT_IN_KERNEL_GROUP) when the kernel put it in another
// group.
absl::StatusOr<ProbeRequest> ReprobeHostDevice(const host::HostTopology& host,
                                               const host::SysfsInventory& inventory,
                                               absl::string_view device);

}  // namespace iommud

#endif  // IOMMUD_SERVER_TOPOLOGY_HOST_TOPOLOGY_H_

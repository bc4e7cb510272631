// DeviceRemovalCoordinator: what iommud does when the kernel adds or removes a device, and when the
// kernel asks for an owned device back (docs/semantics.md "Unplug of an owned device").
//
// The kernel is the authority on what exists: a PCI device it removed goes through the registry's
// own device removal (Registry::ReleaseDevice, under the group's lock, so it is serialized with the
// claims, attaches and releases of the group, and a RID still shared with a surviving device is never
// reprogrammed); a device it added that iommud's start-up inventory knew (same IOMMU group and
// RIDs: `probe_for` decides) is probed again. Anything else is left alone (logged as an event
// detail), the registry staying authoritative for what iommud owns.
//
// A device the kernel adds into an IOMMU group iommud holds (claimed or attached to a container:
// e.g. a rescan while the group's other device is owned) is not adopted while the group is held:
// VFIO owns the group's DMA and the kernel gives the new device no domain of iommud's. It is probed
// once the group is back with the kernel (`holds_group` false, checked on every Tick). Beware: on
// Debian's 6.1 kernel a group that gained a device while attached to a VFIO container BUGs when it
// leaves the container (docs/semantics.md "Unplug of an owned device").
//
// A release request (the kernel's removal of a device waits for its fds): RELEASE_REQUESTED (device,
// owner) at once, then a bounded wait (`release_timeout`). If the kernel removes the device in time
// (the owner closed its fds) the outcome is "released". Otherwise iommud revokes what it can: it
// unmaps every mapping of the domain the device's group is attached to (through the registry, as
// the owner), so the device can no longer reach the owner's memory; the outcome is "revoked" (or
// "revoke_failed: <why>"). Either way RELEASE_RESOLVED carries the outcome and `count_outcome` counts
// it. The kernel's removal then still waits for the owner's fd (VFIO cannot take a device fd away);
// no iommud thread waits for it.
//
// Thread-safe: the uevent and the release-request threads call in concurrently. No lock of its own
// is held across a registry call.
#ifndef IOMMUD_SERVER_HOST_DEVICE_REMOVAL_H_
#define IOMMUD_SERVER_HOST_DEVICE_REMOVAL_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/host/device_release_requests.h"
#include "core/host/uevent_monitor.h"
#include "core/registry.h"
#include "core/registry_observer.h"

namespace iommud {

// Outcomes of a release request (label values of iommud_release_requests_total{outcome}).
inline constexpr absl::string_view kReleaseOutcomeReleased = "released";
inline constexpr absl::string_view kReleaseOutcomeRevoked = "revoked";
inline constexpr absl::string_view kReleaseOutcomeRevokeFailed = "revoke_failed";

struct DeviceRemovalOptions {
  Registry* registry = nullptr;          // required; not owned
  RegistryObserver* observer = nullptr;  // optional; not owned: receives the release events
  absl::Duration release_timeout = absl::Seconds(10);
  // The registry's probe of a device the kernel added, or an error saying why iommud does not
  // adopt it. Null: added devices are never adopted.
  std::function<absl::StatusOr<ProbeRequest>(const std::string& device)> probe_for;
  // Counts one outcome (kReleaseOutcome*). Optional.
  std::function<void(absl::string_view outcome)> count_outcome;
  // Whether iommud holds the IOMMU group of `device` (LinuxBackend::HoldsGroupOf). Null: added
  // devices are probed at once.
  std::function<bool(const std::string& device)> holds_group;
};

struct DeviceRemovalStats {
  uint64_t removed = 0;         // kernel removals the registry applied
  uint64_t added = 0;           // kernel additions probed
  uint64_t add_refused = 0;     // kernel additions not adopted (probe_for or ProbeDevice refused)
  uint64_t requests = 0;        // release requests that started a wait
  uint64_t released = 0;
  uint64_t revoked = 0;
  uint64_t revoke_failed = 0;
  uint64_t held_back = 0;       // added into a held group: probed only after its release
};

class DeviceRemovalCoordinator {
 public:
  explicit DeviceRemovalCoordinator(DeviceRemovalOptions options);

  // One kernel uevent (PCI "add" and "remove" matter; the rest is ignored).
  void OnUevent(const host::Uevent& event, absl::Time now);
  // The kernel asked for `device` back (its request eventfd fired) at `now`.
  void OnReleaseRequested(const std::string& device, absl::Time now);
  // Revokes the waits that ran out by `now`; probes held-back devices whose group is free.
  void Tick(absl::Time now);
  // When Tick has something to do next, if ever.
  std::optional<absl::Time> NextDeadline() const;

  // Whether an fd of `device` may still be open: its group is on a user domain (VFIO gives device
  // fds only then, and refuses to take a group out of its container while one is open). False
  // once the device is gone or its group is back on a core-owned domain.
  bool MayHaveDeviceFds(const std::string& device) const;

  DeviceRemovalStats stats() const;

 private:
  // RELEASE_RESOLVED with `outcome` as its detail (and `why`, for revoke_failed), and the count.
  void Resolve(const std::string& device, const std::string& owner, GroupId group,
               absl::string_view outcome, const std::string& why, absl::Time now);
  // Unmaps the domain `device`'s group is attached to; returns the owner, the group and "" or why
  // it failed.
  std::string Revoke(const std::string& device, std::string* owner, GroupId* group);
  void Emit(RegistryEvent event, absl::Time now) const;
  // probe_for + ProbeDevice of an added device; counts it.
  void Adopt(const std::string& device);

  const DeviceRemovalOptions options_;
  mutable absl::Mutex mu_;
  host::ReleaseRequestTracker tracker_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> held_back_ ABSL_GUARDED_BY(mu_);  // added while their group was held
  DeviceRemovalStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_HOST_DEVICE_REMOVAL_H_

// ReleaseRequests: what the two paths that ask an owner for a device back share (docs/semantics.md
// "Unplug of an owned device"): the kernel's removal of an owned device (device_removal.h) and the
// API's ReleaseDevice of a device whose group is owned (server/api/owned_device_release.h). Both
// announce the request (RELEASE_REQUESTED), may revoke the owner's mappings when it does not let go
// in time, and resolve the request once (RELEASE_RESOLVED with the outcome, counted by outcome in
// iommud_release_requests_total). The waiting itself is each path's own: the kernel's is driven by
// DeviceRemovalCoordinator::Tick, the API's by the call that waits.
//
// Thread-safe: holds no lock of its own; each method makes ordinary registry calls (no lock of the
// caller may be held).
#ifndef IOMMUD_SERVER_HOST_RELEASE_REQUEST_H_
#define IOMMUD_SERVER_HOST_RELEASE_REQUEST_H_

#include <functional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/registry.h"
#include "core/registry_observer.h"

namespace iommud {

// Outcomes of a release request (label values of iommud_release_requests_total{outcome}).
// The owner let go (closed its fds; or released its ownership) and the device was released.
inline constexpr absl::string_view kReleaseOutcomeReleased = "released";
// The owner did not let go in time: its mappings were unmapped (and, for a forced ReleaseDevice,
// the device released).
inline constexpr absl::string_view kReleaseOutcomeRevoked = "revoked";
inline constexpr absl::string_view kReleaseOutcomeRevokeFailed = "revoke_failed";
// ReleaseDevice only: the owner did not let go in time and the call was refused (DEVICE_IN_USE).
inline constexpr absl::string_view kReleaseOutcomeRefused = "refused";
// ReleaseDevice only: the caller cancelled, its deadline passed or the daemon shut down while it
// waited. Nothing changed.
inline constexpr absl::string_view kReleaseOutcomeCancelled = "cancelled";

class ReleaseRequests {
 public:
  // `registry` required; `observer` (the events) and `count_outcome` optional. Not owned.
  ReleaseRequests(Registry* registry, RegistryObserver* observer,
                  std::function<void(absl::string_view outcome)> count_outcome);

  // Emits RELEASE_REQUESTED for `device` (its unit, group, domain and the group's owner, as the
  // registry has them now) with `detail`, at `now`.
  void Requested(const std::string& device, const std::string& detail, absl::Time now) const;
  // Unmaps every mapping of the user domain `device`'s group is attached to (as the domain's owner),
  // so the device no longer reaches the owner's memory. Sets `*owner` and `*group` (when the device
  // is known). Returns "" (done, or nothing to revoke: the device is gone or its group is on a
  // core-owned domain) or why an unmap failed.
  std::string Revoke(const std::string& device, std::string* owner, GroupId* group) const;
  // Emits RELEASE_RESOLVED (detail: `outcome`, or "<outcome>: <why>" when `why` is not empty) and
  // counts `outcome`.
  void Resolved(const std::string& device, const std::string& owner, GroupId group,
                absl::string_view outcome, const std::string& why, absl::Time now) const;

  Registry* registry() const { return registry_; }

 private:
  void Emit(RegistryEvent event, absl::Time now) const;

  Registry* const registry_;
  RegistryObserver* const observer_;
  const std::function<void(absl::string_view)> count_outcome_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_HOST_RELEASE_REQUEST_H_

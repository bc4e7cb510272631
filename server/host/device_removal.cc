#include "server/host/device_removal.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/sync.h"

namespace iommud {

DeviceRemovalCoordinator::DeviceRemovalCoordinator(DeviceRemovalOptions options)
    : options_(std::move(options)),
      requests_(options_.registry, options_.observer, options_.count_outcome),
      tracker_(options_.release_timeout) {}

void DeviceRemovalCoordinator::OnUevent(const host::Uevent& event, absl::Time now) {
  const std::string device = event.PciDevice();
  if (device.empty()) return;
  Registry& registry = *options_.registry;
  if (event.action == "remove") {
    absl::StatusOr<DeviceInfo> known = registry.GetDevice(device);
    host::ReleaseRequestTracker::State state;
    {
      MutexLock lock(&mu_);
      state = tracker_.Removed(device);
      held_back_.erase(device);
    }
    if (!known.ok()) return;  // not (or no longer) the registry's
    if (state == host::ReleaseRequestTracker::State::kWaiting) {
      absl::StatusOr<GroupInfo> group = registry.GetGroup(known->group);
      Resolve(device, group.ok() ? group->owner : "", known->group, kReleaseOutcomeReleased, "",
              now);
    }
    // The registry's own removal path: under the group's lock, shared RIDs kept.
    if (registry.ReleaseDevice(device).ok()) {
      MutexLock lock(&mu_);
      ++stats_.removed;
    }
    return;
  }
  if (event.action == "add") {
    if (registry.GetDevice(device).ok() || !options_.probe_for) return;
    if (options_.holds_group && options_.holds_group(device)) {
      MutexLock lock(&mu_);  // not while the group is held (see the header)
      if (held_back_.insert(device).second) ++stats_.held_back;
      return;
    }
    Adopt(device);
  }
}

void DeviceRemovalCoordinator::Adopt(const std::string& device) {
  absl::StatusOr<ProbeRequest> probe = options_.probe_for(device);
  absl::Status probed = probe.status();
  if (probed.ok()) probed = options_.registry->ProbeDevice(*probe).status();
  MutexLock lock(&mu_);
  if (probed.ok()) {
    ++stats_.added;
  } else {
    ++stats_.add_refused;
  }
}

void DeviceRemovalCoordinator::OnReleaseRequested(const std::string& device, absl::Time now) {
  {
    MutexLock lock(&mu_);
    if (!tracker_.Requested(device, now)) return;  // the kernel's repeat, or already revoked
    ++stats_.requests;
  }
  requests_.Requested(device,
                      absl::StrCat("the kernel is removing ", device, "; close its fds within ",
                                   absl::FormatDuration(options_.release_timeout)),
                      now);
}

void DeviceRemovalCoordinator::Tick(absl::Time now) {
  std::vector<std::string> expired;
  std::vector<std::string> held_back;
  {
    MutexLock lock(&mu_);
    expired = tracker_.Expire(now);
    held_back.assign(held_back_.begin(), held_back_.end());
  }
  for (const std::string& device : held_back) {
    if (options_.holds_group(device)) continue;
    {
      MutexLock lock(&mu_);
      held_back_.erase(device);
    }
    // Removed again meanwhile: its "remove" found nothing to do, and nothing is left to adopt.
    if (!options_.registry->GetDevice(device).ok()) Adopt(device);
  }
  for (const std::string& device : expired) {
    std::string owner;
    GroupId group = 0;
    const std::string failed = requests_.Revoke(device, &owner, &group);
    if (failed.empty()) {
      Resolve(device, owner, group, kReleaseOutcomeRevoked, "", now);
    } else {
      Resolve(device, owner, group, kReleaseOutcomeRevokeFailed, failed, now);
    }
  }
}

void DeviceRemovalCoordinator::Resolve(const std::string& device, const std::string& owner,
                                       GroupId group, absl::string_view outcome,
                                       const std::string& why, absl::Time now) {
  {
    MutexLock lock(&mu_);
    if (outcome == kReleaseOutcomeReleased) ++stats_.released;
    if (outcome == kReleaseOutcomeRevoked) ++stats_.revoked;
    if (outcome == kReleaseOutcomeRevokeFailed) ++stats_.revoke_failed;
  }
  requests_.Resolved(device, owner, group, outcome, why, now);
}

std::optional<absl::Time> DeviceRemovalCoordinator::NextDeadline() const {
  MutexLock lock(&mu_);
  return tracker_.NextDeadline();
}

bool DeviceRemovalCoordinator::MayHaveDeviceFds(const std::string& device) const {
  absl::StatusOr<DeviceInfo> known = options_.registry->GetDevice(device);
  if (!known.ok()) return false;
  absl::StatusOr<GroupInfo> group = options_.registry->GetGroup(known->group);
  if (!group.ok()) return false;
  return group->domain != group->default_domain && group->domain != group->blocking_domain;
}

DeviceRemovalStats DeviceRemovalCoordinator::stats() const {
  MutexLock lock(&mu_);
  return stats_;
}

}  // namespace iommud

#include "server/host/device_removal.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/sync.h"

namespace iommud {

DeviceRemovalCoordinator::DeviceRemovalCoordinator(DeviceRemovalOptions options)
    : options_(std::move(options)), tracker_(options_.release_timeout) {}

void DeviceRemovalCoordinator::Emit(RegistryEvent event, absl::Time now) const {
  if (options_.observer == nullptr) return;
  event.time_unix_nanos = absl::ToUnixNanos(now);
  options_.observer->OnEvent(event);
}

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
  RegistryEvent event;
  event.kind = RegistryEvent::Kind::kReleaseRequested;
  event.device = device;
  absl::StatusOr<DeviceInfo> known = options_.registry->GetDevice(device);
  if (known.ok()) {
    event.unit = known->unit;
    event.group = known->group;
    event.domain = known->domain;
    absl::StatusOr<GroupInfo> group = options_.registry->GetGroup(known->group);
    if (group.ok()) event.owner = group->owner;
  }
  event.detail = absl::StrCat("the kernel is removing ", device,
                              "; close its fds within ", absl::FormatDuration(options_.release_timeout));
  Emit(std::move(event), now);
}

std::string DeviceRemovalCoordinator::Revoke(const std::string& device, std::string* owner,
                                             GroupId* group_id) {
  Registry& registry = *options_.registry;
  absl::StatusOr<DeviceInfo> known = registry.GetDevice(device);
  if (!known.ok()) return "";  // already gone: nothing of it to revoke
  *group_id = known->group;
  absl::StatusOr<GroupInfo> group = registry.GetGroup(known->group);
  if (!group.ok()) return "";
  *owner = group->owner;
  if (group->domain == group->default_domain || group->domain == group->blocking_domain) {
    return "";  // on a core-owned domain: the device reaches nothing of an owner's
  }
  absl::StatusOr<DomainInfo> domain = registry.GetDomain(group->domain);
  if (!domain.ok()) return std::string(domain.status().message());
  absl::StatusOr<std::vector<Mapping>> mappings = registry.ListMappings(domain->id);
  if (!mappings.ok()) return std::string(mappings.status().message());
  std::string failed;
  for (const Mapping& mapping : *mappings) {
    absl::StatusOr<uint64_t> unmapped =
        registry.Unmap(domain->id, mapping.iova, mapping.size, domain->owner);
    if (!unmapped.ok() && failed.empty()) failed = std::string(unmapped.status().message());
  }
  return failed;
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
    const std::string failed = Revoke(device, &owner, &group);
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
  if (options_.count_outcome) options_.count_outcome(outcome);
  RegistryEvent event;
  event.kind = RegistryEvent::Kind::kReleaseResolved;
  event.device = device;
  event.owner = owner;
  event.group = group;
  event.detail = outcome == kReleaseOutcomeRevokeFailed ? absl::StrCat(outcome, ": ", why)
                                                        : std::string(outcome);
  Emit(std::move(event), now);
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

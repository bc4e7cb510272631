#include "server/api/owned_device_release.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"

namespace iommud {

OwnedDeviceRelease::OwnedDeviceRelease(const ReleaseRequests* requests,
                                       absl::Duration default_wait, absl::Duration poll)
    : requests_(requests),
      default_wait_nanos_(absl::ToInt64Nanoseconds(default_wait)),
      poll_(poll) {}

void OwnedDeviceRelease::set_default_wait(absl::Duration wait) {
  default_wait_nanos_.store(absl::ToInt64Nanoseconds(wait));
}

absl::Duration OwnedDeviceRelease::WaitFor(std::optional<absl::Duration> requested) const {
  const absl::Duration wait =
      requested.has_value() ? *requested : absl::Nanoseconds(default_wait_nanos_.load());
  return std::clamp(wait, absl::ZeroDuration(), kMaxReleaseWait);
}

bool OwnedDeviceRelease::InUse(const std::string& device, std::string* owner,
                               GroupId* group) const {
  Registry& registry = *requests_->registry();
  absl::StatusOr<DeviceInfo> known = registry.GetDevice(device);
  if (!known.ok() || known->binding != DriverBinding::kUserOwned) return false;
  *group = known->group;
  absl::StatusOr<GroupInfo> info = registry.GetGroup(known->group);
  if (info.ok()) *owner = info->owner;
  return true;
}

absl::StatusOr<OwnedDeviceRelease::Plan> OwnedDeviceRelease::WaitForOwner(
    const std::string& device, absl::Duration wait, bool force,
    const std::function<absl::Status()>& stop) const {
  Plan plan;
  if (!InUse(device, &plan.owner, &plan.group)) return plan;
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + wait;
  plan.requested = true;
  requests_->Requested(device,
                       absl::StrCat("ReleaseDevice of ", device, ": release its ownership within ",
                                    absl::FormatDuration(wait)),
                       start);
  while (true) {
    std::string owner;
    GroupId group = 0;
    if (!InUse(device, &owner, &group)) {
      plan.outcome = std::string(kReleaseOutcomeReleased);
      return plan;
    }
    const absl::Time now = absl::Now();
    if (now >= deadline) break;
    if (absl::Status stopped = stop(); !stopped.ok()) {
      requests_->Resolved(device, plan.owner, plan.group, kReleaseOutcomeCancelled,
                          std::string(stopped.message()), now);
      return stopped;
    }
    absl::SleepFor(std::min(poll_, deadline - now));
  }
  if (force) {
    std::string owner = plan.owner;
    GroupId group = plan.group;
    plan.why = requests_->Revoke(device, &owner, &group);
    plan.outcome = std::string(plan.why.empty() ? kReleaseOutcomeRevoked
                                                : kReleaseOutcomeRevokeFailed);
    return plan;
  }
  std::string owner = plan.owner;
  GroupId group = plan.group;
  InUse(device, &owner, &group);
  const std::string why = absl::StrCat("the owner did not let go within ",
                                       absl::FormatDuration(wait));
  requests_->Resolved(device, owner, group, kReleaseOutcomeRefused, why, absl::Now());
  return Error(absl::StatusCode::kFailedPrecondition, reason::kDeviceInUse,
               absl::StrCat("'", device, "' is in use by ", owner, " (group ", group,
                            "): ", why, "; nothing changed (an admin may force the release)"),
               {{"device", device},
                {"group_id", absl::StrCat(group)},
                {"owner", owner},
                {"waited_millis", absl::StrCat(absl::ToInt64Milliseconds(wait))}});
}

void OwnedDeviceRelease::Finish(const std::string& device, const Plan& plan,
                                const absl::Status& released) const {
  if (!plan.requested) return;
  if (released.ok()) {
    requests_->Resolved(device, plan.owner, plan.group, plan.outcome, plan.why, absl::Now());
  } else {
    requests_->Resolved(device, plan.owner, plan.group, kReleaseOutcomeRefused,
                        std::string(released.message()), absl::Now());
  }
}

}  // namespace iommud

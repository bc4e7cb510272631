#include "server/host/release_request.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace iommud {

ReleaseRequests::ReleaseRequests(Registry* registry, RegistryObserver* observer,
                                 std::function<void(absl::string_view)> count_outcome)
    : registry_(registry), observer_(observer), count_outcome_(std::move(count_outcome)) {}

void ReleaseRequests::Emit(RegistryEvent event, absl::Time now) const {
  if (observer_ == nullptr) return;
  event.time_unix_nanos = absl::ToUnixNanos(now);
  observer_->OnEvent(event);
}

void ReleaseRequests::Requested(const std::string& device, const std::string& detail,
                                absl::Time now) const {
  RegistryEvent event;
  event.kind = RegistryEvent::Kind::kReleaseRequested;
  event.device = device;
  absl::StatusOr<DeviceInfo> known = registry_->GetDevice(device);
  if (known.ok()) {
    event.unit = known->unit;
    event.group = known->group;
    event.domain = known->domain;
    absl::StatusOr<GroupInfo> group = registry_->GetGroup(known->group);
    if (group.ok()) event.owner = group->owner;
  }
  event.detail = detail;
  Emit(std::move(event), now);
}

std::string ReleaseRequests::Revoke(const std::string& device, std::string* owner,
                                    GroupId* group_id) const {
  absl::StatusOr<DeviceInfo> known = registry_->GetDevice(device);
  if (!known.ok()) return "";  // already gone: nothing of it to revoke
  *group_id = known->group;
  absl::StatusOr<GroupInfo> group = registry_->GetGroup(known->group);
  if (!group.ok()) return "";
  *owner = group->owner;
  if (group->domain == group->default_domain || group->domain == group->blocking_domain) {
    return "";  // on a core-owned domain: the device reaches nothing of an owner's
  }
  absl::StatusOr<DomainInfo> domain = registry_->GetDomain(group->domain);
  if (!domain.ok()) return std::string(domain.status().message());
  absl::StatusOr<std::vector<Mapping>> mappings = registry_->ListMappings(domain->id);
  if (!mappings.ok()) return std::string(mappings.status().message());
  std::string failed;
  for (const Mapping& mapping : *mappings) {
    absl::StatusOr<uint64_t> unmapped =
        registry_->Unmap(domain->id, mapping.iova, mapping.size, domain->owner);
    if (!unmapped.ok() && failed.empty()) failed = std::string(unmapped.status().message());
  }
  return failed;
}

void ReleaseRequests::Resolved(const std::string& device, const std::string& owner,
                               GroupId group, absl::string_view outcome, const std::string& why,
                               absl::Time now) const {
  if (count_outcome_) count_outcome_(outcome);
  RegistryEvent event;
  event.kind = RegistryEvent::Kind::kReleaseResolved;
  event.device = device;
  event.owner = owner;
  event.group = group;
  event.detail = why.empty() ? std::string(outcome) : absl::StrCat(outcome, ": ", why);
  Emit(std::move(event), now);
}

}  // namespace iommud

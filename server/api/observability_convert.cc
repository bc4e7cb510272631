#include "server/api/observability_convert.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "server/api/proto_convert.h"

namespace iommud {

namespace {

struct KindPair {
  RegistryEvent::Kind core;
  iommu::v1::EventKind wire;
};

constexpr KindPair kKinds[] = {
    {RegistryEvent::Kind::kDeviceProbed, iommu::v1::EVENT_KIND_DEVICE_PROBED},
    {RegistryEvent::Kind::kDeviceReleased, iommu::v1::EVENT_KIND_DEVICE_RELEASED},
    {RegistryEvent::Kind::kOwnershipClaimed, iommu::v1::EVENT_KIND_OWNERSHIP_CLAIMED},
    {RegistryEvent::Kind::kOwnershipReleased, iommu::v1::EVENT_KIND_OWNERSHIP_RELEASED},
    {RegistryEvent::Kind::kDomainAllocated, iommu::v1::EVENT_KIND_DOMAIN_ALLOCATED},
    {RegistryEvent::Kind::kDomainFreed, iommu::v1::EVENT_KIND_DOMAIN_FREED},
    {RegistryEvent::Kind::kAttached, iommu::v1::EVENT_KIND_ATTACHED},
    {RegistryEvent::Kind::kDetached, iommu::v1::EVENT_KIND_DETACHED},
    {RegistryEvent::Kind::kMapped, iommu::v1::EVENT_KIND_MAPPED},
    {RegistryEvent::Kind::kUnmapped, iommu::v1::EVENT_KIND_UNMAPPED},
    {RegistryEvent::Kind::kFault, iommu::v1::EVENT_KIND_FAULT},
    {RegistryEvent::Kind::kLeakFound, iommu::v1::EVENT_KIND_LEAK_FOUND},
    {RegistryEvent::Kind::kLeakRepaired, iommu::v1::EVENT_KIND_LEAK_REPAIRED},
    {RegistryEvent::Kind::kLeaseExpired, iommu::v1::EVENT_KIND_LEASE_EXPIRED},
    {RegistryEvent::Kind::kReleaseRequested, iommu::v1::EVENT_KIND_RELEASE_REQUESTED},
    {RegistryEvent::Kind::kReleaseResolved, iommu::v1::EVENT_KIND_RELEASE_RESOLVED},
};

}  // namespace

void LeakToProto(const LeakRecord& leak, iommu::v1::LeakedAttachment* out) {
  out->set_reason(std::string(LeakReasonName(leak.reason)));
  out->set_unit(leak.unit);
  out->set_group_id(leak.group);
  out->set_domain_id(leak.domain);
  out->set_rid(leak.rid);
  out->set_device(leak.device);
  out->set_owner(leak.owner);
  out->set_detail(leak.detail);
}

void ContentionToProto(const Registry::GroupContention& contention,
                       iommu::v1::GroupContention* out) {
  out->set_group_id(contention.group);
  out->set_unit(contention.unit);
  out->set_acquisitions(contention.acquisitions);
  out->set_contended(contention.contended);
  out->set_total_wait_seconds(absl::ToDoubleSeconds(contention.total_wait));
}

iommu::v1::EventKind EventKindToProto(RegistryEvent::Kind kind) {
  for (const KindPair& pair : kKinds) {
    if (pair.core == kind) return pair.wire;
  }
  return iommu::v1::EVENT_KIND_UNSPECIFIED;
}

void EventToProto(const RegistryEvent& event, iommu::v1::Event* out) {
  out->set_kind(EventKindToProto(event.kind));
  out->set_unit(event.unit);
  out->set_group_id(event.group);
  out->set_domain_id(event.domain);
  out->set_device(event.device);
  out->set_owner(event.owner);
  out->set_iova(event.iova);
  out->set_size(event.size);
  out->set_detail(event.detail);
  out->set_time_unix_nanos(event.time_unix_nanos);
  out->set_lease_expiry_unix_nanos(event.lease_expiry_unix_nanos);
}

absl::StatusOr<WatchSpec> WatchSpecFromProto(const iommu::v1::WatchEventsRequest& request) {
  WatchSpec spec;
  for (int wire_kind : request.kinds()) {
    const KindPair* found = std::find_if(std::begin(kKinds), std::end(kKinds),
                                         [&](const KindPair& pair) {
                                           return static_cast<int>(pair.wire) == wire_kind;
                                         });
    if (found == std::end(kKinds)) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidEnumValue,
                   absl::StrCat("kinds: ", wire_kind, " is not a change event kind"),
                   {{"field", "kinds"}, {"value", absl::StrCat(wire_kind)}});
    }
    spec.filter.kinds.insert(found->core);
  }
  spec.filter.group = request.group_id();
  spec.filter.device = request.device();
  if (request.queue_size() > kMaxWatchQueue) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidQueueSize,
                 absl::StrCat("queue_size ", request.queue_size(), " exceeds ", kMaxWatchQueue),
                 {{"field", "queue_size"}});
  }
  if (request.queue_size() != 0) spec.queue_size = request.queue_size();
  spec.snapshot = !request.skip_snapshot();
  return spec;
}

std::vector<iommu::v1::Event> SnapshotEvents(const Registry& registry, const EventFilter& filter) {
  std::vector<iommu::v1::Event> events;
  const int64_t now = absl::ToUnixNanos(absl::Now());
  auto add = [&](iommu::v1::EventKind kind) -> iommu::v1::Event& {
    events.emplace_back();
    events.back().set_kind(kind);
    events.back().set_time_unix_nanos(now);
    return events.back();
  };
  for (const GroupInfo& group : registry.ListGroups()) {
    if (filter.group != 0 && group.id != filter.group) continue;
    if (!filter.device.empty() &&
        std::find(group.devices.begin(), group.devices.end(), filter.device) ==
            group.devices.end()) {
      continue;
    }
    iommu::v1::Event& event = add(iommu::v1::EVENT_KIND_SNAPSHOT_GROUP);
    event.set_group_id(group.id);
    event.set_unit(group.unit);
    event.set_domain_id(group.domain);
    event.set_owner(group.owner);
    GroupToProto(group, event.mutable_group());
  }
  for (const DeviceInfo& device : registry.ListDevices()) {
    if (filter.group != 0 && device.group != filter.group) continue;
    if (!filter.device.empty() && device.name != filter.device) continue;
    iommu::v1::Event& event = add(iommu::v1::EVENT_KIND_SNAPSHOT_DEVICE);
    event.set_device(device.name);
    event.set_unit(device.unit);
    event.set_group_id(device.group);
    event.set_domain_id(device.domain);
    DeviceToProto(device, event.mutable_device_info());
  }
  if (filter.group == 0 && filter.device.empty()) {
    for (const DomainInfo& domain : registry.ListDomains()) {
      iommu::v1::Event& event = add(iommu::v1::EVENT_KIND_SNAPSHOT_DOMAIN);
      event.set_domain_id(domain.id);
      event.set_unit(domain.unit);
      event.set_owner(domain.owner);
      DomainToProto(domain, event.mutable_domain());
    }
  }
  add(iommu::v1::EVENT_KIND_SNAPSHOT_END);
  return events;
}

}  // namespace iommud

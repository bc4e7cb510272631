// Wire conversions of the observability API: leaks, lock contention, events and watch filters.
#ifndef IOMMUD_SERVER_API_OBSERVABILITY_CONVERT_H_
#define IOMMUD_SERVER_API_OBSERVABILITY_CONVERT_H_

#include <cstddef>
#include <vector>

#include "absl/status/statusor.h"
#include "core/event_bus.h"
#include "core/registry.h"
#include "core/registry_observer.h"
#include "iommu/v1/iommu.pb.h"

namespace iommud {

void LeakToProto(const LeakRecord& leak, iommu::v1::LeakedAttachment* out);
void ContentionToProto(const Registry::GroupContention& contention,
                       iommu::v1::GroupContention* out);
iommu::v1::EventKind EventKindToProto(RegistryEvent::Kind kind);
void EventToProto(const RegistryEvent& event, iommu::v1::Event* out);

// The filter and queue size of a WatchEvents request. INVALID_ARGUMENT (INVALID_ENUM_VALUE) for
// an unknown or snapshot-only kind, (INVALID_QUEUE_SIZE) for queue_size > kMaxWatchQueue.
struct WatchSpec {
  EventFilter filter;
  size_t queue_size = 1024;
  bool snapshot = true;
};
inline constexpr size_t kMaxWatchQueue = 65536;
absl::StatusOr<WatchSpec> WatchSpecFromProto(const iommu::v1::WatchEventsRequest& request);

// The snapshot events of the registry's current state (groups, devices, domains, then END),
// restricted to `filter`'s group/device.
std::vector<iommu::v1::Event> SnapshotEvents(const Registry& registry, const EventFilter& filter);

}  // namespace iommud

#endif  // IOMMUD_SERVER_API_OBSERVABILITY_CONVERT_H_

// StateCollector: the registry's state as Prometheus gauges, computed when /metrics is scraped
// (so nothing is kept up to date on the hot path):
//   iommud_devices, iommud_groups, iommud_owned_groups, iommud_attachments (groups attached to a
//   user domain), iommud_domains{type}, iommud_mappings, iommud_mapped_bytes, iommud_event_watchers,
//   iommud_memory_regions{kind} and iommud_memory_region_mapped_bytes{kind} (kind: emulated,
//   process_memory).
#ifndef IOMMUD_SERVER_OBSERVABILITY_STATE_COLLECTOR_H_
#define IOMMUD_SERVER_OBSERVABILITY_STATE_COLLECTOR_H_

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <vector>

#include "core/event_bus.h"
#include "core/registry.h"

namespace iommud {

class StateCollector : public prometheus::Collectable {
 public:
  // Neither is owned; both must outlive the collector's registration. `events` may be null.
  StateCollector(const Registry* registry, const EventBus* events)
      : registry_(registry), events_(events) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const Registry* const registry_;
  const EventBus* const events_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_OBSERVABILITY_STATE_COLLECTOR_H_

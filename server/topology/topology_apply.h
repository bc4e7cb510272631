// Applying a parsed start-up topology (topology.h) to the Registry.
#ifndef IOMMUD_SERVER_TOPOLOGY_TOPOLOGY_APPLY_H_
#define IOMMUD_SERVER_TOPOLOGY_TOPOLOGY_APPLY_H_

#include <cstddef>

#include "absl/status/status.h"
#include "core/registry.h"
#include "server/topology/topology.h"

namespace iommud {

// Adds every unit (in order), then probes every device (in order) through `registry`. On the first
// failure, returns the registry's error (same code and reason) with the entry's "<source>:<line>"
// and name prepended to the message and added to the metadata ("topology_source",
// "topology_line"); what was applied before stays applied. `units_adopted` (optional) counts the
// units the hardware already held (Registry::AddUnit adopted them).
absl::Status ApplyTopology(const LoadedTopology& loaded, Registry* registry,
                           size_t* units_adopted = nullptr);

}  // namespace iommud

#endif  // IOMMUD_SERVER_TOPOLOGY_TOPOLOGY_APPLY_H_

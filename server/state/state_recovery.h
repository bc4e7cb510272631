// Start-up of the registry from the state store: recover what the store holds, or apply the start-up
// topology to an empty store. The store is authoritative: once it holds state, the topology is not
// applied again (a restart must not probe the demo topology's devices a second time).
//
// A first start that dies while applying the topology leaves a partial store; the marker file
// (<state file>.topology-pending, written when the store is created and removed once the topology
// is in) tells the next start to finish the topology instead of trusting the partial store.
#ifndef IOMMUD_SERVER_STATE_STATE_RECOVERY_H_
#define IOMMUD_SERVER_STATE_STATE_RECOVERY_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/crash_points.h"
#include "core/registry.h"
#include "server/topology/topology.h"

namespace iommud {

struct StartupOutcome {
  RecoveryReport report;        // what Registry::Recover loaded and repaired
  bool recovered = false;       // the store held state (report counts are non-zero)
  bool topology_applied = false;
  std::vector<std::string> log;  // human-readable lines for the daemon's log
};

// The marker file of a store at `state_file`.
std::string TopologyPendingMarker(const std::string& state_file);

// Writes the marker (durably: the file and its directory are synced). STATE_DIR_UNUSABLE on failure.
absl::Status WriteTopologyPendingMarker(const std::string& state_file);

// Recover()s `registry` (which must have a store), then applies `topology` if the store was empty or
// the marker of `state_file` exists ("" = no file, e.g. the in-memory store), skipping units and
// devices the store already has, and removes the marker. After applying a topology it Reconcile()s
// once: a first start that died left hardware ahead of the store (units, adopted by AddUnit;
// domains and RIDs it never committed, freed and released here), and the report says so
// (units_adopted, repaired, remaining). `before_durable_step` (optional, core/crash_points.h) is
// called before the marker's removal. Errors: Recover's and ApplyTopology's.
absl::StatusOr<StartupOutcome> RecoverOrApplyTopology(
    Registry* registry, const LoadedTopology& topology, const std::string& state_file,
    const DurableStepHook& before_durable_step = nullptr);

// One line: "recovered 2 units, 4 devices, ... in 1.2ms".
std::string FormatRecoveryReport(const RecoveryReport& report);

}  // namespace iommud

#endif  // IOMMUD_SERVER_STATE_STATE_RECOVERY_H_

#include "server/state/state_recovery.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iterator>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/status_macros.h"
#include "server/topology/topology_apply.h"

namespace iommud {
namespace {

absl::Status MarkerError(const std::string& path, absl::string_view what, int error) {
  return Error(absl::StatusCode::kFailedPrecondition, reason::kStateDirUnusable,
               absl::StrCat(what, " '", path, "': ", std::strerror(error)), {{"path", path}});
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Makes the creation or removal of a file in `directory` durable.
absl::Status SyncDirectory(const std::string& directory) {
  const int fd = open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return MarkerError(directory, "cannot open the directory", errno);
  const int synced = fsync(fd);
  const int error = errno;
  close(fd);
  if (synced != 0) return MarkerError(directory, "cannot sync the directory", error);
  return absl::OkStatus();
}

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

// `loaded` without the units and devices `registry` already has (lines kept in step).
LoadedTopology Missing(const LoadedTopology& loaded, const Registry& registry) {
  LoadedTopology missing;
  missing.source = loaded.source;
  const iommu::v1::Topology& topology = loaded.topology;
  for (int i = 0; i < topology.units_size(); ++i) {
    if (registry.GetUnit(topology.units(i).name()).ok()) continue;
    *missing.topology.add_units() = topology.units(i);
    if (i < static_cast<int>(loaded.unit_lines.size())) {
      missing.unit_lines.push_back(loaded.unit_lines[i]);
    }
  }
  for (int i = 0; i < topology.devices_size(); ++i) {
    if (registry.GetDevice(topology.devices(i).name()).ok()) continue;
    *missing.topology.add_devices() = topology.devices(i);
    if (i < static_cast<int>(loaded.device_lines.size())) {
      missing.device_lines.push_back(loaded.device_lines[i]);
    }
  }
  return missing;
}

}  // namespace

std::string TopologyPendingMarker(const std::string& state_file) {
  return state_file + ".topology-pending";
}

absl::Status WriteTopologyPendingMarker(const std::string& state_file) {
  const std::string path = TopologyPendingMarker(state_file);
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return MarkerError(path, "cannot create", errno);
  const int synced = fsync(fd);
  const int error = errno;
  close(fd);
  if (synced != 0) return MarkerError(path, "cannot sync", error);
  return SyncDirectory(DirectoryOf(path));
}

absl::StatusOr<StartupOutcome> RecoverOrApplyTopology(Registry* registry,
                                                      const LoadedTopology& topology,
                                                      const std::string& state_file,
                                                      const DurableStepHook& before_durable_step) {
  StartupOutcome outcome;
  ASSIGN_OR_RETURN(outcome.report, registry->Recover());
  const RecoveryReport& report = outcome.report;
  outcome.recovered = report.units + report.devices + report.groups + report.domains != 0;
  const std::string marker = state_file.empty() ? "" : TopologyPendingMarker(state_file);
  const bool unfinished_first_start = !marker.empty() && Exists(marker);
  if (outcome.recovered) outcome.log.push_back(FormatRecoveryReport(report));
  if (outcome.recovered && !unfinished_first_start) {
    outcome.log.push_back(absl::StrCat("topology ", topology.source,
                                       " not applied: the state store is authoritative"));
    return outcome;
  }
  const LoadedTopology missing = Missing(topology, *registry);
  size_t units_adopted = 0;
  RETURN_IF_ERROR(ApplyTopology(missing, registry, &units_adopted));
  outcome.topology_applied = true;
  outcome.report.units_adopted += units_adopted;
  // What a start that died before left in the hardware beyond the store is known only now that
  // the topology's units are: free and release it.
  Registry::ReconcileResult reconciled = registry->Reconcile();
  std::move(reconciled.repaired.begin(), reconciled.repaired.end(),
            std::back_inserter(outcome.report.repaired));
  outcome.report.remaining = std::move(reconciled.remaining);
  outcome.log.push_back(absl::StrCat(
      unfinished_first_start && outcome.recovered ? "finished applying topology "
                                                  : "applied topology ",
      topology.source, ": ", missing.topology.units_size(), " units (", units_adopted,
      " adopted from the hardware), ", missing.topology.devices_size(), " devices; repaired ",
      reconciled.repaired.size(), ", leaks remaining ", outcome.report.remaining.size()));
  if (!marker.empty() && Exists(marker)) {
    if (before_durable_step) before_durable_step("topology marker removal");
    if (unlink(marker.c_str()) != 0) return MarkerError(marker, "cannot remove", errno);
    RETURN_IF_ERROR(SyncDirectory(DirectoryOf(marker)));
  }
  return outcome;
}

std::string FormatRecoveryReport(const RecoveryReport& report) {
  std::map<std::string, int> repaired;
  for (const LeakRecord& leak : report.repaired) ++repaired[std::string(LeakReasonName(leak.reason))];
  return absl::StrCat(
      "recovered ", report.units, " units, ", report.devices, " devices, ", report.groups,
      " groups, ", report.domains, " domains, ", report.mappings, " mappings in ",
      absl::FormatDuration(report.elapsed), "; hardware units adopted ", report.units_adopted,
      ", hardware domains adopted ", report.domains_adopted,
      ", rewritten ", report.domains_rewritten, "; repaired ", report.repaired.size(),
      repaired.empty() ? "" : absl::StrCat(" (", absl::StrJoin(repaired, ", ", absl::PairFormatter("=")), ")"),
      "; leaks remaining ", report.remaining.size(),
      report.dropped_groups.empty()
          ? ""
          : absl::StrCat("; ownerships dropped ", report.dropped_groups.size(), " (",
                         absl::StrJoin(report.dropped_groups, ", ",
                                       [](std::string* out, const RecoveryReport::DroppedGroup& g) {
                                         absl::StrAppend(out, "group ", g.group, " of ", g.owner);
                                       }),
                         ")"));
}

}  // namespace iommud

#include "server/host/host_recovery_report.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "prometheus/counter.h"

namespace iommud {

void AddDroppedOwnerships(const std::vector<RecoveryReport::DroppedGroup>& dropped,
                          const std::function<int(const std::string& device)>& kernel_group_of,
                          std::vector<host::RecoveredGroup>* recovered) {
  using Outcome = host::RecoveredGroup::Outcome;
  for (const RecoveryReport::DroppedGroup& group : dropped) {
    const std::string line = absl::StrCat(
        "group ", group.group, " (", absl::StrJoin(group.devices, ", "), ") could not be claimed "
        "or attached again, so its ownership by ", group.owner, " (domain ", group.domain,
        ") is dropped: it is not shown as owned or attached; ", group.status.message());
    auto known = std::find_if(recovered->begin(), recovered->end(),
                              [&](const host::RecoveredGroup& r) {
                                for (const std::string& device : r.devices) {
                                  if (std::find(group.devices.begin(), group.devices.end(),
                                                device) != group.devices.end()) {
                                    return true;
                                  }
                                }
                                return false;
                              });
    if (known != recovered->end()) {
      absl::StrAppend(&known->detail, "; ", line);
      known->ownership_dropped = true;
      continue;
    }
    host::RecoveredGroup outcome;
    outcome.group = group.devices.empty() ? -1 : kernel_group_of(group.devices.front());
    outcome.outcome = ErrorReason(group.status) == reason::kGroupBusy ? Outcome::kHeld
                                                                     : Outcome::kGone;
    outcome.devices = group.devices;
    outcome.status = group.status;
    outcome.detail = line;
    outcome.ownership_dropped = true;
    recovered->push_back(std::move(outcome));
  }
}

void ReportHostRecovery(const std::vector<host::RecoveredGroup>& recovered,
                        const Registry& registry, EventBus* events,
                        prometheus::Registry* metrics, Logger* logger) {
  using Outcome = host::RecoveredGroup::Outcome;
  prometheus::Family<prometheus::Counter>* family = nullptr;
  if (metrics != nullptr) {
    family = &prometheus::BuildCounter()
                  .Name("iommud_host_recovered_groups_total")
                  .Help("Groups a previous iommud process had claimed, by what its successor "
                        "found at start-up (restored, held, gone, restore_failed, adopted from "
                        "the fd store).")
                  .Register(*metrics);
    for (Outcome outcome : {Outcome::kRestored, Outcome::kHeld, Outcome::kGone,
                            Outcome::kRestoreFailed, Outcome::kAdopted}) {
      family->Add({{"outcome", std::string(host::RecoveryOutcomeName(outcome))}});
    }
  }
  for (const host::RecoveredGroup& group : recovered) {
    const bool bad = group.outcome == Outcome::kHeld || group.outcome == Outcome::kRestoreFailed ||
                     group.ownership_dropped;
    const std::string line = absl::StrCat("host recovery (", host::RecoveryOutcomeName(group.outcome),
                                          "): ", group.detail);
    if (logger != nullptr) {
      logger->Log(bad ? LogLevel::kWarning : LogLevel::kInfo, line);
    } else {
      LogToStderr(bad ? LogLevel::kWarning : LogLevel::kInfo, line);
    }
    if (family != nullptr) {
      family->Add({{"outcome", std::string(host::RecoveryOutcomeName(group.outcome))}}).Increment();
    }
    // An adopted group is in place: an event only when its container had to be repaired.
    if (events == nullptr || (group.outcome == Outcome::kAdopted && !group.repaired)) continue;
    RegistryEvent event;
    event.kind = bad ? RegistryEvent::Kind::kLeakFound : RegistryEvent::Kind::kLeakRepaired;
    if (!group.devices.empty()) {
      event.device = group.devices.front();
      absl::StatusOr<DeviceInfo> device = registry.GetDevice(event.device);
      if (device.ok()) {
        event.unit = device->unit;
        event.group = device->group;
      }
    }
    event.detail = line;
    event.time_unix_nanos = absl::ToUnixNanos(absl::Now());
    events->Publish(event);
  }
}

}  // namespace iommud

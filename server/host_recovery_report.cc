#include "server/host_recovery_report.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "prometheus/counter.h"

namespace iommud {

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
    const bool bad = group.outcome == Outcome::kHeld || group.outcome == Outcome::kRestoreFailed;
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

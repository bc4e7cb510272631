#include "server/observability/recovery_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include <map>
#include <string>

namespace iommud {

void ExportRecoveryMetrics(const RecoveryReport& report, DaemonMetrics* metrics) {
  prometheus::Registry& registry = *metrics->registry();
  prometheus::BuildGauge()
      .Name("iommud_recovery_seconds")
      .Help("How long the start-up recovery from the state store took.")
      .Register(registry)
      .Add({})
      .Set(absl::ToDoubleSeconds(report.elapsed));
  auto& objects = prometheus::BuildGauge()
                      .Name("iommud_recovered_objects")
                      .Help("Objects the start-up recovery loaded from the state store, by kind.")
                      .Register(registry);
  objects.Add({{"kind", "units"}}).Set(report.units);
  objects.Add({{"kind", "devices"}}).Set(report.devices);
  objects.Add({{"kind", "groups"}}).Set(report.groups);
  objects.Add({{"kind", "domains"}}).Set(report.domains);
  objects.Add({{"kind", "mappings"}}).Set(report.mappings);
  auto& hardware = prometheus::BuildGauge()
                       .Name("iommud_recovery_hardware_domains")
                       .Help("Domains the recovery found in surviving hardware: adopted as they "
                             "were, or rewritten because their page tables disagreed.")
                       .Register(registry);
  hardware.Add({{"outcome", "adopted"}}).Set(report.domains_adopted);
  hardware.Add({{"outcome", "rewritten"}}).Set(report.domains_rewritten);
  prometheus::BuildGauge()
      .Name("iommud_recovery_hardware_units_adopted")
      .Help("Units the start-up found already in the hardware and adopted (those of the store, "
            "and those a first start that died had programmed but not committed).")
      .Register(registry)
      .Add({})
      .Set(static_cast<double>(report.units_adopted));
  auto& repaired = prometheus::BuildCounter()
                       .Name("iommud_recovery_repaired_total")
                       .Help("Disagreements between hardware and store the recovery repaired, by "
                             "reason.")
                       .Register(registry);
  std::map<LeakReason, prometheus::Counter*> by_reason;
  for (LeakReason reason : AllLeakReasons()) {
    by_reason[reason] = &repaired.Add({{"reason", std::string(LeakReasonName(reason))}});
  }
  for (const LeakRecord& leak : report.repaired) {
    by_reason[leak.reason]->Increment();
    metrics->OnLeak(leak);
  }
  prometheus::BuildGauge()
      .Name("iommud_recovery_leaks_remaining")
      .Help("Leaks an audit still found after the recovery's repair.")
      .Register(registry)
      .Add({})
      .Set(static_cast<double>(report.remaining.size()));
}

}  // namespace iommud

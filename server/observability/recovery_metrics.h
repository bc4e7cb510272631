// The start-up recovery (state_recovery.h) as Prometheus metrics, set once when the daemon starts:
//   iommud_recovery_seconds                     how long Registry::Recover took
//   iommud_recovered_objects{kind}              units, devices, groups, domains, mappings loaded
//   iommud_recovery_hardware_domains{outcome}   adopted / rewritten (hardware that outlived us)
//   iommud_recovery_repaired_total{reason}      what recovery's reconcile repaired
//   iommud_recovery_leaks_remaining             what an audit still found after the repair
// The repaired leaks also count in iommud_leaks_detected_total (DaemonMetrics::OnLeak).
#ifndef IOMMUD_SERVER_OBSERVABILITY_RECOVERY_METRICS_H_
#define IOMMUD_SERVER_OBSERVABILITY_RECOVERY_METRICS_H_

#include "core/registry.h"
#include "server/observability/daemon_metrics.h"

namespace iommud {

// Registers the metrics above in `metrics`'s registry. Call once.
void ExportRecoveryMetrics(const RecoveryReport& report, DaemonMetrics* metrics);

}  // namespace iommud

#endif  // IOMMUD_SERVER_OBSERVABILITY_RECOVERY_METRICS_H_

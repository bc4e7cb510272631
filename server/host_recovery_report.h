// Tells what the linux backend found at start-up of the groups a previous iommud process had
// claimed (core/host/host_recovery.h): one log line each, one WatchEvents event each
// (LEAK_REPAIRED for a group whose drivers were restored, LEAK_FOUND for one still held through a
// VMM's device fds or whose restore failed; `detail` says which) and the counter
// iommud_host_recovered_groups_total{outcome="restored|held|gone|restore_failed"}.
#ifndef IOMMUD_SERVER_HOST_RECOVERY_REPORT_H_
#define IOMMUD_SERVER_HOST_RECOVERY_REPORT_H_

#include <vector>

#include "core/event_bus.h"
#include "core/host/host_recovery.h"
#include "core/registry.h"
#include "prometheus/registry.h"
#include "server/log.h"

namespace iommud {

// `logger` may be null (stderr then). Every outcome's counter is registered, even at zero.
void ReportHostRecovery(const std::vector<host::RecoveredGroup>& recovered,
                        const Registry& registry, EventBus* events,
                        prometheus::Registry* metrics, Logger* logger);

}  // namespace iommud

#endif  // IOMMUD_SERVER_HOST_RECOVERY_REPORT_H_

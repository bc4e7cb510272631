// Tells what the linux backend found at start-up of the groups a previous iommud process had
// claimed (core/host/host_recovery.h): one log line each, one WatchEvents event each
// (LEAK_REPAIRED for a group whose drivers were restored, LEAK_FOUND for one still held through a
// VMM's device fds, whose restore failed or whose ownership was dropped; `detail` says which) and
// the counter
// iommud_host_recovered_groups_total{outcome="restored|held|gone|restore_failed"}.
#ifndef IOMMUD_SERVER_HOST_HOST_RECOVERY_REPORT_H_
#define IOMMUD_SERVER_HOST_HOST_RECOVERY_REPORT_H_

#include <functional>
#include <string>
#include <vector>

#include "core/event_bus.h"
#include "core/host/host_recovery.h"
#include "core/registry.h"
#include "prometheus/registry.h"
#include "server/observability/log.h"

namespace iommud {

// Adds to `recovered` the owned groups whose ownership Registry::Recover dropped because the
// backend could not claim or attach them again (with the fd store: a group whose fd was not handed
// back). A group the linux backend already reported (its journal's recovery: held, gone, ...) gets
// the dropped ownership added to its detail; any other is reported as held (the backend said
// GROUP_BUSY: something else holds it) or gone (any other refusal: iommud cannot get it back).
// `kernel_group_of` maps a device to its kernel IOMMU group (-1: unknown).
void AddDroppedOwnerships(const std::vector<RecoveryReport::DroppedGroup>& dropped,
                          const std::function<int(const std::string& device)>& kernel_group_of,
                          std::vector<host::RecoveredGroup>* recovered);

// `logger` may be null (stderr then). Every outcome's counter is registered, even at zero.
void ReportHostRecovery(const std::vector<host::RecoveredGroup>& recovered,
                        const Registry& registry, EventBus* events,
                        prometheus::Registry* metrics, Logger* logger);

}  // namespace iommud

#endif  // IOMMUD_SERVER_HOST_HOST_RECOVERY_REPORT_H_

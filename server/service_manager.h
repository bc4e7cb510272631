// Notifications to the service manager (systemd's sd_notify(3) protocol) for a Type=notify unit:
// READY=1 once the daemon serves, STOPPING=1 when its shutdown begins, STATUS=<text> for
// `systemctl status`. Outside systemd (no NOTIFY_SOCKET in the environment: a shell, the tests,
// Kubernetes) every call is a no-op.
#ifndef IOMMUD_SERVER_SERVICE_MANAGER_H_
#define IOMMUD_SERVER_SERVICE_MANAGER_H_

#include <string>

#include "absl/strings/string_view.h"

namespace iommud {

// Sends `state`, newline-separated VARIABLE=value assignments (sd_notify(3): "READY=1",
// "STATUS=serving on unix:/run/iommud/iommud.sock", ...), to the socket named by $NOTIFY_SOCKET.
// Returns true when it was sent; false when there is no NOTIFY_SOCKET or sending failed (the
// caller carries on: a lost notification must never stop the daemon). Thread-safe.
bool NotifyServiceManager(absl::string_view state);

// "READY=1\nSTATUS=serving on <target>".
std::string ReadyNotification(absl::string_view target);
// "STOPPING=1\nSTATUS=<why>".
std::string StoppingNotification(absl::string_view why);

}  // namespace iommud

#endif  // IOMMUD_SERVER_SERVICE_MANAGER_H_

#include "server/service_manager.h"

#include <systemd/sd-daemon.h>

#include "absl/strings/str_cat.h"

namespace iommud {

bool NotifyServiceManager(absl::string_view state) {
  // unset_environment = 0: later notifications (STOPPING=1) need NOTIFY_SOCKET too.
  return sd_notify(0, std::string(state).c_str()) > 0;
}

std::string ReadyNotification(absl::string_view target) {
  return absl::StrCat("READY=1\nSTATUS=serving on ", target);
}

std::string StoppingNotification(absl::string_view why) {
  return absl::StrCat("STOPPING=1\nSTATUS=", why);
}

}  // namespace iommud

// UeventMonitor: the kernel's device add/remove notifications (kobject uevents), read from a
// NETLINK_KOBJECT_UEVENT socket bound to the kernel's multicast group (no udevd needed: these are
// the kernel's own messages, before any udev rule runs).
//
// Only the kernel's messages are taken (the sender's netlink port id must be 0); udev's re-broadcasts
// (group 2, "libudev" header) are never read. Messages are parsed by ParseUevent, which tests use on
// their own buffers. The monitor is one reader's: Next() from one thread at a time.
// Errors: UEVENT_SOCKET_FAILED (socket, bind, poll or recv failed, with the errno).
#ifndef IOMMUD_CORE_HOST_UEVENT_MONITOR_H_
#define IOMMUD_CORE_HOST_UEVENT_MONITOR_H_

#include <cstddef>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/host/unique_fd.h"

namespace iommud {
namespace host {

// One kernel uevent: "ACTION@DEVPATH\0KEY=VALUE\0...".
struct Uevent {
  std::string action;     // "add", "remove", "bind", "unbind", "change", ...
  std::string devpath;    // "/devices/pci0000:00/0000:00:03.0/0000:01:01.0"
  std::string subsystem;  // "pci", ...
  std::map<std::string, std::string, std::less<>> vars;  // every KEY=VALUE, ACTION and DEVPATH too

  // The PCI address of a PCI device's event ("0000:01:01.0"), "" for other subsystems.
  std::string PciDevice() const;
};

// Parses one netlink message of the kernel. nullopt for anything else (a udev message, a message
// without ACTION or DEVPATH, a header that disagrees with its ACTION/DEVPATH keys).
std::optional<Uevent> ParseUevent(const char* data, size_t size);

// Where uevents come from: the kernel (UeventMonitor) or a test's script.
class UeventSource {
 public:
  virtual ~UeventSource() = default;
  // The next event, waiting up to `timeout`; nullopt when none came in time.
  virtual absl::StatusOr<std::optional<Uevent>> Next(absl::Duration timeout) = 0;
};

class UeventMonitor final : public UeventSource {
 public:
  // Opens and binds the socket; events from this point on are queued by the kernel (the socket's
  // receive buffer is enlarged, so a burst of remove/rescan does not overflow it).
  static absl::StatusOr<std::unique_ptr<UeventMonitor>> Open();

  absl::StatusOr<std::optional<Uevent>> Next(absl::Duration timeout) override;
  // Messages the kernel dropped because the buffer was full (ENOBUFS seen): the caller must
  // resynchronize with sysfs.
  uint64_t overruns() const { return overruns_; }

 private:
  explicit UeventMonitor(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
  uint64_t overruns_ = 0;
};

}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_CORE_HOST_UEVENT_MONITOR_H_

#include "core/host/uevent_monitor.h"

#include <linux/netlink.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/error_reasons.h"
#include "core/host/errno_error.h"

namespace iommud {
namespace host {
namespace {

constexpr unsigned kKernelGroup = 1;    // the kernel's uevent multicast group (udev's is 2)
constexpr size_t kMaxMessage = 8192;    // UEVENT_BUFFER_SIZE is 2048; room to spare
constexpr int kReceiveBuffer = 1 << 20;

absl::Status SocketError(absl::string_view call, int err) {
  return ErrnoError(CodeForErrno(err), reason::kUeventSocketFailed,
                    absl::StrCat(call, " of the kernel uevent socket"), err);
}

}  // namespace

std::string Uevent::PciDevice() const {
  if (subsystem != "pci") return "";
  auto it = vars.find("PCI_SLOT_NAME");
  if (it != vars.end()) return it->second;
  const size_t slash = devpath.rfind('/');
  return slash == std::string::npos ? devpath : devpath.substr(slash + 1);
}

std::optional<Uevent> ParseUevent(const char* data, size_t size) {
  if (size == 0) return std::nullopt;
  std::vector<absl::string_view> fields;
  size_t start = 0;
  for (size_t i = 0; i <= size; ++i) {
    if (i == size || data[i] == '\0') {
      if (i > start) fields.emplace_back(data + start, i - start);
      start = i + 1;
    }
  }
  if (fields.empty()) return std::nullopt;
  // The kernel's header is "ACTION@DEVPATH"; udev's messages start with "libudev".
  const absl::string_view header = fields[0];
  const size_t at = header.find('@');
  if (at == absl::string_view::npos || absl::StartsWith(header, "libudev")) return std::nullopt;
  Uevent event;
  for (size_t i = 1; i < fields.size(); ++i) {
    const size_t eq = fields[i].find('=');
    if (eq == absl::string_view::npos) continue;
    event.vars[std::string(fields[i].substr(0, eq))] = std::string(fields[i].substr(eq + 1));
  }
  auto action = event.vars.find("ACTION");
  auto devpath = event.vars.find("DEVPATH");
  if (action == event.vars.end() || devpath == event.vars.end()) return std::nullopt;
  if (header.substr(0, at) != action->second || header.substr(at + 1) != devpath->second) {
    return std::nullopt;
  }
  event.action = action->second;
  event.devpath = devpath->second;
  auto subsystem = event.vars.find("SUBSYSTEM");
  if (subsystem != event.vars.end()) event.subsystem = subsystem->second;
  return event;
}

absl::StatusOr<std::unique_ptr<UeventMonitor>> UeventMonitor::Open() {
  UniqueFd fd(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
                       NETLINK_KOBJECT_UEVENT));
  if (!fd.valid()) return SocketError("socket", errno);
  // Best effort: SO_RCVBUFFORCE needs CAP_NET_ADMIN, SO_RCVBUF is capped by rmem_max.
  int size = kReceiveBuffer;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) != 0) {
    (void)::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  }
  sockaddr_nl address{};
  address.nl_family = AF_NETLINK;
  address.nl_groups = kKernelGroup;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    return SocketError("bind", errno);
  }
  return std::unique_ptr<UeventMonitor>(new UeventMonitor(std::move(fd)));
}

absl::StatusOr<std::optional<Uevent>> UeventMonitor::Next(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::vector<char> buffer(kMaxMessage);
  while (true) {
    sockaddr_nl sender{};
    iovec iov{buffer.data(), buffer.size()};
    msghdr message{};
    message.msg_name = &sender;
    message.msg_namelen = sizeof(sender);
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    const ssize_t n = ::recvmsg(fd_.get(), &message, 0);
    if (n >= 0) {
      // Only the kernel's (port 0) whole messages.
      if (sender.nl_pid != 0 || (message.msg_flags & MSG_TRUNC) != 0) continue;
      std::optional<Uevent> event = ParseUevent(buffer.data(), static_cast<size_t>(n));
      if (event.has_value()) return event;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == ENOBUFS) {
      ++overruns_;
      continue;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) return SocketError("recvmsg", errno);
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return std::optional<Uevent>();
    pollfd poll_fd{fd_.get(), POLLIN, 0};
    const int ready =
        ::poll(&poll_fd, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready < 0 && errno != EINTR) return SocketError("poll", errno);
  }
}

}  // namespace host
}  // namespace iommud

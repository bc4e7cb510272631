#include "tests/host/fd_store_supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "core/sync.h"

namespace iommud {
namespace host {
namespace test {
namespace {

constexpr int kMaxFdsPerMessage = 16;
constexpr char kMarker[] = "X_IOMMUD_TEST_SYNC=";

}  // namespace

absl::StatusOr<std::unique_ptr<FdStoreSupervisor>> FdStoreSupervisor::Create(
    const std::string& socket_path, size_t max_fds) {
  UniqueFd socket(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!socket.valid()) return absl::InternalError("socket(AF_UNIX, SOCK_DGRAM) failed");
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(address.sun_path)) return absl::InvalidArgumentError("path");
  std::strncpy(address.sun_path, socket_path.c_str(), sizeof(address.sun_path) - 1);
  ::unlink(socket_path.c_str());
  if (::bind(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    return absl::InternalError(absl::StrCat("bind ", socket_path, ": ", std::strerror(errno)));
  }
  int on = 1;
  if (::setsockopt(socket.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) != 0) {
    return absl::InternalError("SO_PASSCRED failed");
  }
  std::unique_ptr<FdStoreSupervisor> supervisor(
      new FdStoreSupervisor(socket_path, std::move(socket), max_fds));
  supervisor->drainer_ = std::thread([s = supervisor.get()] { s->Drain(); });
  return supervisor;
}

FdStoreSupervisor::FdStoreSupervisor(std::string path, UniqueFd socket, size_t max_fds)
    : path_(std::move(path)), socket_(std::move(socket)), max_fds_(max_fds) {}

FdStoreSupervisor::~FdStoreSupervisor() {
  stop_.store(true);
  if (drainer_.joinable()) drainer_.join();
  ::unlink(path_.c_str());
}

void FdStoreSupervisor::Drain() {
  while (!stop_.load()) {
    pollfd poller{socket_.get(), POLLIN, 0};
    if (::poll(&poller, 1, 50) <= 0) continue;
    char buffer[4096];
    iovec iov{buffer, sizeof(buffer) - 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) +
                                  CMSG_SPACE(kMaxFdsPerMessage * sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    const ssize_t n = ::recvmsg(socket_.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) continue;
    pid_t sender = 0;
    std::vector<UniqueFd> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET) continue;
      if (c->cmsg_type == SCM_CREDENTIALS) {
        ucred credentials;
        std::memcpy(&credentials, CMSG_DATA(c), sizeof(credentials));
        sender = credentials.pid;
      } else if (c->cmsg_type == SCM_RIGHTS) {
        const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          fds.emplace_back(fd);
        }
      }
    }
    if ((msg.msg_flags & MSG_CTRUNC) != 0) {  // systemd refuses a truncated message
      ++rejected_;
      continue;
    }
    Handle(sender, std::string(buffer, static_cast<size_t>(n)), std::move(fds));
  }
}

void FdStoreSupervisor::Handle(pid_t sender, const std::string& message,
                               std::vector<UniqueFd> fds) {
  MutexLock lock(&mu_);
  if (absl::StartsWith(message, kMarker) && sender == ::getpid()) {
    ++markers_seen_;
    return;
  }
  if (sender == 0 || sender != main_pid_) {  // NotifyAccess=main
    ++rejected_;
    return;  // the fds close
  }
  bool store = false, remove = false;
  std::string name = "stored";  // systemd's default FDNAME
  for (absl::string_view line : absl::StrSplit(message, '\n', absl::SkipEmpty())) {
    if (line == "FDSTORE=1") store = true;
    if (line == "FDSTOREREMOVE=1") remove = true;
    if (absl::ConsumePrefix(&line, "FDNAME=")) name = std::string(line);
  }
  if (remove) {
    for (auto it = kept_.begin(); it != kept_.end();) {
      it = it->first == name ? kept_.erase(it) : std::next(it);
    }
  }
  if (!store) return;  // fds sent without FDSTORE=1 are closed, as systemd does
  for (UniqueFd& fd : fds) {
    if (kept_.size() >= max_fds_) {
      ++refused_;
      continue;
    }
    kept_.emplace_back(name, std::move(fd));
  }
}

void FdStoreSupervisor::Sync() {
  const uint64_t marker = ++markers_sent_;
  UniqueFd sender(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path_.c_str(), sizeof(address.sun_path) - 1);
  int on = 1;
  ::setsockopt(sender.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof(on));
  const std::string text = absl::StrCat(kMarker, marker);
  (void)::sendto(sender.get(), text.data(), text.size(), 0,
                 reinterpret_cast<sockaddr*>(&address), sizeof(address));
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (absl::Now() < deadline) {
    {
      MutexLock lock(&mu_);
      if (markers_seen_ >= marker) return;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
}

std::vector<std::string> FdStoreSupervisor::Names() const {
  MutexLock lock(&mu_);
  std::vector<std::string> names;
  for (const auto& [name, fd] : kept_) names.push_back(name);
  return names;
}

absl::StatusOr<pid_t> FdStoreSupervisor::Start(const std::vector<std::string>& argv,
                                               const std::string& log_path) {
  MutexLock lock(&mu_);
  std::vector<std::string> args = argv;
  std::vector<char*> raw;
  for (std::string& arg : args) raw.push_back(arg.data());
  raw.push_back(nullptr);
  std::vector<int> fds;
  std::vector<std::string> names;
  for (const auto& [name, fd] : kept_) {
    fds.push_back(fd.get());
    names.push_back(name);
  }
  // The environment, built before fork: ours without the variables we set, then those. LISTEN_PID
  // gets the child's pid in the child (after fork, as systemd does), written into its buffer.
  std::vector<std::string> env;
  for (char** e = ::environ; *e != nullptr; ++e) {
    const absl::string_view entry(*e);
    if (absl::StartsWith(entry, "LISTEN_") || absl::StartsWith(entry, "NOTIFY_SOCKET=")) continue;
    env.emplace_back(entry);
  }
  env.push_back(absl::StrCat("LISTEN_FDS=", fds.size()));
  env.push_back(absl::StrCat("LISTEN_FDNAMES=", absl::StrJoin(names, ":")));
  env.push_back(absl::StrCat("NOTIFY_SOCKET=", path_));
  env.push_back(std::string("LISTEN_PID=") + std::string(20, '\0'));
  std::vector<char*> envp;
  for (std::string& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);
  char* const listen_pid = env.back().data() + std::strlen("LISTEN_PID=");
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return absl::InternalError("cannot open the log");
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    return absl::InternalError("fork failed");
  }
  if (pid == 0) {
    // Only async-signal-safe calls from here (the parent has threads). The kept fds first move
    // above every target slot, then down to 3, 4, ... (dup2 clears FD_CLOEXEC).
    if (::dup2(log_fd, 1) < 0 || ::dup2(log_fd, 2) < 0) ::_exit(120);
    const int base = 1000;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (::dup2(fds[i], base + static_cast<int>(i)) < 0) ::_exit(121);
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      if (::dup2(base + static_cast<int>(i), 3 + static_cast<int>(i)) < 0) ::_exit(122);
      ::close(base + static_cast<int>(i));
    }
    char digits[20];
    int length = 0;
    for (pid_t value = ::getpid(); value > 0; value /= 10) digits[length++] = '0' + value % 10;
    for (int i = 0; i < length; ++i) listen_pid[i] = digits[length - 1 - i];
    listen_pid[length] = '\0';
    ::execve(raw[0], raw.data(), envp.data());
    ::_exit(127);
  }
  ::close(log_fd);
  main_pid_ = pid;
  return pid;
}

}  // namespace test
}  // namespace host
}  // namespace iommud

#include "tests/host/vm_scenario_support.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/host/sysfs_io.h"

namespace iommud {
namespace host {
namespace test {

UniqueFd WriteSealedMemfd(size_t pages) {
  UniqueFd fd(memfd_create("iommud-vm-sealed", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) return fd;
  if (ftruncate(fd.get(), static_cast<off_t>(pages * kPage)) != 0 ||
      fcntl(fd.get(), F_ADD_SEALS, F_SEAL_WRITE) != 0) {
    return UniqueFd();
  }
  return fd;
}

MemfdPages::MemfdPages(size_t pages)
    : fd_(::memfd_create("iommud_vm_scenario", MFD_CLOEXEC)), pages_(pages) {
  if (fd_.valid() && ::ftruncate(fd_.get(), static_cast<off_t>(size())) == 0) {
    void* addr = ::mmap(nullptr, size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
    if (addr != MAP_FAILED) addr_ = static_cast<uint8_t*>(addr);
  }
}

MemfdPages::~MemfdPages() {
  if (addr_ != nullptr) ::munmap(addr_, size());
}

void MemfdPages::Fill(uint8_t value, size_t page) { std::memset(data(page), value, kPage); }

std::string MemfdPages::ReadFile(size_t length, size_t page) const {
  std::string out(length, '\0');
  const ssize_t n = ::pread(fd_.get(), out.data(), length, static_cast<off_t>(page * kPage));
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

std::string Pattern(size_t length, int seed) {
  std::string out(length, '\0');
  for (size_t i = 0; i < length; ++i) out[i] = static_cast<char>((i * 7 + seed) & 0xff);
  return out;
}

int CountOpenFds() {
  absl::StatusOr<std::vector<std::string>> fds = ListSysfsDirectory("/proc/self/fd");
  return fds.ok() ? static_cast<int>(fds->size()) : -1;
}

std::map<std::string, std::string> DriverSnapshot(const SysfsInventory& inventory) {
  std::map<std::string, std::string> snapshot;
  absl::StatusOr<std::vector<PciDeviceInfo>> devices = inventory.PciDevices();
  if (!devices.ok()) return snapshot;
  for (const PciDeviceInfo& device : *devices) {
    snapshot[device.name] = absl::StrCat(device.driver, "|", device.driver_override);
  }
  return snapshot;
}

KernelLog::KernelLog() : fd_(::open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC)) {
  if (fd_.valid()) ::lseek(fd_.get(), 0, SEEK_END);
}

std::string KernelLog::WaitFor(const std::vector<std::string>& needles, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  char record[8192];
  while (absl::Now() < deadline) {
    const ssize_t n = ::read(fd_.get(), record, sizeof(record) - 1);
    if (n <= 0) {
      if (n < 0 && errno == EPIPE) continue;  // records overwritten; keep reading
      absl::SleepFor(absl::Milliseconds(20));
      continue;
    }
    const std::string line(record, static_cast<size_t>(n));
    seen_ += line;
    if (std::all_of(needles.begin(), needles.end(),
                    [&line](const std::string& s) { return absl::StrContains(line, s); })) {
      return line;
    }
  }
  return "";
}

pid_t StartQemuVmm(const std::string& device, uid_t uid, gid_t gid, const std::string& log_path) {
  return StartQemuVmm(std::vector<std::string>{device}, uid, gid, log_path);
}

pid_t StartQemuVmm(const std::vector<std::string>& devices, uid_t uid, gid_t gid,
                   const std::string& log_path) {
  std::vector<std::string> args = {kQemu, "-machine", "q35,accel=tcg", "-m", "64", "-S",
                                   "-display", "none", "-monitor", "none", "-serial", "none",
                                   "-nodefaults"};
  for (const std::string& device : devices) {
    args.push_back("-device");
    args.push_back(absl::StrCat("vfio-pci,host=", device));
  }
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  char path_env[] = "PATH=/usr/bin:/bin";
  char* envp[] = {path_env, nullptr};
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {  // only async-signal-safe calls from here on
    const struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd < 0 || ::dup2(null_fd, 0) < 0 || ::dup2(log_fd, 1) < 0 || ::dup2(log_fd, 2) < 0) {
      ::_exit(120);
    }
    if (::setrlimit(RLIMIT_MEMLOCK, &unlimited) != 0) ::_exit(121);
    if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) ::_exit(122);
    ::close_range(3, ~0U, 0);
    ::execve(kQemu, argv.data(), envp);
    ::_exit(127);
  }
  ::close(log_fd);
  return pid;
}

bool WaitForChildExit(pid_t pid, absl::Duration timeout, int* status) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    const pid_t waited = ::waitpid(pid, status, WNOHANG);
    if (waited == pid) return true;
    if (waited < 0 || absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

bool HasFdTo(pid_t pid, const std::string& target) { return CountFdsTo(pid, target) > 0; }

int CountFdsTo(pid_t pid, const std::string& target) {
  const std::string dir = absl::StrCat("/proc/", pid, "/fd");
  absl::StatusOr<std::vector<std::string>> fds = ListSysfsDirectory(dir);
  if (!fds.ok()) return 0;
  int count = 0;
  for (const std::string& fd : *fds) {
    char link[256];
    const ssize_t n = ::readlink(absl::StrCat(dir, "/", fd).c_str(), link, sizeof(link));
    if (n > 0 && std::string(link, static_cast<size_t>(n)) == target) ++count;
  }
  return count;
}

int64_t StatusKib(pid_t pid, const std::string& field) {
  std::istringstream status(ReadWholeFile(absl::StrCat("/proc/", pid, "/status")));
  std::string line;
  while (std::getline(status, line)) {
    if (absl::StartsWith(line, field + ":")) {
      return std::strtoll(line.c_str() + field.size() + 1, nullptr, 10);
    }
  }
  return -1;
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("signal ", WTERMSIG(status));
  return absl::StrCat("wait status ", status);
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

}  // namespace test
}  // namespace host
}  // namespace iommud

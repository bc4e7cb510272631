#include "tests/host/vm_scenario_support.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/host/sysfs_io.h"

namespace iommud {
namespace host {
namespace test {

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

}  // namespace test
}  // namespace host
}  // namespace iommud

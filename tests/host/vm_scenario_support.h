// What the VM scenarios (host_vfio_vm_test, host_api_vm_test, host_handover_vm_test) share: memfd
// pages standing for a VMM's memory, DMA patterns, the kernel log since a point, leak checks of fds
// and drivers, and a real VMM (Debian's QEMU) to hand groups to.
#ifndef IOMMUD_TESTS_HOST_VM_SCENARIO_SUPPORT_H_
#define IOMMUD_TESTS_HOST_VM_SCENARIO_SUPPORT_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "core/host/sysfs_inventory.h"
#include "core/host/unique_fd.h"

namespace iommud {
namespace host {
namespace test {

inline constexpr uint64_t kPage = 4096;

// The guest run.sh boots (tests/host/README.md): three ways of being behind the IOMMU, and the q35
// chipset's multi-function ICH9 (one group: ISA bridge, SATA on ahci, SMBus with no driver).
inline constexpr char kEduAlone[] = "0000:00:02.0";           // a group of its own
inline constexpr char kBridge[] = "0000:00:03.0";             // conventional PCI bridge
inline constexpr char kEduBehindBridgeA[] = "0000:01:01.0";   // one group with the bridge and B;
inline constexpr char kEduBehindBridgeB[] = "0000:01:02.0";   // both DMA as 00:03.0
inline constexpr char kRootPort[] = "0000:00:04.0";           // PCIe root port (pcieport)
inline constexpr char kEduBehindRootPort[] = "0000:02:00.0";  // its own group, its own id
inline constexpr char kIch9Isa[] = "0000:00:1f.0";
inline constexpr char kIch9Sata[] = "0000:00:1f.2";
inline constexpr char kIch9Smbus[] = "0000:00:1f.3";

// Two IOVAs the scenarios map pages at, and a DMA length: QEMU 7.2's edu refuses a transfer of
// its whole 4 KiB buffer.
inline constexpr uint64_t kIovaA = 0x100000;
inline constexpr uint64_t kIovaB = 0x200000;
inline constexpr uint32_t kCount = 4000;

// `pages` pages of a memfd, mapped into this process (the memory a VMM would pass as an fd).
class MemfdPages {
 public:
  explicit MemfdPages(size_t pages = 1);
  ~MemfdPages();
  MemfdPages(const MemfdPages&) = delete;
  MemfdPages& operator=(const MemfdPages&) = delete;

  bool ok() const { return addr_ != nullptr; }
  int fd() const { return fd_.get(); }
  uint64_t size() const { return pages_ * kPage; }
  uint8_t* data(size_t page = 0) { return addr_ + page * kPage; }
  void Fill(uint8_t value, size_t page = 0);
  // The memfd's content read through the fd, not through the mapping: what landed in the file.
  std::string ReadFile(size_t length, size_t page = 0) const;

 private:
  UniqueFd fd_;
  size_t pages_;
  uint8_t* addr_ = nullptr;
};

// A memfd of `pages` pages sealed against writes (F_SEAL_WRITE: no writable shared mapping of it
// can be made); not valid() on failure.
UniqueFd WriteSealedMemfd(size_t pages);

// `length` bytes that differ with `seed`.
std::string Pattern(size_t length, int seed);

// The open fds of this process (-1 if /proc is unreadable).
int CountOpenFds();

// device -> "driver|override" for every PCI device.
std::map<std::string, std::string> DriverSnapshot(const SysfsInventory& inventory);

// /dev/kmsg records written after construction.
class KernelLog {
 public:
  KernelLog();
  bool ok() const { return fd_.valid(); }
  // Waits up to `timeout` for a record containing every one of `needles`; returns it or "".
  std::string WaitFor(const std::vector<std::string>& needles, absl::Duration timeout);
  const std::string& seen() const { return seen_; }

 private:
  UniqueFd fd_;
  std::string seen_;
};

// --- A VMM that opens VFIO itself (the hand-over scenarios) ---

// Debian's QEMU 7.2 (the build machine's, through the 9p root).
inline constexpr char kQemu[] = "/usr/bin/qemu-system-x86_64";
// How long a VMM may take to open its group or to give up (a nested TCG QEMU loads in seconds).
inline constexpr absl::Duration kVmmTimeout = absl::Seconds(20);

// Starts QEMU as `uid`:`gid` (a uid in no /etc/passwd is fine: the kernel compares numbers),
// paused (-S), with `device` passed through (-device vfio-pci,host=...): QEMU opens /dev/vfio/vfio
// and the device's /dev/vfio/N itself. Its stdout and stderr go to `log_path`. RLIMIT_MEMLOCK is
// lifted first (as root): VFIO pins the VMM's 64 MiB of RAM. Returns the pid, or -1. The child
// exits 120-127 when its own set-up fails (not QEMU's statuses).
pid_t StartQemuVmm(const std::string& device, uid_t uid, gid_t gid, const std::string& log_path);
// The same with every device of `devices` passed through (one -device vfio-pci,host=... each: the
// devices of one group, which QEMU opens once and gets one device fd per device from).
pid_t StartQemuVmm(const std::vector<std::string>& devices, uid_t uid, gid_t gid,
                   const std::string& log_path);

// Waits up to `timeout` for child `pid` to exit; true (and its wait status) if it did.
bool WaitForChildExit(pid_t pid, absl::Duration timeout, int* status);

// Whether process `pid` has an fd whose link reads `target` ("anon_inode:[vfio-device]",
// "/dev/vfio/7").
bool HasFdTo(pid_t pid, const std::string& target);
// How many fds of process `pid` link to `target` (0 if /proc/PID/fd is unreadable).
int CountFdsTo(pid_t pid, const std::string& target);

// A "Vm...:  N kB" line of /proc/PID/status, in KiB (-1 if absent).
int64_t StatusKib(pid_t pid, const std::string& field);

// What a child's wait status says, for failure messages.
std::string DescribeExit(int status);

// A file's whole content ("" if unreadable).
std::string ReadWholeFile(const std::string& path);

}  // namespace test
}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_TESTS_HOST_VM_SCENARIO_SUPPORT_H_

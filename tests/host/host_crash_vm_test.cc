// iommud `--backend=linux` killed with SIGKILL at random points of a VMM's workload, then started
// again: what the kernel dropped with the dead process's fds is found and reported truthfully,
// never shown as still in place. Run only inside the VM that tests/host/run.sh boots, as root.
//
// Each round: one VMM workload on a group (claim, alloc+attach, register memory, map two pages,
// open the device fd, DMA, close it, unmap, detach, release, free, unregister), SIGKILL between two
// steps or while one is in flight (a random step, a random delay), restart on the same state
// directory (so on the same host journal, core/host/host_journal.h), then:
//   - the test still holds the device fd (the VMM lives on): the group is reported held (log),
//     it cannot be claimed (GROUP_BUSY), the audit shows its RIDs on a domain no one knows, and a
//     DMA through the held fd still lands where the dead daemon had mapped it (the kernel kept the
//     container); once the VMM closes its fd, the next claim restores and takes it;
//   - otherwise the group is back on its drivers, unowned, on its default domain, no process has
//     a VFIO fd, and a fresh claim sees no stale mapping (DMA at the old IOVA does not land) until
//     it maps again.
// After every round: drivers as before, no /dev/vfio group node, no fd leaked by the test, the
// daemon pins nothing (VmLck 0), the audit is clean. IOMMUD_VM_SOAK=1 (run.sh --soak) runs more
// rounds. Prints "host_crash: rounds=.. kills=.. held=.. restored=.. leaks found=..".
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clients/cpp/fd_channel_client.h"
#include "clients/cpp/iommud_client.h"
#include "core/error.h"
#include "core/host/host_recovery.h"
#include "core/host/linux_backend.h"
#include "core/host/sysfs_inventory.h"
#include "core/host/sysfs_io.h"
#include "core/host/unique_fd.h"
#include "core/host/vfio_device.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/host/edu_device.h"
#include "tests/host/vm_daemon.h"
#include "tests/host/vm_scenario_support.h"
#include "tests/host/vmm_session.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace host {
namespace test {
namespace {

using ::testing::ElementsAre;

constexpr char kStateDir[] = "/tmp/iommud-crash";
constexpr char kSocket[] = "/tmp/iommud-crash/iommud.sock";
constexpr char kFdSocket[] = "/tmp/iommud-crash/iommud.sock.fds";
constexpr char kOwner[] = "vmm-1";

// The workload's steps, in order.
enum Step {
  kClaim, kAttach, kRegister, kMapA, kMapB, kOpenDevice, kDma, kCloseDevice, kUnmapB, kDetach,
  kRelease, kFree, kUnregister, kSteps
};
const char* const kStepNames[kSteps] = {"claim", "attach", "register", "map_a", "map_b",
                                        "open_device", "dma", "close_device", "unmap_b", "detach",
                                        "release", "free", "unregister"};

bool Soak() {
  const char* soak = std::getenv("IOMMUD_VM_SOAK");
  return soak != nullptr && std::string(soak) == "1";
}

// VmLck of `pid` in kB (-1 if unreadable).
int64_t LockedKb(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (!absl::StartsWith(line, "VmLck:")) continue;
    int64_t kb = -1;
    std::string digits;
    for (char c : line) {
      if (c >= '0' && c <= '9') digits.push_back(c);
    }
    return absl::SimpleAtoi(digits, &kb) ? kb : -1;
  }
  return -1;
}

// "fd -> target" of every open fd of this process, to name a leak.
std::string OpenFds() {
  std::string listing;
  absl::StatusOr<std::vector<std::string>> fds = ListSysfsDirectory("/proc/self/fd");
  if (!fds.ok()) return "<unreadable>";
  for (const std::string& fd : *fds) {
    char target[256] = {};
    const ssize_t n = ::readlink(absl::StrCat("/proc/self/fd/", fd).c_str(), target, sizeof(target) - 1);
    absl::StrAppend(&listing, fd, " -> ", n > 0 ? std::string(target, n) : "?", "\n");
  }
  return listing;
}

// The descriptors of this process that hold a kernel object of the workload (`sockets` false):
// memfds (guest memory) and VFIO fds (device, group, container); gRPC's own epoll and eventfd
// descriptors come and go with its pollers and are not counted. `sockets` true: only sockets.
int CountFds(bool sockets) {
  absl::StatusOr<std::vector<std::string>> fds = ListSysfsDirectory("/proc/self/fd");
  if (!fds.ok()) return -1;
  int count = 0;
  for (const std::string& fd : *fds) {
    char target[256] = {};
    const ssize_t n = ::readlink(absl::StrCat("/proc/self/fd/", fd).c_str(), target, sizeof(target) - 1);
    if (n <= 0) continue;  // the directory's own fd, closed by now
    const absl::string_view name(target, static_cast<size_t>(n));
    if (sockets) {
      if (absl::StartsWith(name, "socket:")) ++count;
    } else if (absl::StartsWith(name, "/memfd:") || absl::StrContains(name, "vfio")) {
      ++count;
    }
  }
  return count;
}

std::string DriverOf(const SysfsInventory& inventory, const std::string& device) {
  absl::StatusOr<PciDeviceInfo> info = inventory.PciDevice(device);
  return info.ok() ? info->driver : "<" + info.status().ToString() + ">";
}

class HostCrashVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* binary = std::getenv("IOMMUD_BIN");
    ASSERT_NE(binary, nullptr) << "IOMMUD_BIN must name the iommud binary (run.sh sets it)";
    binary_ = binary;
    ::signal(SIGPIPE, SIG_IGN);  // a call to a daemon killed under it fails, it does not kill us
    drivers_before_ = DriverSnapshot(inventory_);
    ASSERT_OK_AND_ASSIGN(daemon_pid_, StartVmDaemon(binary_, kStateDir));
    fds_before_ = CountFds(/*sockets=*/false);  // after the first client: gRPC's own fds
    sockets_before_ = CountFds(/*sockets=*/true);
    fds_listing_before_ = OpenFds();
  }

  void TearDown() override {
    if (daemon_pid_ > 0) EXPECT_OK(StopVmDaemon(daemon_pid_, kStateDir));
    EXPECT_EQ(CountFds(/*sockets=*/false), fds_before_) << "file descriptors leaked; before:\n"
                                                        << fds_listing_before_ << "now:\n"
                                                        << OpenFds();
    EXPECT_EQ(DriverSnapshot(inventory_), drivers_before_) << "drivers or driver_override changed";
  }

  absl::Status Restart() {
    absl::StatusOr<pid_t> pid = StartVmDaemon(binary_, kStateDir, {}, absl::Seconds(60),
                                              /*append_log=*/true);
    if (!pid.ok()) return pid.status();
    daemon_pid_ = *pid;
    return absl::OkStatus();
  }

  // One round on the group of `edu`: the workload up to `kill_at`, SIGKILL (after `delay` with the
  // step in flight when `during`), restart, and the checks of the header comment.
  void Round(int round, const std::string& edu, int kill_at, bool during, absl::Duration delay) {
    SCOPED_TRACE(absl::StrCat("round ", round, ": ", edu, ", kill ", during ? "during " : "before ",
                              kStepNames[kill_at], " (+", absl::FormatDuration(delay), ")"));
    VmmSession vmm(kSocket, kFdSocket, kOwner);
    ASSERT_OK(vmm.Connect());
    iommu::v1::GetDeviceRequest get_device;
    get_device.set_device(edu);
    ASSERT_OK_AND_ASSIGN(iommu::v1::Device info, vmm.client().GetDevice(get_device));
    const uint64_t group = info.group_id();
    MemfdPages memory(2);
    ASSERT_TRUE(memory.ok());
    const std::string pattern = Pattern(kCount, round);
    std::memcpy(memory.data(0), pattern.data(), kCount);
    memory.Fill(0, 1);

    uint64_t domain = 0, region = 0;
    HeldDevice held;
    bool acked[kSteps] = {};
    bool dma_landed = false;
    auto run = [&](int step) -> absl::Status {
      switch (step) {
        case kClaim: return vmm.Claim(group);
        case kAttach: {
          absl::StatusOr<uint64_t> id = vmm.AllocAndAttach(group);
          if (id.ok()) domain = *id;
          return id.status();
        }
        case kRegister: {
          absl::StatusOr<iommu::v1::MemoryRegionRef> ref =
              vmm.fds().RegisterMemory(memory.fd(), memory.size(), kOwner);
          if (ref.ok()) region = ref->id();
          return ref.status();
        }
        case kMapA: return vmm.Map(domain, kIovaA, region, 0, iommu::v1::PROT_READ);
        case kMapB:
          return vmm.Map(domain, kIovaB, region, kPage, iommu::v1::PROT_READ | iommu::v1::PROT_WRITE);
        case kOpenDevice: {
          absl::StatusOr<UniqueFd> fd = vmm.fds().OpenDevice(edu, kOwner);
          if (!fd.ok()) return fd.status();
          held.device = std::make_unique<VfioDevice>(edu, *std::move(fd));
          absl::StatusOr<std::unique_ptr<EduDevice>> opened = EduDevice::Open(*held.device);
          if (!opened.ok()) return opened.status();
          held.edu = *std::move(opened);
          return absl::OkStatus();
        }
        case kDma: {
          absl::Status status = held.edu->CopyToDevice(kIovaA, kCount);
          if (status.ok()) status = held.edu->CopyFromDevice(kIovaB, kCount);
          dma_landed = status.ok() && memory.ReadFile(kCount, 1) == pattern;
          return status.ok() && !dma_landed ? absl::InternalError("DMA did not land") : status;
        }
        case kCloseDevice: held.Close(); return absl::OkStatus();
        case kUnmapB: return vmm.Unmap(domain, kIovaB);
        case kDetach: return vmm.Detach(group, domain);
        case kRelease: return vmm.Release(group);
        case kFree: return vmm.Free(domain);
        case kUnregister: return vmm.Unregister(region);
      }
      return absl::InternalError("no such step");
    };
    for (int step = 0; step < kill_at; ++step) {
      SCOPED_TRACE(kStepNames[step]);
      ASSERT_OK(run(step));
      acked[step] = true;
    }
    // The kill: with the step in flight, or before it.
    if (during) {
      absl::Status in_flight;
      std::thread call([&] { in_flight = run(kill_at); });
      absl::SleepFor(delay);
      ASSERT_OK(Kill9VmDaemon(daemon_pid_));
      call.join();
      acked[kill_at] = in_flight.ok();
    } else {
      ASSERT_OK(Kill9VmDaemon(daemon_pid_));
    }
    daemon_pid_ = -1;
    ++kills_;
    vmm.Disconnect();
    const size_t log_before = ReadVmDaemonLog(kStateDir).size();
    ASSERT_OK(Restart());
    ASSERT_OK(vmm.Connect());

    const bool vmm_holds_device = held.open();
    ASSERT_OK_AND_ASSIGN(iommu::v1::Group after, vmm.GetGroup(group));
    // Nothing of the dead process's session is shown: no owner, the default domain.
    EXPECT_EQ(after.owner(), "");
    EXPECT_EQ(after.domain_id(), after.default_domain_id());
    const std::string log = ReadVmDaemonLog(kStateDir).substr(log_before);
    if (vmm_holds_device) {
      ++held_;
      // Truthfully held: reported, not claimable, in the audit; the kernel kept the container, so
      // the VMM's DMA through its fd still lands where the dead daemon had mapped it.
      EXPECT_TRUE(absl::StrContains(log, "host recovery (held)")) << log;
      EXPECT_TRUE(absl::StrContains(log, absl::StrCat("VFIO fds: ", ::getpid(), ")")))
          << "the holder is not named: " << log;
      EXPECT_ERROR(vmm.Claim(group), kUnavailable, "GROUP_BUSY");
      ASSERT_OK_AND_ASSIGN(iommu::v1::AuditResponse audit, vmm.Audit());
      ASSERT_GT(audit.leaks_size(), 0) << "the held group is not in the audit";
      for (const iommu::v1::LeakedAttachment& leak : audit.leaks()) {
        EXPECT_EQ(leak.reason(), "rid_on_unknown_domain") << leak.DebugString();
        EXPECT_EQ(leak.group_id(), group) << leak.DebugString();
        EXPECT_EQ(leak.domain_id(), kHeldElsewhereDomain) << leak.DebugString();
      }
      EXPECT_EQ(DriverOf(inventory_, edu), "vfio-pci");
      if (acked[kMapA] && acked[kMapB]) {
        memory.Fill(0, 1);
        ASSERT_OK(held.edu->CopyToDevice(kIovaA, kCount));
        ASSERT_OK(held.edu->CopyFromDevice(kIovaB, kCount));
        EXPECT_EQ(memory.ReadFile(kCount, 1), pattern)
            << "the VMM's DMA stopped landing although the kernel kept its container";
      }
      // The VMM goes away: the next claim finds the group orphaned, restores it and takes it.
      held.Close();
      ASSERT_OK(vmm.Claim(group));
      ASSERT_OK(vmm.Release(group));
      ++restored_;
    } else {
      if (acked[kClaim] && kill_at < kRelease) {
        EXPECT_TRUE(absl::StrContains(log, "host recovery (restored)")) << log;
        ++restored_;
      }
      EXPECT_EQ(DriverOf(inventory_, edu), "") << "the group was left on vfio-pci";
      EXPECT_TRUE(VfioHolders(info.group_id(), "/dev/vfio").empty());
      // A fresh session sees no stale mapping: DMA at the old IOVA does not land until mapped.
      ASSERT_OK(vmm.Claim(group));
      ASSERT_OK_AND_ASSIGN(domain, vmm.AllocAndAttach(group));
      ASSERT_OK_AND_ASSIGN(iommu::v1::MemoryRegionRef ref,
                           vmm.fds().RegisterMemory(memory.fd(), memory.size(), kOwner));
      region = ref.id();
      ASSERT_OK(vmm.Map(domain, kIovaA, region, 0, iommu::v1::PROT_READ));
      ASSERT_OK(run(kOpenDevice));
      memory.Fill(0x5a, 1);
      ASSERT_OK(held.edu->CopyToDevice(kIovaA, kCount));
      ASSERT_OK(held.edu->CopyFromDevice(kIovaB, kCount));
      EXPECT_EQ(memory.ReadFile(kCount, 1), std::string(kCount, '\x5a'))
          << "DMA landed through a mapping of the dead daemon";
      ASSERT_OK(run(kMapB));
      ASSERT_OK(run(kDma));
      held.Close();
      ASSERT_OK(vmm.Unmap(domain, kIovaA));
      ASSERT_OK(vmm.Unmap(domain, kIovaB));
      ASSERT_OK(vmm.Detach(group, domain));
      ASSERT_OK(vmm.Release(group));
      ASSERT_OK(vmm.Free(domain));
      ASSERT_OK(vmm.Unregister(region));
    }
    // Leaks: none in the audit, on the drivers, in /dev/vfio, in pinned memory.
    ASSERT_OK_AND_ASSIGN(iommu::v1::AuditResponse audit, vmm.Audit());
    EXPECT_EQ(audit.leaks_size(), 0) << audit.DebugString();
    leaks_found_ += audit.leaks_size();
    absl::StatusOr<std::vector<std::string>> vfio = ListSysfsDirectory("/dev/vfio");
    ASSERT_OK(vfio);
    EXPECT_THAT(*vfio, ElementsAre("vfio")) << "a /dev/vfio group node outlived its owner";
    if (vfio->size() != 1) ++leaks_found_;
    const int64_t locked = LockedKb(daemon_pid_);
    EXPECT_EQ(locked, 0) << "the daemon still pins memory";
    if (locked != 0) ++leaks_found_;
    if (DriverSnapshot(inventory_) != drivers_before_) ++leaks_found_;
    EXPECT_EQ(DriverSnapshot(inventory_), drivers_before_);
    vmm.Disconnect();
  }

  SysfsInventory inventory_;
  std::string binary_;
  pid_t daemon_pid_ = -1;
  int fds_before_ = 0;
  int sockets_before_ = 0;
  std::string fds_listing_before_;
  std::map<std::string, std::string> drivers_before_;
  int kills_ = 0, held_ = 0, restored_ = 0, leaks_found_ = 0;
};

TEST_F(HostCrashVmTest, KilledAtRandomPointsOfAWorkloadTheRestartTellsTheTruth) {
  const int rounds = Soak() ? 40 : 6;
  std::mt19937 random(12345);
  int round = 0;
  // The first rounds pin the interesting points (a VMM holding its fd with mappings; mid-claim);
  // the rest are drawn.
  const int pinned[][2] = {{kDma, 0}, {kClaim, 1}, {kCloseDevice, 0}, {kMapB, 1}};
  for (; round < rounds && !HasFatalFailure(); ++round) {
    const std::string edu = round % 2 == 0 ? kEduAlone : kEduBehindBridgeA;
    int kill_at;
    bool during;
    if (round < 4) {
      kill_at = pinned[round][0];
      during = pinned[round][1] != 0;
    } else {
      kill_at = static_cast<int>(random() % kSteps);
      during = random() % 2 == 0;
    }
    const absl::Duration delay = absl::Microseconds(random() % 20000);
    const int fds_at_start = CountFds(/*sockets=*/false);
    const std::string listing_at_start = OpenFds();
    Round(round, edu, kill_at, during, delay);
    // Every memfd and device fd of the round is closed (sockets: see below).
    if (CountFds(/*sockets=*/false) != fds_at_start) ++leaks_found_;
    EXPECT_EQ(CountFds(/*sockets=*/false), fds_at_start)
        << "round " << round << " leaked fds; at its start:\n" << listing_at_start << "now:\n"
        << OpenFds();
  }
  // Client sockets of this process to a daemon that was killed are not always closed by the time
  // their clients are destroyed (1 in 40 rounds in a plain build, most rounds under ASan; not yet
  // pinned down between gRPC's channels and the fd channel): counted and printed, not judged;
  // they hold no VFIO or memory object.
  std::cout << "host_crash: rounds=" << round << " kills=" << kills_ << " held=" << held_
            << " restored=" << restored_ << " leaks found=" << leaks_found_
            << " (test-side gRPC sockets left open: "
            << CountFds(/*sockets=*/true) - sockets_before_ << ")" << std::endl;
}

}  // namespace
}  // namespace test
}  // namespace host
}  // namespace iommud

// iommud --backend=linux --state=sqlite --fd_store=required under a service manager's fd store
// (tests/host/fd_store_supervisor.h: systemd's protocol, played by this process), killed with
// SIGKILL after each acknowledged step of a VMM's workload and between calls, then restarted with
// the kept fds: everything acknowledged is still in effect. Run only inside the VM that
// tests/host/run.sh boots, as root.
//
// Each round, on one edu's group (behind the bridge, then alone, in turn), a kill + restart after:
// the claim, the domain's alloc+attach, the memory registration, the two maps, the DMA with the
// VMM's device fd still open, the unmap of B, the map of B again, and the release of everything.
// After each restart:
//   - the daemon adopted what the supervisor kept (log "host recovery (adopted)"); the kept names
//     are exactly the live objects (group-N, container-<unit>-<domain>, memory-<region>-...);
//   - ownership: the same owner, a claim by another is refused, calls of the owner work;
//   - the registry, the kernel and a DMA check agree: the edu's DMA lands in the memfd through a
//     mapping made before the kill (also through a device fd opened before it), an unmap made
//     before the kill keeps DMA out, a map made after the restart lands;
//   - the audit is clean; the daemon holds exactly one fd of the group and one container fd; it
//     pins what is mapped;
// and at the end of each round: drivers as before, no /dev/vfio group node, the supervisor keeps
// nothing, no fd of this process leaked. One round in CI; IOMMUD_VM_SOAK=1 runs 10. Prints
// "FIGURES host_fdstore rounds=.. kills=.. adopted=.. dma_checks=.. leaks=..".
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clients/cpp/fd_channel_client.h"
#include "clients/cpp/iommud_client.h"
#include "core/host/fd_keeper.h"
#include "core/host/sysfs_inventory.h"
#include "core/host/sysfs_io.h"
#include "core/host/unique_fd.h"
#include "core/host/vfio_device.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/host/edu_device.h"
#include "tests/host/fd_store_supervisor.h"
#include "tests/host/vm_daemon.h"
#include "tests/host/vm_scenario_support.h"
#include "tests/host/vmm_session.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace host {
namespace test {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAreArray;

constexpr char kStateDir[] = "/tmp/iommud-fdstore";
constexpr char kSocket[] = "/tmp/iommud-fdstore/iommud.sock";
constexpr char kFdSocket[] = "/tmp/iommud-fdstore/iommud.sock.fds";
constexpr char kNotifySocket[] = "/tmp/iommud-fdstore-notify";
constexpr char kOwner[] = "vmm-1";

bool Soak() {
  const char* soak = std::getenv("IOMMUD_VM_SOAK");
  return soak != nullptr && std::string(soak) == "1";
}

// The fds of this process holding a workload's kernel object: memfds and VFIO fds.
int CountWorkloadFds() {
  absl::StatusOr<std::vector<std::string>> fds = ListSysfsDirectory("/proc/self/fd");
  if (!fds.ok()) return -1;
  int count = 0;
  for (const std::string& fd : *fds) {
    char target[256] = {};
    const ssize_t n =
        ::readlink(absl::StrCat("/proc/self/fd/", fd).c_str(), target, sizeof(target) - 1);
    if (n <= 0) continue;
    const absl::string_view name(target, static_cast<size_t>(n));
    if (absl::StartsWith(name, "/memfd:") || absl::StrContains(name, "vfio")) ++count;
  }
  return count;
}

std::string DriverOf(const SysfsInventory& inventory, const std::string& device) {
  absl::StatusOr<PciDeviceInfo> info = inventory.PciDevice(device);
  return info.ok() ? info->driver : "<" + info.status().ToString() + ">";
}

class HostFdStoreVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* binary = std::getenv("IOMMUD_BIN");
    ASSERT_NE(binary, nullptr) << "IOMMUD_BIN must name the iommud binary (run.sh sets it)";
    binary_ = binary;
    ::signal(SIGPIPE, SIG_IGN);
    drivers_before_ = DriverSnapshot(inventory_);
    fds_before_ = CountWorkloadFds();
    ASSERT_OK_AND_ASSIGN(supervisor_, FdStoreSupervisor::Create(kNotifySocket));
    ASSERT_OK(StartDaemon());
  }

  void TearDown() override {
    if (daemon_pid_ > 0) EXPECT_OK(StopVmDaemon(daemon_pid_, kStateDir));
    if (supervisor_ != nullptr) {
      supervisor_->Sync();
      EXPECT_THAT(supervisor_->Names(), ElementsAre()) << "a clean stop leaves the store empty";
      EXPECT_EQ(supervisor_->rejected(), 0);
      EXPECT_EQ(supervisor_->refused(), 0);
    }
    supervisor_.reset();
    EXPECT_EQ(CountWorkloadFds(), fds_before_) << "memfd or VFIO fds leaked";
    EXPECT_EQ(DriverSnapshot(inventory_), drivers_before_) << "drivers or driver_override changed";
  }

  absl::Status StartDaemon() {
    ::mkdir(kStateDir, 0750);
    absl::StatusOr<pid_t> pid = supervisor_->Start(
        {binary_, "--backend=linux", "--state=sqlite", "--fd_store=required",
         absl::StrCat("--state_dir=", kStateDir), "--audit_interval=0", "--metrics_port=0"},
        absl::StrCat(kStateDir, "/iommud.log"));
    if (!pid.ok()) return pid.status();
    daemon_pid_ = *pid;
    absl::Status serving = WaitForVmDaemon(daemon_pid_, kStateDir);
    if (!serving.ok()) daemon_pid_ = -1;  // reaped (or killed) by the wait
    return serving;
  }

  // SIGKILL, restart under the supervisor; the new process's log lines in `log`. A failure is
  // fatal (ASSERT_NO_FATAL_FAILURE at the callers).
  void KillAndRestart(VmmSession& vmm, std::string* log = nullptr) {
    vmm.Disconnect();
    ASSERT_OK(Kill9VmDaemon(daemon_pid_));
    daemon_pid_ = -1;
    ++kills_;
    supervisor_->Sync();
    const size_t log_before = ReadVmDaemonLog(kStateDir).size();
    ASSERT_OK(StartDaemon());
    ASSERT_OK(vmm.Connect());
    if (log != nullptr) *log = ReadVmDaemonLog(kStateDir).substr(log_before);
  }

  // The names the store must hold for what is live now.
  void ExpectKept(int kernel_group, uint64_t domain, uint64_t region) {
    supervisor_->Sync();
    std::vector<std::string> expected;
    if (kernel_group >= 0) expected.push_back(GroupFdName(kernel_group));
    if (domain != 0) expected.push_back(ContainerFdName("dmar0", domain));
    std::vector<std::string> names = supervisor_->Names();
    std::vector<std::string> memory;
    for (const std::string& name : names) {
      if (absl::StartsWith(name, "memory-")) memory.push_back(name);
    }
    if (region != 0) {
      EXPECT_EQ(memory.size(), 1u);
      if (memory.size() == 1) {
        std::optional<MemoryFdInfo> info = ParseMemoryFdName(memory[0]);
        EXPECT_TRUE(info.has_value() && info->id == region) << memory[0];
        expected.push_back(memory[0]);
      }
    } else {
      EXPECT_TRUE(memory.empty());
    }
    EXPECT_THAT(names, UnorderedElementsAreArray(expected));
    if (names.size() != expected.size()) ++leaks_;
  }

  void ExpectAuditClean(VmmSession& vmm) {
    absl::StatusOr<iommu::v1::AuditResponse> audit = vmm.Audit();
    ASSERT_OK(audit);
    EXPECT_EQ(audit->leaks_size(), 0) << audit->DebugString();
    leaks_ += audit->leaks_size();
  }

  // A DMA from IOVA A (a page of `pattern`) to IOVA B through `held`; whether B's page got it.
  bool DmaLands(HeldDevice& held, MemfdPages& memory, const std::string& pattern) {
    ++dma_checks_;
    memory.Fill(0x5a, 1);
    EXPECT_OK(held.edu->CopyToDevice(kIovaA, kCount));
    EXPECT_OK(held.edu->CopyFromDevice(kIovaB, kCount));
    return memory.ReadFile(kCount, 1) == pattern;
  }

  absl::Status Open(VmmSession& vmm, const std::string& edu, HeldDevice& held) {
    absl::StatusOr<UniqueFd> fd = vmm.fds().OpenDevice(edu, kOwner);
    if (!fd.ok()) return fd.status();
    held.device = std::make_unique<VfioDevice>(edu, *std::move(fd));
    absl::StatusOr<std::unique_ptr<EduDevice>> opened = EduDevice::Open(*held.device);
    if (!opened.ok()) return opened.status();
    held.edu = *std::move(opened);
    return absl::OkStatus();
  }

  void Round(int round, const std::string& edu) {
    SCOPED_TRACE(absl::StrCat("round ", round, ": ", edu));
    VmmSession vmm(kSocket, kFdSocket, kOwner);
    ASSERT_OK(vmm.Connect());
    iommu::v1::GetDeviceRequest get_device;
    get_device.set_device(edu);
    ASSERT_OK_AND_ASSIGN(iommu::v1::Device info, vmm.client().GetDevice(get_device));
    const uint64_t group = info.group_id();
    ASSERT_OK_AND_ASSIGN(PciDeviceInfo pci, inventory_.PciDevice(edu));
    ASSERT_TRUE(pci.iommu_group.has_value());
    const int kernel_group = *pci.iommu_group;
    MemfdPages memory(2);
    ASSERT_TRUE(memory.ok());
    const std::string pattern = Pattern(kCount, round);
    std::memcpy(memory.data(0), pattern.data(), kCount);

    // 1. The claim.
    ASSERT_OK(vmm.Claim(group));
    ASSERT_OK_AND_ASSIGN(iommu::v1::Group claimed, vmm.GetGroup(group));
    const std::string owner = claimed.owner();
    std::string log;
    ASSERT_NO_FATAL_FAILURE(KillAndRestart(vmm, &log));
    EXPECT_TRUE(absl::StrContains(log, "host recovery (adopted)")) << log;
    ++adopted_;
    ASSERT_OK_AND_ASSIGN(iommu::v1::Group after, vmm.GetGroup(group));
    EXPECT_EQ(after.owner(), owner);
    EXPECT_FALSE(vmm.Claim(group, "intruder").ok()) << "another owner took a kept group";
    EXPECT_EQ(DriverOf(inventory_, edu), "vfio-pci");
    EXPECT_EQ(CountFdsTo(daemon_pid_, absl::StrCat("/dev/vfio/", kernel_group)), 1);
    ExpectKept(kernel_group, 0, 0);
    ExpectAuditClean(vmm);

    // 2. Its domain.
    ASSERT_OK_AND_ASSIGN(uint64_t domain, vmm.AllocAndAttach(group));
    ASSERT_NO_FATAL_FAILURE(KillAndRestart(vmm));
    ++adopted_;
    ASSERT_OK_AND_ASSIGN(after, vmm.GetGroup(group));
    EXPECT_EQ(after.domain_id(), domain);
    EXPECT_EQ(CountFdsTo(daemon_pid_, "/dev/vfio/vfio"), 1);
    ExpectKept(kernel_group, domain, 0);
    ExpectAuditClean(vmm);

    // 3. Its memory.
    ASSERT_OK_AND_ASSIGN(iommu::v1::MemoryRegionRef ref,
                         vmm.fds().RegisterMemory(memory.fd(), memory.size(), kOwner));
    const uint64_t region = ref.id();
    ASSERT_NO_FATAL_FAILURE(KillAndRestart(vmm));
    ExpectKept(kernel_group, domain, region);

    // 4. The maps: the DMA lands through mappings made by the dead process.
    ASSERT_OK(vmm.Map(domain, kIovaA, region, 0, iommu::v1::PROT_READ));
    ASSERT_OK(vmm.Map(domain, kIovaB, region, kPage, iommu::v1::PROT_READ | iommu::v1::PROT_WRITE));
    ASSERT_NO_FATAL_FAILURE(KillAndRestart(vmm, &log));
    EXPECT_TRUE(absl::StrContains(log, "2 mappings kept by the kernel")) << log;
    HeldDevice held;
    ASSERT_OK(Open(vmm, edu, held));
    EXPECT_TRUE(DmaLands(held, memory, pattern)) << "DMA did not land through the kept mappings";
    ExpectAuditClean(vmm);

    // 5. Between calls, with the VMM's device fd open: it keeps working through the restart.
    ASSERT_NO_FATAL_FAILURE(KillAndRestart(vmm));
    EXPECT_TRUE(DmaLands(held, memory, pattern)) << "the VMM's DMA stopped at the restart";
    ExpectAuditClean(vmm);
    held.Close();

    // 6. An unmap before the kill keeps DMA out after it.
    ASSERT_OK(vmm.Unmap(domain, kIovaB));
    ASSERT_NO_FATAL_FAILURE(KillAndRestart(vmm));
    ASSERT_OK(Open(vmm, edu, held));
    EXPECT_FALSE(DmaLands(held, memory, pattern)) << "DMA landed through an unmapped IOVA";
    held.Close();
    // ... and a map after the restart lands (through the adopted container).
    ASSERT_OK(vmm.Map(domain, kIovaB, region, kPage, iommu::v1::PROT_READ | iommu::v1::PROT_WRITE));
    ASSERT_OK(Open(vmm, edu, held));
    EXPECT_TRUE(DmaLands(held, memory, pattern)) << "a map after the restart does not land";
    held.Close();
    ExpectAuditClean(vmm);
    const int64_t locked = StatusKib(daemon_pid_, "VmLck");
    EXPECT_GT(locked, 0) << "the restarted daemon pins nothing although two pages are mapped";

    // 7. A kill after the release of everything: nothing is kept, nothing comes back.
    ASSERT_OK(vmm.Unmap(domain, kIovaA));
    ASSERT_OK(vmm.Unmap(domain, kIovaB));
    ASSERT_OK(vmm.Detach(group, domain));
    ASSERT_OK(vmm.Release(group));
    ASSERT_OK(vmm.Free(domain));
    ASSERT_OK(vmm.Unregister(region));
    ExpectKept(-1, 0, 0);
    ASSERT_NO_FATAL_FAILURE(KillAndRestart(vmm));
    ExpectKept(-1, 0, 0);
    ASSERT_OK_AND_ASSIGN(after, vmm.GetGroup(group));
    EXPECT_EQ(after.owner(), "");
    EXPECT_EQ(DriverOf(inventory_, edu), pci.driver) << "the group was not given back";
    absl::StatusOr<std::vector<std::string>> vfio = ListSysfsDirectory("/dev/vfio");
    ASSERT_OK(vfio);
    EXPECT_THAT(*vfio, ElementsAre("vfio")) << "a /dev/vfio group node outlived its owner";
    if (vfio->size() != 1) ++leaks_;
    EXPECT_EQ(StatusKib(daemon_pid_, "VmLck"), 0) << "the daemon still pins memory";
    ExpectAuditClean(vmm);
    vmm.Disconnect();
  }

  SysfsInventory inventory_;
  std::string binary_;
  std::unique_ptr<FdStoreSupervisor> supervisor_;
  pid_t daemon_pid_ = -1;
  int fds_before_ = 0;
  std::map<std::string, std::string> drivers_before_;
  int kills_ = 0, adopted_ = 0, dma_checks_ = 0, leaks_ = 0;
};

TEST_F(HostFdStoreVmTest, KilledAfterEachStepTheRestartKeepsOwnershipMappingsAndDma) {
  // One round in CI (7 kills, about 30 s of a run in a loaded TCG guest), on the bridge's group:
  // its several RIDs are the harder adoption; --soak alternates with the edu alone.
  const int rounds = Soak() ? 10 : 1;
  int round = 0;
  for (; round < rounds && !HasFatalFailure(); ++round) {
    const int fds_at_start = CountWorkloadFds();
    Round(round, round % 2 == 0 ? kEduBehindBridgeA : kEduAlone);
    EXPECT_EQ(CountWorkloadFds(), fds_at_start) << "round " << round << " leaked fds";
    if (CountWorkloadFds() != fds_at_start) ++leaks_;
  }
  std::cout << "FIGURES host_fdstore rounds=" << round << " kills=" << kills_
            << " adopted=" << adopted_ << " dma_checks=" << dma_checks_ << " leaks=" << leaks_
            << " rejected=" << supervisor_->rejected() << std::endl;
}

}  // namespace
}  // namespace test
}  // namespace host
}  // namespace iommud

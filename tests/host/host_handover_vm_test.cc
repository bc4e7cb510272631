// iommud `--backend=linux` handing a group to a VMM that opens VFIO itself (HandOverGroup,
// ReleaseOwnership; issue #17 item 5), through iommud's API only, with a real client: Debian's
// QEMU 7.2 (the build machine's, through the 9p root) started paused (-S) as uid 4242 with
// `-device vfio-pci,host=BDF`. Run only inside the VM that tests/host/run.sh boots, as root.
//
// The daemon is started from $IOMMUD_BIN (run.sh puts the build's iommud next to this binary).
// After the scenario: iommud's audit is clean, every PCI device has the driver it had before, no
// /dev/vfio group node is left, no fd leaked.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clients/cpp/iommud_client.h"
#include "core/error.h"
#include "core/host/sysfs_inventory.h"
#include "core/host/sysfs_io.h"
#include "core/host/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/host/vm_daemon.h"
#include "tests/host/vm_scenario_support.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace host {
namespace test {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kStateDir[] = "/tmp/iommud-handover";
constexpr char kSocket[] = "/tmp/iommud-handover/iommud.sock";
constexpr char kOwner[] = "vmm-handover";
constexpr char kOtherOwner[] = "vmm-other";
// The VMM's uid and gid: in no /etc/passwd (the kernel compares numbers).
constexpr uint32_t kVmmUid = 4242;
constexpr uint32_t kVmmGid = 4242;

pid_t daemon_pid = -1;

class HostHandoverVmTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* binary = std::getenv("IOMMUD_BIN");
    ASSERT_NE(binary, nullptr) << "IOMMUD_BIN must name the iommud binary (run.sh sets it)";
    absl::StatusOr<pid_t> pid = StartVmDaemon(binary, kStateDir, {"--allow_fault_injection"});
    ASSERT_OK(pid);
    daemon_pid = *pid;
  }

  static void TearDownTestSuite() {
    if (daemon_pid <= 0) return;
    EXPECT_OK(StopVmDaemon(daemon_pid, kStateDir));
    daemon_pid = -1;
  }

  void SetUp() override {
    ASSERT_GT(daemon_pid, 0) << "no daemon (see the suite's set-up failure)";
    ASSERT_EQ(::access(kQemu, X_OK), 0) << kQemu << " is needed in the build machine's root";
    fds_before_ = CountOpenFds();
    drivers_before_ = DriverSnapshot(inventory_);
    ClientOptions options;
    options.target = absl::StrCat("unix:", kSocket);
    ASSERT_OK_AND_ASSIGN(client_, IommuClient::Connect(options));
  }

  void TearDown() override {
    for (const pid_t vmm : vmms_) {
      ::kill(vmm, SIGKILL);
      int status = 0;
      WaitForChildExit(vmm, absl::Seconds(10), &status);
    }
    vmms_.clear();
    // Whatever a failed scenario left handed over or claimed goes back (forced: the VMMs are gone).
    for (const auto& [group, owner] : owned_) {
      iommu::v1::GetGroupRequest get;
      get.set_group_id(group);
      absl::StatusOr<iommu::v1::Group> now = client_->GetGroup(get);
      if (!now.ok() || now->owner().empty()) continue;
      iommu::v1::ReleaseOwnershipRequest release;
      release.set_group_id(group);
      release.set_owner(owner);
      release.set_force(true);
      EXPECT_OK(client_->ReleaseOwnership(release).status());
    }
    owned_.clear();
    absl::StatusOr<iommu::v1::AuditResponse> audit = client_->Audit(iommu::v1::AuditRequest());
    ASSERT_OK(audit);
    EXPECT_EQ(audit->leaks_size(), 0) << audit->DebugString();
    client_.reset();
    EXPECT_EQ(CountOpenFds(), fds_before_) << "file descriptors leaked";
    EXPECT_EQ(DriverSnapshot(inventory_), drivers_before_) << "drivers or driver_override changed";
    absl::StatusOr<std::vector<std::string>> vfio = ListSysfsDirectory("/dev/vfio");
    ASSERT_OK(vfio);
    EXPECT_THAT(*vfio, ElementsAre("vfio")) << "a /dev/vfio group node outlived its owner";
  }

  // iommud's group of `device`, and the kernel's IOMMU group (/dev/vfio/N).
  uint64_t GroupOf(const std::string& device) {
    iommu::v1::GetDeviceRequest request;
    request.set_device(device);
    absl::StatusOr<iommu::v1::Device> got = client_->GetDevice(request);
    EXPECT_OK(got);
    return got.ok() ? got->group_id() : 0;
  }
  int KernelGroupOf(const std::string& device) const {
    absl::StatusOr<PciDeviceInfo> info = inventory_.PciDevice(device);
    return info.ok() && info->iommu_group.has_value() ? *info->iommu_group : -1;
  }
  std::string DriverOf(const std::string& device) const {
    absl::StatusOr<PciDeviceInfo> info = inventory_.PciDevice(device);
    return info.ok() ? info->driver : "?";
  }
  absl::StatusOr<iommu::v1::Group> Group(uint64_t group) {
    iommu::v1::GetGroupRequest request;
    request.set_group_id(group);
    return client_->GetGroup(request);
  }
  absl::StatusOr<iommu::v1::Group> HandOver(uint64_t group, const std::string& owner) {
    iommu::v1::HandOverGroupRequest request;
    request.set_group_id(group);
    request.set_owner(owner);
    request.set_uid(kVmmUid);
    request.set_gid(kVmmGid);
    absl::StatusOr<iommu::v1::Group> handed = client_->HandOverGroup(request);
    if (handed.ok()) owned_.push_back({group, owner});
    return handed;
  }
  absl::StatusOr<iommu::v1::Group> Claim(uint64_t group, const std::string& owner) {
    iommu::v1::ClaimOwnershipRequest request;
    request.set_group_id(group);
    request.set_owner(owner);
    absl::StatusOr<iommu::v1::Group> claimed = client_->ClaimOwnership(request);
    if (claimed.ok()) owned_.push_back({group, owner});
    return claimed;
  }
  absl::StatusOr<iommu::v1::Group> Release(uint64_t group, const std::string& owner) {
    iommu::v1::ReleaseOwnershipRequest request;
    request.set_group_id(group);
    request.set_owner(owner);
    return client_->ReleaseOwnership(request);
  }
  std::vector<iommu::v1::LeakedAttachment> Leaks() {
    absl::StatusOr<iommu::v1::AuditResponse> audit = client_->Audit(iommu::v1::AuditRequest());
    EXPECT_OK(audit);
    if (!audit.ok()) return {};
    return {audit->leaks().begin(), audit->leaks().end()};
  }
  pid_t StartVmm(const std::string& device, const std::string& log) {
    const pid_t pid = StartQemuVmm(device, kVmmUid, kVmmGid, log);
    if (pid > 0) vmms_.push_back(pid);
    return pid;
  }
  bool Exited(pid_t pid, absl::Duration timeout, int* status) {
    if (!WaitForChildExit(pid, timeout, status)) return false;
    vmms_.erase(std::remove(vmms_.begin(), vmms_.end(), pid), vmms_.end());
    return true;
  }
  struct stat NodeStat(int kernel_group) const {
    struct stat st = {};
    EXPECT_EQ(::stat(absl::StrCat("/dev/vfio/", kernel_group).c_str(), &st), 0)
        << "/dev/vfio/" << kernel_group << ": " << std::strerror(errno);
    return st;
  }

  SysfsInventory inventory_;
  std::unique_ptr<IommuClient> client_;
  std::vector<std::pair<uint64_t, std::string>> owned_;
  std::vector<pid_t> vmms_;
  int fds_before_ = 0;
  std::map<std::string, std::string> drivers_before_;
};

// The lone edu's group is handed to uid 4242 and its QEMU opens it; the same uid's QEMU cannot
// open a group iommud did not give it; the hand-over cannot be taken back while QEMU holds it (and
// nothing changes); a process of another uid holding it is a leak; once QEMU is gone the take-back
// restores the driver and the node.
TEST_F(HostHandoverVmTest, QemuOpensTheGroupHandedToItsUidAndOnlyThatOne) {
  const absl::Time start = absl::Now();
  const uint64_t group = GroupOf(kEduAlone);
  const uint64_t other_group = GroupOf(kEduBehindRootPort);
  const int kernel_group = KernelGroupOf(kEduAlone);
  const int other_kernel_group = KernelGroupOf(kEduBehindRootPort);
  ASSERT_GT(group, 0u);
  ASSERT_GT(other_group, 0u);
  ASSERT_GE(kernel_group, 0);
  ASSERT_GE(other_kernel_group, 0);
  const std::string node = absl::StrCat("/dev/vfio/", kernel_group);
  const std::string other_node = absl::StrCat("/dev/vfio/", other_kernel_group);
  const std::string driver_before = DriverOf(kEduAlone);

  // 1. The hand-over: vfio-pci bound, the node the VMM's, the group recorded as handed over.
  ASSERT_OK_AND_ASSIGN(const iommu::v1::Group handed, HandOver(group, kOwner));
  EXPECT_TRUE(handed.handed_over());
  EXPECT_EQ(handed.handover_uid(), kVmmUid);
  EXPECT_EQ(handed.handover_gid(), kVmmGid);
  EXPECT_THAT(handed.owner(), HasSubstr(kOwner));
  EXPECT_EQ(DriverOf(kEduAlone), "vfio-pci");
  EXPECT_EQ(NodeStat(kernel_group).st_uid, kVmmUid);
  EXPECT_EQ(NodeStat(kernel_group).st_gid, kVmmGid);
  EXPECT_EQ(NodeStat(kernel_group).st_mode & 07777, 0660u);
  // iommud's own use of the group is refused while the VMM owns its container.
  iommu::v1::AllocDomainRequest alloc;
  alloc.set_unit("dmar0");
  alloc.set_type(iommu::v1::DOMAIN_TYPE_UNMANAGED);
  alloc.set_owner(kOwner);
  ASSERT_OK_AND_ASSIGN(const iommu::v1::Domain domain, client_->AllocDomain(alloc));
  iommu::v1::AttachGroupRequest attach;
  attach.set_group_id(group);
  attach.set_domain_id(domain.id());
  attach.set_owner(kOwner);
  EXPECT_ERROR(client_->AttachGroup(attach), kFailedPrecondition, "GROUP_HANDED_OVER");
  iommu::v1::FreeDomainRequest free_domain;
  free_domain.set_domain_id(domain.id());
  free_domain.set_owner(kOwner);
  ASSERT_OK(client_->FreeDomain(free_domain).status());

  // 2. QEMU as uid 4242 opens the group and realizes its vfio-pci device.
  const std::string log = "/tmp/vmm-handover.log";
  const absl::Time qemu_start = absl::Now();
  const pid_t qemu = StartVmm(kEduAlone, log);
  ASSERT_GT(qemu, 0) << "fork: " << std::strerror(errno);
  const absl::Time deadline = absl::Now() + kVmmTimeout;
  while (!(HasFdTo(qemu, node) && HasFdTo(qemu, "anon_inode:[vfio-device]"))) {
    int status = 0;
    if (Exited(qemu, absl::ZeroDuration(), &status)) {
      FAIL() << "QEMU (uid " << kVmmUid << ") ended with " << DescribeExit(status)
             << " before it opened " << node << " and its device; its output:\n"
             << ReadWholeFile(log);
    }
    ASSERT_LT(absl::Now(), deadline) << "QEMU did not open " << node << " within " << kVmmTimeout
                                     << "; its output:\n" << ReadWholeFile(log);
    absl::SleepFor(absl::Milliseconds(50));
  }
  const absl::Duration qemu_open = absl::Now() - qemu_start;
  ASSERT_OK_AND_ASSIGN(const iommu::v1::Group while_open, Group(group));
  EXPECT_TRUE(while_open.handed_over());
  EXPECT_EQ(while_open.handover_uid(), kVmmUid);
  EXPECT_TRUE(Leaks().empty()) << "the VMM's own uid holding its group is no leak";

  // 3. The same uid's QEMU for a group iommud holds for another owner (vfio-pci bound, node
  // root's, 0600) cannot open it.
  ASSERT_OK(Claim(other_group, kOtherOwner).status());
  EXPECT_EQ(DriverOf(kEduBehindRootPort), "vfio-pci");
  EXPECT_EQ(NodeStat(other_kernel_group).st_uid, 0u);
  const std::string refused_log = "/tmp/vmm-not-given.log";
  const pid_t refused_qemu = StartVmm(kEduBehindRootPort, refused_log);
  ASSERT_GT(refused_qemu, 0);
  int refused_status = 0;
  ASSERT_TRUE(Exited(refused_qemu, kVmmTimeout, &refused_status))
      << "QEMU did not give up on " << other_node << " within " << kVmmTimeout << "; its output:\n"
      << ReadWholeFile(refused_log);
  const std::string refused_output = ReadWholeFile(refused_log);
  EXPECT_TRUE(WIFEXITED(refused_status) && WEXITSTATUS(refused_status) != 0 &&
              WEXITSTATUS(refused_status) < 120)
      << "QEMU ended with " << DescribeExit(refused_status) << " (120-127: the child's set-up)";
  // QEMU 7.2: "vfio 0000:02:00.0: failed to open /dev/vfio/N: Permission denied".
  EXPECT_THAT(refused_output, HasSubstr(absl::StrCat("failed to open ", other_node)));
  EXPECT_THAT(refused_output, HasSubstr("Permission denied"));
  ASSERT_OK(Release(other_group, kOtherOwner).status());
  EXPECT_EQ(DriverOf(kEduBehindRootPort), "");

  // 4. Taking the group back while QEMU holds it is refused, naming QEMU, and changes nothing.
  const absl::StatusOr<iommu::v1::Group> refused = Release(group, kOwner);
  EXPECT_ERROR(refused, kFailedPrecondition, "GROUP_STILL_OPEN");
  EXPECT_EQ(GetErrorMetadata(refused.status())["pids"], absl::StrCat(qemu));
  ASSERT_OK_AND_ASSIGN(const iommu::v1::Group kept, Group(group));
  EXPECT_TRUE(kept.handed_over());
  EXPECT_THAT(kept.owner(), HasSubstr(kOwner));
  EXPECT_EQ(DriverOf(kEduAlone), "vfio-pci");
  EXPECT_EQ(NodeStat(kernel_group).st_uid, kVmmUid);
  int status = 0;
  EXPECT_FALSE(Exited(qemu, absl::ZeroDuration(), &status))
      << "QEMU ended (" << DescribeExit(status) << ") while iommud refused to take its group";

  // 5. QEMU ends; a process of another uid (this test, root) holding the handed-over group is a
  // leak, and no longer once it closes it.
  ::kill(qemu, SIGKILL);
  ASSERT_TRUE(Exited(qemu, absl::Seconds(10), &status)) << "QEMU survived SIGKILL";
  size_t leaks_found = 0;
  {
    UniqueFd stranger(::open(node.c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(stranger.valid()) << node << ": " << std::strerror(errno);
    const std::vector<iommu::v1::LeakedAttachment> leaks = Leaks();
    leaks_found = leaks.size();
    ASSERT_EQ(leaks.size(), 1u);
    EXPECT_EQ(leaks[0].reason(), "handover_held_by_other_uid");
    EXPECT_EQ(leaks[0].group_id(), group);
    EXPECT_THAT(leaks[0].detail(), HasSubstr(absl::StrCat("pid ", ::getpid(), " ")));
    EXPECT_THAT(leaks[0].detail(), HasSubstr("uid 0;"));
  }
  EXPECT_TRUE(Leaks().empty());

  // 6. The take-back: the edu on its previous driver, the node root's again (or gone with
  // vfio-pci), the group free.
  ASSERT_OK_AND_ASSIGN(const iommu::v1::Group released, Release(group, kOwner));
  EXPECT_FALSE(released.handed_over());
  EXPECT_EQ(released.owner(), "");
  EXPECT_EQ(DriverOf(kEduAlone), driver_before);
  struct stat back = {};
  if (::stat(node.c_str(), &back) == 0) {
    EXPECT_EQ(back.st_uid, 0u);
    EXPECT_EQ(back.st_mode & 07777, 0600u);
  }
  EXPECT_TRUE(Leaks().empty());
  std::cout << "FIGURES handover: QEMU (uid " << kVmmUid << ") opened " << node << " and its device in "
            << qemu_open << "; QEMU for the group not given: " << DescribeExit(refused_status)
            << "; take-back refused while open: 1; stranger leaks found: " << leaks_found
            << "; leaks after: 0; total " << (absl::Now() - start) << "\n";
}

// The host steps failed through their fault points (host.handover, host.take_back): each refusal
// leaves the driver, the node and the registry as they were.
TEST_F(HostHandoverVmTest, AFailedHandOverOrTakeBackChangesNothingOnTheHost) {
  const uint64_t group = GroupOf(kEduAlone);
  const int kernel_group = KernelGroupOf(kEduAlone);
  ASSERT_GT(group, 0u);
  ASSERT_GE(kernel_group, 0);
  const std::string node = absl::StrCat("/dev/vfio/", kernel_group);
  const std::string driver_before = DriverOf(kEduAlone);
  size_t injected = 0;
  auto inject = [&](const std::string& point) {
    iommu::v1::InjectFaultRequest request;
    request.mutable_spec()->set_point(point);
    request.mutable_spec()->set_code("UNAVAILABLE");
    ASSERT_OK(client_->InjectFault(request).status());
  };
  auto injected_once = [&]() {
    ASSERT_OK_AND_ASSIGN(iommu::v1::ListFaultsResponse faults,
                         client_->ListFaults(iommu::v1::ListFaultsRequest()));
    ASSERT_EQ(faults.faults_size(), 1);
    EXPECT_EQ(faults.faults(0).injected(), 1u) << faults.DebugString();
    injected += faults.faults(0).injected();
    ASSERT_OK(client_->ClearFaults(iommu::v1::ClearFaultsRequest()).status());
  };

  inject("host.handover");
  EXPECT_ERROR(HandOver(group, kOwner), kUnavailable, "INJECTED_FAULT");
  injected_once();
  ASSERT_OK_AND_ASSIGN(const iommu::v1::Group untouched, Group(group));
  EXPECT_FALSE(untouched.handed_over());
  EXPECT_EQ(untouched.owner(), "");
  EXPECT_EQ(DriverOf(kEduAlone), driver_before);
  EXPECT_FALSE(SysfsPathExists(node)) << node << " appeared: vfio-pci was bound";

  ASSERT_OK(HandOver(group, kOwner).status());
  inject("host.take_back");
  EXPECT_ERROR(Release(group, kOwner), kUnavailable, "INJECTED_FAULT");
  injected_once();
  ASSERT_OK_AND_ASSIGN(const iommu::v1::Group kept, Group(group));
  EXPECT_TRUE(kept.handed_over());
  EXPECT_EQ(DriverOf(kEduAlone), "vfio-pci");
  EXPECT_EQ(NodeStat(kernel_group).st_uid, kVmmUid);
  EXPECT_EQ(NodeStat(kernel_group).st_mode & 07777, 0660u);
  ASSERT_OK(Release(group, kOwner).status());
  EXPECT_EQ(DriverOf(kEduAlone), driver_before);
  EXPECT_TRUE(Leaks().empty());
  std::cout << "FIGURES handover faults: injected failures " << injected
            << ", each changed nothing; leaks found 0\n";
}

}  // namespace
}  // namespace test
}  // namespace host
}  // namespace iommud

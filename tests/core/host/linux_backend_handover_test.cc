// The hand-over of a group to a VMM that opens VFIO itself (Registry::HandOverGroup and
// ReleaseOwnership over LinuxBackend), without a kernel: a fake sysfs tree plays the driver
// binding, /dev/vfio/N is a plain file and /proc a tree of fake processes. What a real kernel and
// a real QEMU do is tested in the VM (tests/host/host_handover_vm_test.cc).
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/fault_injector.h"
#include "core/host/linux_backend.h"
#include "core/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/host/fake_sysfs.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace host {
namespace test {
namespace {

namespace fs = std::filesystem;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr char kEdu[] = "0000:00:02.0";     // group 1, alone
constexpr Rid kEduRid = 0x10;
constexpr char kOther[] = "0000:00:05.0";   // group 2, alone
constexpr Rid kOtherRid = 0x28;
constexpr int kEduGroup = 1;
constexpr char kOwner[] = "uid:4242/vm-1";

class NoMemory : public MemoryResolver {
 public:
  absl::StatusOr<void*> Resolve(uint64_t, uint64_t) const override {
    return Error(absl::StatusCode::kNotFound, reason::kMemoryNotRegistered, "none");
  }
};

class LinuxHandoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(sysfs_.root().empty());
    sysfs_.AddIommu("dmar0");
    sysfs_.AddGroup(kEduGroup, "DMA", "");
    sysfs_.AddGroup(2, "DMA", "");
    sysfs_.AddDriver("vfio-pci");
    sysfs_.AddDriver("pci-stub");
    Add("pci0000:00/0000:00:02.0", kEduGroup, "pci-stub");
    Add("pci0000:00/0000:00:05.0", 2, "");
    fs::create_directories(root() + "/dev/vfio");
    fs::create_directories(root() + "/proc");
    // The node vfio-pci's binding creates (0600, the creator's), made up front in the fake tree.
    std::ofstream(Node()).put('\0');
    ASSERT_EQ(::chmod(Node().c_str(), 0600), 0);
    // Hand over to a uid that exists nowhere where files may be given away (root outside a user
    // namespace that leaves it unmapped); else to ourselves.
    const std::string probe = root() + "/chown-probe";
    std::ofstream(probe).put('\0');
    if (::chown(probe.c_str(), 4242, 4242) == 0) {
      uid_ = 4242;
      gid_ = 4242;
    } else {
      uid_ = ::geteuid();
      gid_ = ::getegid();
    }
    before_ = NodeStat();
  }

  void Add(const std::string& path, int group, const std::string& driver) {
    FakePciDevice device;
    device.path = path;
    device.group = group;
    device.iommu = "dmar0";
    device.config = FakeSysfs::ConventionalConfig();
    device.driver = driver;
    sysfs_.AddPciDevice(device);
  }

  // The registry over the linux backend, both devices probed.
  void Start(FaultInjector* faults = nullptr) {
    LinuxBackendOptions options;
    options.sysfs_root = sysfs_.root();
    options.vfio_dir = root() + "/dev/vfio";
    options.proc_root = root() + "/proc";
    options.kmsg_path = "";
    options.bind.replaceable_drivers = {"pci-stub"};
    options.handover_node_timeout = absl::Milliseconds(50);
    options.sysfs_writer = [this](const std::string& path, absl::string_view value) {
      return sysfs_.Write(path, value);
    };
    absl::StatusOr<std::unique_ptr<LinuxBackend>> backend =
        LinuxBackend::Create(options, &memory_, faults);
    ASSERT_OK(backend);
    backend_ = std::move(*backend);
    RegistryOptions registry_options;
    registry_options.backend = backend_.get();
    absl::StatusOr<std::unique_ptr<Registry>> registry = Registry::Create(registry_options);
    ASSERT_OK(registry);
    registry_ = std::move(*registry);
    ASSERT_OK(registry_->AddUnit("dmar0", backend_->topology().units[0].caps).status());
    for (const auto& [name, rid] : {std::pair<const char*, Rid>{kEdu, kEduRid}, {kOther, kOtherRid}}) {
      ProbeRequest probe;
      probe.unit = "dmar0";
      probe.device = name;
      probe.rid = rid;
      ASSERT_OK_AND_ASSIGN(const DeviceInfo device, registry_->ProbeDevice(probe));
      groups_[name] = device.group;
    }
  }

  std::string root() const { return sysfs_.root(); }
  std::string Node() const { return absl::StrCat(root(), "/dev/vfio/", kEduGroup); }
  struct stat NodeStat() const {
    struct stat st = {};
    EXPECT_EQ(::stat(Node().c_str(), &st), 0);
    return st;
  }
  // A fake process holding the edu's group node open.
  void AddHolder(int pid, uid_t uid) {
    const std::string dir = absl::StrCat(root(), "/proc/", pid);
    fs::create_directories(dir + "/fd");
    std::ofstream(dir + "/status") << "Name:\tqemu\nUid:\t" << uid << "\t" << uid << "\t" << uid
                                   << "\t" << uid << "\nGid:\t0\t0\t0\t0\n";
    std::ofstream(dir + "/comm") << "qemu-system-x86\n";
    fs::create_symlink(Node(), dir + "/fd/7");
  }
  void EndHolder(int pid) { fs::remove_all(absl::StrCat(root(), "/proc/", pid)); }

  GroupId edu_group() { return groups_[kEdu]; }

  FakeSysfs sysfs_;
  NoMemory memory_;
  std::unique_ptr<LinuxBackend> backend_;
  std::unique_ptr<Registry> registry_;
  std::map<std::string, GroupId> groups_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  struct stat before_ = {};
};

TEST_F(LinuxHandoverTest, HandsOverRefusesIommudUseAndTakesBackOnceTheVmmIsGone) {
  Start();
  ASSERT_OK_AND_ASSIGN(const GroupInfo handed,
                       registry_->HandOverGroup(edu_group(), kOwner, uid_, gid_));
  EXPECT_TRUE(handed.handed_over);
  EXPECT_EQ(handed.handover_uid, uid_);
  EXPECT_EQ(handed.handover_gid, gid_);
  EXPECT_EQ(handed.owner, kOwner);
  EXPECT_EQ(handed.owner_cnt, 1u);
  EXPECT_EQ(handed.domain, handed.default_domain);
  EXPECT_EQ(sysfs_.DriverOf(kEdu), "vfio-pci");
  EXPECT_EQ(NodeStat().st_uid, uid_);
  EXPECT_EQ(NodeStat().st_mode & 07777, 0660u);
  EXPECT_THAT(registry_->Audit(), IsEmpty());
  for (const InvariantViolation& violation : registry_->CheckInvariants()) {
    ADD_FAILURE() << violation.what;
  }

  // iommud's own use of the group is refused while its VMM owns the container (before the
  // domain is even looked at: a user domain needs a real /dev/vfio/vfio).
  EXPECT_ERROR(registry_->AttachGroup(edu_group(), handed.blocking_domain, kOwner),
               kFailedPrecondition, "GROUP_HANDED_OVER");
  EXPECT_ERROR(registry_->ClaimDevice(kEdu, kOwner), kFailedPrecondition, "GROUP_HANDED_OVER");
  EXPECT_ERROR(registry_->WithOwnedDevice(kEdu, kOwner, [] { return absl::OkStatus(); }),
               kFailedPrecondition, "GROUP_HANDED_OVER");
  EXPECT_ERROR(registry_->ClaimOwnership(edu_group(), "someone-else"), kFailedPrecondition,
               "GROUP_IN_USE");
  EXPECT_ERROR(registry_->HandOverGroup(edu_group(), kOwner, uid_, gid_), kFailedPrecondition,
               "GROUP_IN_USE");
  EXPECT_ERROR(registry_->ReleaseOwnership(edu_group(), "someone-else"), kPermissionDenied,
               "NOT_OWNER");

  // The VMM opened the group: taking it back is refused, naming it, and changes nothing.
  AddHolder(500, uid_);
  EXPECT_THAT(registry_->Audit(), IsEmpty()) << "the VMM's own uid holding it is no leak";
  const absl::StatusOr<GroupInfo> refused = registry_->ReleaseOwnership(edu_group(), kOwner);
  EXPECT_ERROR(refused, kFailedPrecondition, "GROUP_STILL_OPEN");
  EXPECT_EQ(GetErrorMetadata(refused.status())["pids"], "500");
  ASSERT_OK_AND_ASSIGN(const GroupInfo kept, registry_->GetGroup(edu_group()));
  EXPECT_TRUE(kept.handed_over);
  EXPECT_EQ(kept.owner, kOwner);
  EXPECT_EQ(sysfs_.DriverOf(kEdu), "vfio-pci");
  EXPECT_EQ(NodeStat().st_uid, uid_);

  EndHolder(500);
  ASSERT_OK_AND_ASSIGN(const GroupInfo released, registry_->ReleaseOwnership(edu_group(), kOwner));
  EXPECT_FALSE(released.handed_over);
  EXPECT_EQ(released.owner, "");
  EXPECT_EQ(released.owner_cnt, 0u);
  EXPECT_EQ(sysfs_.DriverOf(kEdu), "pci-stub");
  EXPECT_EQ(NodeStat().st_uid, before_.st_uid);
  EXPECT_EQ(NodeStat().st_mode & 07777, 0600u);
  EXPECT_THAT(registry_->Audit(), IsEmpty());
  for (const InvariantViolation& violation : registry_->CheckInvariants()) {
    ADD_FAILURE() << violation.what;
  }
  // Back to normal: iommud may claim it itself now (the claim's kernel steps are the VM's to test).
  EXPECT_ERROR(registry_->ReleaseOwnership(edu_group(), kOwner), kFailedPrecondition,
               "GROUP_NOT_OWNED");
}

TEST_F(LinuxHandoverTest, AuditReportsAStrangerHoldingTheGroupAndAHolderAfterTheTakeBack) {
  Start();
  ASSERT_OK(registry_->HandOverGroup(edu_group(), kOwner, uid_, gid_).status());
  AddHolder(600, uid_ + 1);  // not the VMM's uid
  std::vector<LeakRecord> leaks = registry_->Audit();
  ASSERT_THAT(leaks, SizeIs(1));
  EXPECT_EQ(leaks[0].reason, LeakReason::kHandoverHeldByOtherUid);
  EXPECT_EQ(leaks[0].group, edu_group());
  EXPECT_EQ(leaks[0].rid, kEduRid);
  EXPECT_TRUE(absl::StrContains(leaks[0].detail, "pid 600")) << leaks[0].detail;
  EXPECT_EQ(LeakReasonName(leaks[0].reason), "handover_held_by_other_uid");

  // Forced, the take-back ignores holders; the one still holding the group is a leak now.
  ASSERT_OK(registry_->ReleaseOwnership(edu_group(), kOwner, /*force=*/true).status());
  EXPECT_EQ(sysfs_.DriverOf(kEdu), "pci-stub");
  leaks = registry_->Audit();
  ASSERT_THAT(leaks, SizeIs(1));
  EXPECT_EQ(leaks[0].reason, LeakReason::kHeldAfterTakeBack);
  EXPECT_EQ(leaks[0].group, edu_group());
  EXPECT_EQ(LeakReasonName(leaks[0].reason), "held_after_take_back");
  EndHolder(600);
  EXPECT_THAT(registry_->Audit(), IsEmpty());
}

TEST_F(LinuxHandoverTest, AFailingHandOverOrTakeBackChangesNothing) {
  FaultInjector injector;
  FaultSpec handover;
  handover.point = "host.handover";
  handover.code = absl::StatusCode::kResourceExhausted;
  ASSERT_OK(injector.Add(handover).status());
  Start(&injector);
  ASSERT_OK_AND_ASSIGN(const GroupInfo before, registry_->GetGroup(edu_group()));
  EXPECT_ERROR(registry_->HandOverGroup(edu_group(), kOwner, uid_, gid_), kResourceExhausted,
               "INJECTED_FAULT");
  ASSERT_OK_AND_ASSIGN(const GroupInfo after, registry_->GetGroup(edu_group()));
  EXPECT_FALSE(after.handed_over);
  EXPECT_EQ(after.owner, before.owner);
  EXPECT_EQ(after.owner_cnt, before.owner_cnt);
  EXPECT_EQ(sysfs_.DriverOf(kEdu), "pci-stub");
  EXPECT_EQ(sysfs_.OverrideOf(kEdu), "(null)");
  EXPECT_EQ(NodeStat().st_uid, before_.st_uid);
  EXPECT_EQ(NodeStat().st_mode & 07777, 0600u);

  // A real failure of the host's hand-over (the node does not appear) changes nothing either.
  injector.Clear();
  fs::remove(Node());
  EXPECT_ERROR(registry_->HandOverGroup(edu_group(), kOwner, uid_, gid_), kFailedPrecondition,
               "GROUP_NODE_MISSING");
  ASSERT_OK_AND_ASSIGN(const GroupInfo still, registry_->GetGroup(edu_group()));
  EXPECT_FALSE(still.handed_over);
  EXPECT_EQ(still.owner, "");
  EXPECT_EQ(sysfs_.DriverOf(kEdu), "pci-stub");
  std::ofstream(Node()).put('\0');
  ASSERT_EQ(::chmod(Node().c_str(), 0600), 0);

  ASSERT_OK(registry_->HandOverGroup(edu_group(), kOwner, uid_, gid_).status());
  FaultSpec take_back;
  take_back.point = "host.take_back";
  take_back.code = absl::StatusCode::kResourceExhausted;
  ASSERT_OK(injector.Add(take_back).status());
  EXPECT_ERROR(registry_->ReleaseOwnership(edu_group(), kOwner, /*force=*/true),
               kResourceExhausted, "INJECTED_FAULT");
  ASSERT_OK_AND_ASSIGN(const GroupInfo handed, registry_->GetGroup(edu_group()));
  EXPECT_TRUE(handed.handed_over);
  EXPECT_EQ(handed.owner, kOwner);
  EXPECT_EQ(sysfs_.DriverOf(kEdu), "vfio-pci");
  EXPECT_EQ(NodeStat().st_uid, uid_);
  injector.Clear();
  ASSERT_OK(registry_->ReleaseOwnership(edu_group(), kOwner).status());
  EXPECT_EQ(sysfs_.DriverOf(kEdu), "pci-stub");
  EXPECT_THAT(registry_->Audit(), IsEmpty());
}

TEST_F(LinuxHandoverTest, AGroupIommudHoldsCannotBeHandedOverAndTheOtherGroupIsUntouched) {
  Start();
  ASSERT_OK(registry_->HandOverGroup(edu_group(), kOwner, uid_, gid_).status());
  // The backend on its own: a second hand-over of the kernel group is refused.
  EXPECT_ERROR(backend_->HandOverGroup("dmar0", kEduRid, uid_, gid_), kFailedPrecondition,
               "GROUP_ALREADY_HANDED_OVER");
  EXPECT_ERROR(backend_->TakeBackGroup("dmar0", kOtherRid, false), kFailedPrecondition,
               "GROUP_NOT_HANDED_OVER");
  EXPECT_EQ(sysfs_.DriverOf(kOther), "");
  ASSERT_OK_AND_ASSIGN(const GroupInfo other, registry_->GetGroup(groups_[kOther]));
  EXPECT_FALSE(other.handed_over);
  ASSERT_OK(registry_->ReleaseOwnership(edu_group(), kOwner).status());
}

}  // namespace
}  // namespace test
}  // namespace host
}  // namespace iommud

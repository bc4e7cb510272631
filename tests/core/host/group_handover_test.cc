#include "core/host/group_handover.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/host/fake_sysfs.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace host {
namespace test {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kAlone[] = "0000:00:02.0";
constexpr char kBehindA[] = "0000:01:01.0";
constexpr char kBehindB[] = "0000:01:02.0";
constexpr int kAloneGroup = 1;
constexpr int kSharedGroup = 2;

// Group 1: an edu-like device alone. Group 2: a conventional bridge and two devices behind it.
// The fake /dev/vfio/N nodes are regular files (0600, owned by the test's user); fake /proc
// entries are directories with fd/ symlinks, status and comm.
class GroupHandoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(sysfs_.root().empty());
    sysfs_.AddGroup(kAloneGroup, "DMA", "");
    sysfs_.AddGroup(kSharedGroup, "DMA", "");
    sysfs_.AddDriver("vfio-pci");
    sysfs_.AddDriver("pci-stub");
    Add("pci0000:00/0000:00:02.0", kAloneGroup, "0x00ff00");
    Add("pci0000:00/0000:00:03.0", kSharedGroup, "0x060400");
    Add("pci0000:00/0000:00:03.0/0000:01:01.0", kSharedGroup, "0x00ff00");
    Add("pci0000:00/0000:00:03.0/0000:01:02.0", kSharedGroup, "0x00ff00");
    fs::create_directories(dev_root() + "/vfio");
    fs::create_directories(proc_root());
    // The test hands over to a user that exists nowhere (as the VM scenario does) when it may
    // give files away: as root, outside a user namespace that leaves 1000 unmapped (Bazel's
    // sandbox: chown says EINVAL). Otherwise it can only give its own files to itself.
    const std::string probe = sysfs_.root() + "/chown-probe";
    std::ofstream(probe).put('\0');
    if (::chown(probe.c_str(), 1000, 1000) == 0) {
      uid_ = 1000;
      gid_ = 1000;
    } else {
      uid_ = ::geteuid();
      gid_ = ::getegid();
    }
  }

  void Add(const std::string& path, int group, const std::string& pci_class) {
    FakePciDevice device;
    device.path = path;
    device.group = group;
    device.pci_class = pci_class;
    sysfs_.AddPciDevice(device);
  }

  std::string dev_root() const { return sysfs_.root() + "/dev"; }
  std::string proc_root() const { return sysfs_.root() + "/proc"; }
  std::string Node(int group) const { return absl::StrCat(dev_root(), "/vfio/", group); }

  // The node the kernel creates when the group binds to vfio-pci: 0600, owned by the creator.
  void CreateNode(int group) {
    std::ofstream(Node(group)).put('\0');
    ASSERT_EQ(::chmod(Node(group).c_str(), 0600), 0);
  }

  // A process whose fds `fds` point at the given targets.
  void AddProcess(int pid, uid_t uid, const std::string& comm,
                  const std::map<int, std::string>& fds) {
    const std::string dir = absl::StrCat(proc_root(), "/", pid);
    fs::create_directories(dir + "/fd");
    std::ofstream(dir + "/status") << "Name:\t" << comm << "\nUid:\t" << uid << "\t" << uid << "\t"
                                   << uid << "\t" << uid << "\nGid:\t0\t0\t0\t0\n";
    std::ofstream(dir + "/comm") << comm << "\n";
    for (const auto& [fd, target] : fds) {
      fs::create_symlink(target, absl::StrCat(dir, "/fd/", fd));
    }
  }
  void EndProcess(int pid) { fs::remove_all(absl::StrCat(proc_root(), "/", pid)); }

  struct stat NodeStat(int group) const {
    struct stat st = {};
    EXPECT_EQ(::stat(Node(group).c_str(), &st), 0) << Node(group);
    return st;
  }

  GroupHandoverOptions Options() {
    GroupHandoverOptions options;
    options.sysfs_root = sysfs_.root();
    options.dev_root = dev_root();
    options.proc_root = proc_root();
    options.sysfs_writer = [this](const std::string& path, absl::string_view value) {
      return sysfs_.Write(path, value);
    };
    options.node_timeout = absl::Milliseconds(50);
    return options;
  }

  FakeSysfs sysfs_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
};

TEST_F(GroupHandoverTest, HandsTheNodeToTheUidAndTakesItBack) {
  CreateNode(kAloneGroup);
  const struct stat before = NodeStat(kAloneGroup);
  GroupHandover handover(Options());

  ASSERT_OK_AND_ASSIGN(const HandoverRecord record, handover.HandOver(kAloneGroup, uid_, gid_));
  EXPECT_EQ(record.group_id, kAloneGroup);
  EXPECT_EQ(record.uid, uid_);
  EXPECT_EQ(record.gid, gid_);
  ASSERT_EQ(record.bindings.size(), 1u);
  EXPECT_EQ(record.bindings[0].device, kAlone);
  EXPECT_EQ(record.bindings[0].previous_driver, "");
  EXPECT_EQ(record.previous_node_uid, before.st_uid);
  EXPECT_EQ(record.previous_node_gid, before.st_gid);
  EXPECT_EQ(record.previous_node_mode, 0600u);
  EXPECT_EQ(sysfs_.DriverOf(kAlone), "vfio-pci");
  struct stat st = NodeStat(kAloneGroup);
  EXPECT_EQ(st.st_uid, uid_);
  EXPECT_EQ(st.st_gid, gid_);
  EXPECT_EQ(st.st_mode & 07777, 0660u);

  ASSERT_OK(handover.TakeBack(record));
  st = NodeStat(kAloneGroup);
  EXPECT_EQ(st.st_uid, before.st_uid);
  EXPECT_EQ(st.st_gid, before.st_gid);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(sysfs_.DriverOf(kAlone), "");
  EXPECT_EQ(sysfs_.OverrideOf(kAlone), "(null)");
  // Taking back is idempotent: a retry with the same record succeeds and changes nothing.
  EXPECT_OK(handover.TakeBack(record));
  EXPECT_EQ(sysfs_.DriverOf(kAlone), "");
}

TEST_F(GroupHandoverTest, TakeBackRefusesWhileAProcessHoldsTheNode) {
  CreateNode(kAloneGroup);
  GroupHandover handover(Options());
  ASSERT_OK_AND_ASSIGN(const HandoverRecord record, handover.HandOver(kAloneGroup, uid_, gid_));
  AddProcess(4242, uid_, "qemu-system-x86", {{0, "/dev/null"}, {17, Node(kAloneGroup)}});

  const absl::Status refused = handover.TakeBack(record);
  EXPECT_ERROR(refused, kFailedPrecondition, "GROUP_STILL_OPEN");
  EXPECT_EQ(GetErrorMetadata(refused)["pids"], "4242");
  EXPECT_EQ(GetErrorMetadata(refused)["group_id"], "1");
  // Nothing changed: the VMM keeps its group.
  struct stat st = NodeStat(kAloneGroup);
  EXPECT_EQ(st.st_uid, uid_);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(sysfs_.DriverOf(kAlone), "vfio-pci");

  EndProcess(4242);
  ASSERT_OK(handover.TakeBack(record));
  EXPECT_EQ(NodeStat(kAloneGroup).st_mode & 07777, 0600u);
  EXPECT_EQ(sysfs_.DriverOf(kAlone), "");
}

TEST_F(GroupHandoverTest, ForcedTakeBackIgnoresHolders) {
  CreateNode(kAloneGroup);
  GroupHandover handover(Options());
  ASSERT_OK_AND_ASSIGN(const HandoverRecord record, handover.HandOver(kAloneGroup, uid_, gid_));
  AddProcess(4242, uid_, "qemu-system-x86", {{17, Node(kAloneGroup)}});
  ASSERT_OK(handover.TakeBack(record, /*force=*/true));
  EXPECT_EQ(NodeStat(kAloneGroup).st_mode & 07777, 0600u);
  EXPECT_EQ(sysfs_.DriverOf(kAlone), "");
}

TEST_F(GroupHandoverTest, GroupHoldersAreTheProcessesWithTheNodeOpen) {
  CreateNode(kAloneGroup);
  AddProcess(100, 1000, "qemu-system-x86", {{3, Node(kAloneGroup)}, {9, Node(kAloneGroup)},
                                             {4, dev_root() + "/vfio/vfio"}});
  AddProcess(200, 1001, "other-vmm", {{3, Node(kSharedGroup)}, {5, Node(kAloneGroup) + "0"}});
  // Unbound from vfio-pci while still open: the kernel shows the removed node as "(deleted)".
  AddProcess(300, 0, "leaker", {{7, Node(kAloneGroup) + " (deleted)"}});
  AddProcess(400, 0, "bystander", {{1, "/dev/null"}});
  fs::create_directories(proc_root() + "/self/fd");  // not a pid
  fs::create_directories(proc_root() + "/500");       // exited: no fd directory any more
  GroupHandover handover(Options());

  ASSERT_OK_AND_ASSIGN(const std::vector<GroupHolder> holders,
                       handover.GroupHolders(kAloneGroup));
  ASSERT_EQ(holders.size(), 2u);
  EXPECT_EQ(holders[0].pid, 100);
  EXPECT_EQ(holders[0].uid, 1000u);
  EXPECT_EQ(holders[0].comm, "qemu-system-x86");
  EXPECT_THAT(holders[0].fds, ElementsAre(3, 9));
  EXPECT_EQ(holders[1].pid, 300);
  EXPECT_EQ(holders[1].uid, 0u);
  EXPECT_THAT(holders[1].fds, ElementsAre(7));

  ASSERT_OK_AND_ASSIGN(const std::vector<GroupHolder> shared, handover.GroupHolders(kSharedGroup));
  ASSERT_EQ(shared.size(), 1u);
  EXPECT_EQ(shared[0].pid, 200);
  ASSERT_OK_AND_ASSIGN(const std::vector<GroupHolder> none, handover.GroupHolders(7));
  EXPECT_THAT(none, IsEmpty());
}

TEST_F(GroupHandoverTest, GroupHoldersWithoutProcIsAnError) {
  GroupHandoverOptions options = Options();
  options.proc_root = sysfs_.root() + "/no-proc";
  GroupHandover handover(options);
  EXPECT_ERROR(handover.GroupHolders(kAloneGroup), kNotFound, "PROC_SCAN_FAILED");
  // ... and a hand-over that cannot see holders does not happen.
  CreateNode(kAloneGroup);
  EXPECT_ERROR(handover.HandOver(kAloneGroup, uid_, gid_), kNotFound, "PROC_SCAN_FAILED");
  EXPECT_EQ(sysfs_.DriverOf(kAlone), "");
  EXPECT_EQ(NodeStat(kAloneGroup).st_mode & 07777, 0600u);
}

TEST_F(GroupHandoverTest, HandOverOfAHeldGroupIsUndone) {
  CreateNode(kAloneGroup);
  const struct stat before = NodeStat(kAloneGroup);
  AddProcess(77, 0, "iommud", {{12, Node(kAloneGroup)}});
  GroupHandover handover(Options());
  const absl::StatusOr<HandoverRecord> record = handover.HandOver(kAloneGroup, uid_, gid_);
  EXPECT_ERROR(record, kFailedPrecondition, "GROUP_STILL_OPEN");
  EXPECT_EQ(sysfs_.DriverOf(kAlone), "");
  EXPECT_EQ(sysfs_.OverrideOf(kAlone), "(null)");
  const struct stat after = NodeStat(kAloneGroup);
  EXPECT_EQ(after.st_uid, before.st_uid);
  EXPECT_EQ(after.st_mode & 07777, 0600u);
}

TEST_F(GroupHandoverTest, SecondHandOverIsRefusedAndLeavesTheFirst) {
  CreateNode(kAloneGroup);
  GroupHandover handover(Options());
  ASSERT_OK_AND_ASSIGN(const HandoverRecord record, handover.HandOver(kAloneGroup, uid_, gid_));
  EXPECT_ERROR(handover.HandOver(kAloneGroup, uid_, gid_), kFailedPrecondition,
               "GROUP_ALREADY_HANDED_OVER");
  // The refused second hand-over did not undo the first.
  EXPECT_EQ(sysfs_.DriverOf(kAlone), "vfio-pci");
  EXPECT_EQ(NodeStat(kAloneGroup).st_mode & 07777, 0660u);
  EXPECT_EQ(NodeStat(kAloneGroup).st_uid, uid_);
  ASSERT_OK(handover.TakeBack(record));
  EXPECT_EQ(sysfs_.DriverOf(kAlone), "");
}

TEST_F(GroupHandoverTest, MissingNodeRestoresTheDrivers) {
  GroupHandover handover(Options());  // no /dev/vfio/1: nothing creates it
  EXPECT_ERROR(handover.HandOver(kAloneGroup, uid_, gid_), kFailedPrecondition,
               "GROUP_NODE_MISSING");
  EXPECT_EQ(sysfs_.DriverOf(kAlone), "");
  EXPECT_EQ(sysfs_.OverrideOf(kAlone), "(null)");
}

TEST_F(GroupHandoverTest, PreviousDriversComeBackAndUnsafeOnesAreNotTaken) {
  CreateNode(kSharedGroup);
  ASSERT_OK(sysfs_.Write(sysfs_.root() + "/bus/pci/drivers/pci-stub/bind", kBehindA));
  {
    GroupHandover handover(Options());
    const size_t writes = sysfs_.writes.size();
    EXPECT_ERROR(handover.HandOver(kSharedGroup, uid_, gid_), kFailedPrecondition,
                 "DRIVER_UNSAFE");
    EXPECT_EQ(sysfs_.writes.size(), writes) << "a refused hand-over wrote to sysfs";
    EXPECT_EQ(NodeStat(kSharedGroup).st_mode & 07777, 0600u);
  }
  GroupHandoverOptions options = Options();
  options.bind.replaceable_drivers = {"pci-stub"};
  GroupHandover handover(options);
  ASSERT_OK_AND_ASSIGN(const HandoverRecord record, handover.HandOver(kSharedGroup, uid_, gid_));
  ASSERT_EQ(record.bindings.size(), 2u);  // the bridge is left alone
  EXPECT_EQ(sysfs_.DriverOf(kBehindA), "vfio-pci");
  EXPECT_EQ(sysfs_.DriverOf(kBehindB), "vfio-pci");
  ASSERT_OK(handover.TakeBack(record));
  EXPECT_EQ(sysfs_.DriverOf(kBehindA), "pci-stub");
  EXPECT_EQ(sysfs_.DriverOf(kBehindB), "");
  EXPECT_EQ(NodeStat(kSharedGroup).st_mode & 07777, 0600u);
}

TEST_F(GroupHandoverTest, InvalidArguments) {
  GroupHandover handover(Options());
  EXPECT_ERROR(handover.HandOver(-1, uid_, gid_), kInvalidArgument, "INVALID_ARGUMENT");
  EXPECT_ERROR(handover.HandOver(kAloneGroup, static_cast<uid_t>(-1), gid_), kInvalidArgument,
               "INVALID_ARGUMENT");
  EXPECT_ERROR(handover.HandOver(99, uid_, gid_), kNotFound, "GROUP_NOT_FOUND");
  EXPECT_EQ(sysfs_.DriverOf(kAlone), "");
}

}  // namespace
}  // namespace test
}  // namespace host
}  // namespace iommud

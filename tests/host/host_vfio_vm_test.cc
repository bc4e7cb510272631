// The core/host layer against a real kernel: run only inside the VM that tests/host/run.sh boots
// (Debian's kernel, QEMU's intel-iommu, edu devices), as root. Every scenario binds what it needs
// and gives everything back in TearDown, which also checks nothing leaked (fds, drivers,
// /dev/vfio group nodes).
//
// The topology run.sh builds (one boot, three ways of being behind the IOMMU):
//   00:02.0  edu alone on the root bus                  -> a group of its own
//   00:03.0  conventional PCI bridge, 01:01.0 and 01:02.0 edus behind it
//                                                       -> one group; both DMA as 00:03.0
//   00:04.0  PCIe root port, 02:00.0 edu behind it      -> two groups (port, edu)
//
// The hand-over scenarios (GroupHandover) also run a VMM: the build machine's Debian QEMU, reached
// through the 9p root, started as uid 1000 (a uid in no /etc/passwd).
#include <fcntl.h>
#include <signal.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/host/fd_passing.h"
#include "core/host/group_handover.h"
#include "core/host/pci_driver_binder.h"
#include "core/host/sysfs_inventory.h"
#include "core/host/sysfs_io.h"
#include "core/host/unique_fd.h"
#include "core/host/vfio_container.h"
#include "core/host/vfio_device.h"
#include "core/host/vfio_group.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/host/edu_device.h"
#include "tests/host/vm_scenario_support.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace host {
namespace test {
namespace {

using ::testing::ElementsAre;
using ::testing::Contains;

// The VMM of the hand-over scenarios (StartQemuVmm, vm_scenario_support.h) runs as a uid that
// exists in no /etc/passwd; the kernel only compares numbers.
constexpr uid_t kVmmUid = 1000;
constexpr gid_t kVmmGid = 1000;

class HostVfioVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fds_before_ = CountOpenFds();
    drivers_before_ = DriverSnapshot(inventory_);
    ASSERT_FALSE(drivers_before_.empty()) << "no PCI devices in sysfs";
  }

  void TearDown() override {
    // Give everything back in the order the kernel needs: BAR mappings and device fds before the
    // groups, groups before unbinding vfio-pci (its remove waits for open device fds).
    edus_.clear();
    devices_.clear();
    groups_.clear();
    container_.reset();
    // A VMM a scenario left running ends before its group is taken back.
    for (const pid_t vmm : vmms_) {
      ::kill(vmm, SIGKILL);
      ::waitpid(vmm, nullptr, 0);
    }
    vmms_.clear();
    for (const HandoverRecord& record : handovers_) {
      EXPECT_OK(handover_.TakeBack(record, /*force=*/true));
    }
    handovers_.clear();
    EXPECT_OK(binder_.RestoreAll(bindings_));
    bindings_.clear();
    for (const std::string& device : stubbed_) {
      EXPECT_OK(WriteSysfsAttribute(absl::StrCat("/sys/bus/pci/drivers/pci-stub/unbind"), device));
      EXPECT_OK(WriteSysfsAttribute(absl::StrCat("/sys/bus/pci/devices/", device, "/driver_override"),
                                    "\n"));
    }
    stubbed_.clear();

    EXPECT_EQ(CountOpenFds(), fds_before_) << "file descriptors leaked";
    EXPECT_EQ(DriverSnapshot(inventory_), drivers_before_) << "drivers or driver_override not restored";
    absl::StatusOr<std::vector<std::string>> vfio = ListSysfsDirectory("/dev/vfio");
    ASSERT_OK(vfio);
    EXPECT_THAT(*vfio, ElementsAre("vfio")) << "a /dev/vfio group node outlived its binding";
  }

  int GroupOf(const std::string& device) const {
    absl::StatusOr<PciDeviceInfo> info = inventory_.PciDevice(device);
    return info.ok() && info->iommu_group.has_value() ? *info->iommu_group : -1;
  }

  // Binds `device` the way the kernel's pci-stub would hold a device another driver owns.
  void BindToPciStub(const std::string& device) {
    stubbed_.push_back(device);
    ASSERT_OK(WriteSysfsAttribute(absl::StrCat("/sys/bus/pci/devices/", device, "/driver_override"),
                                  "pci-stub"));
    ASSERT_OK(WriteSysfsAttribute("/sys/bus/pci/drivers_probe", device));
    ASSERT_OK_AND_ASSIGN(const PciDeviceInfo info, inventory_.PciDevice(device));
    ASSERT_EQ(info.driver, "pci-stub");
  }

  // Binds group of `device` to vfio-pci, opens it and attaches it to container_ (created on first
  // use).
  void OpenGroupOf(const std::string& device) {
    const int group_id = GroupOf(device);
    ASSERT_GE(group_id, 0) << device << " has no IOMMU group";
    ASSERT_OK_AND_ASSIGN(std::vector<DriverBinding> bindings, binder_.BindGroupToVfio(group_id));
    bindings_.insert(bindings_.end(), bindings.begin(), bindings.end());
    if (container_ == nullptr) {
      ASSERT_OK_AND_ASSIGN(container_, VfioContainer::Open());
    }
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<VfioGroup> group, VfioGroup::Open(group_id));
    ASSERT_OK(container_->Attach(*group));
    groups_.push_back(std::move(group));
  }

  // An edu of an opened group, ready for DMA.
  EduDevice* OpenEdu(const std::string& device) {
    for (const auto& group : groups_) {
      absl::StatusOr<UniqueFd> fd = group->GetDeviceFd(device);
      if (!fd.ok()) continue;
      devices_.push_back(std::make_unique<VfioDevice>(device, *std::move(fd)));
      absl::StatusOr<std::unique_ptr<EduDevice>> edu = EduDevice::Open(*devices_.back());
      EXPECT_OK(edu);
      if (!edu.ok()) return nullptr;
      edus_.push_back(*std::move(edu));
      return edus_.back().get();
    }
    ADD_FAILURE() << "no opened group gives a device fd for " << device;
    return nullptr;
  }

  // Starts Debian's QEMU as kVmmUid:kVmmGid (StartQemuVmm). Returns the pid (kept in vmms_,
  // killed in TearDown), or -1.
  pid_t StartVmm(const std::string& device, const std::string& log_path) {
    const pid_t pid = StartQemuVmm(device, kVmmUid, kVmmGid, log_path);
    if (pid > 0) vmms_.push_back(pid);
    return pid;
  }

  // Waits up to `timeout` for `pid` to exit; true (and its status) if it did.
  bool WaitForExit(pid_t pid, absl::Duration timeout, int* status) {
    if (!WaitForChildExit(pid, timeout, status)) return false;
    vmms_.erase(std::remove(vmms_.begin(), vmms_.end(), pid), vmms_.end());
    return true;
  }

  // Kills `pid` and reaps it.
  void KillVmm(pid_t pid) {
    ::kill(pid, SIGKILL);
    int status = 0;
    EXPECT_TRUE(WaitForExit(pid, absl::Seconds(10), &status)) << "QEMU " << pid << " survived SIGKILL";
  }

  struct stat NodeStat(int group_id) const {
    struct stat st = {};
    EXPECT_EQ(::stat(absl::StrCat("/dev/vfio/", group_id).c_str(), &st), 0)
        << "/dev/vfio/" << group_id << ": " << std::strerror(errno);
    return st;
  }

  SysfsInventory inventory_;
  PciDriverBinder binder_;
  GroupHandover handover_;
  std::vector<HandoverRecord> handovers_;  // taken back (forced) in TearDown
  std::vector<pid_t> vmms_;                // killed in TearDown
  std::vector<DriverBinding> bindings_;
  std::vector<std::string> stubbed_;
  std::unique_ptr<VfioContainer> container_;
  std::vector<std::unique_ptr<VfioGroup>> groups_;
  std::vector<std::unique_ptr<VfioDevice>> devices_;
  std::vector<std::unique_ptr<EduDevice>> edus_;
  int fds_before_ = 0;
  std::map<std::string, std::string> drivers_before_;
};

TEST_F(HostVfioVmTest, InventorySeesDmar0) {
  ASSERT_OK_AND_ASSIGN(const std::vector<IommuUnit> units, inventory_.IommuUnits());
  ASSERT_EQ(units.size(), 1u);
  EXPECT_EQ(units[0].name, "dmar0");
  EXPECT_THAT(units[0].devices, Contains(kEduAlone));
  ASSERT_OK_AND_ASSIGN(const PciDeviceInfo edu, inventory_.PciDevice(kEduAlone));
  EXPECT_EQ(edu.vendor, kEduVendor);
  EXPECT_EQ(edu.device, kEduDeviceId);
  EXPECT_EQ(edu.iommu, "dmar0");
  EXPECT_EQ(edu.driver, "");
}

TEST_F(HostVfioVmTest, InventorySeesTheThreeTopologies) {
  ASSERT_OK_AND_ASSIGN(const std::vector<PciDeviceInfo> devices, inventory_.PciDevices());
  std::vector<std::string> edus;
  for (const PciDeviceInfo& d : devices) {
    if (d.vendor == kEduVendor && d.device == kEduDeviceId) edus.push_back(d.name);
  }
  EXPECT_THAT(edus, ElementsAre(kEduAlone, kEduBehindBridgeA, kEduBehindBridgeB,
                                kEduBehindRootPort));

  // The edu alone: its own group, its own requester id.
  ASSERT_OK_AND_ASSIGN(const IommuGroupInfo alone, inventory_.Group(GroupOf(kEduAlone)));
  EXPECT_THAT(alone.devices, ElementsAre(kEduAlone));
  EXPECT_EQ(alone.type, "DMA");
  ASSERT_OK_AND_ASSIGN(const PciDeviceInfo alone_info, inventory_.PciDevice(kEduAlone));
  EXPECT_EQ(alone_info.dma_requester_id, std::optional<uint16_t>(0x0010));

  // Behind the conventional bridge: bridge and both edus in one group, DMA under 00:03.0's id.
  ASSERT_OK_AND_ASSIGN(const IommuGroupInfo shared, inventory_.Group(GroupOf(kEduBehindBridgeA)));
  EXPECT_THAT(shared.devices, ElementsAre(kBridge, kEduBehindBridgeA, kEduBehindBridgeB));
  ASSERT_OK_AND_ASSIGN(const PciDeviceInfo bridge, inventory_.PciDevice(kBridge));
  EXPECT_TRUE(bridge.IsBridge());
  for (const char* name : {kEduBehindBridgeA, kEduBehindBridgeB}) {
    ASSERT_OK_AND_ASSIGN(const PciDeviceInfo edu, inventory_.PciDevice(name));
    EXPECT_EQ(edu.dma_requester_id, std::optional<uint16_t>(0x0018)) << name;
    EXPECT_NE(edu.address.RequesterId(), 0x0018) << name;
  }

  // Behind the PCIe root port: port and edu in separate groups; the edu keeps its own id.
  const int port_group = GroupOf(kRootPort);
  const int edu_group = GroupOf(kEduBehindRootPort);
  EXPECT_GE(port_group, 0);
  EXPECT_GE(edu_group, 0);
  EXPECT_NE(port_group, edu_group);
  ASSERT_OK_AND_ASSIGN(const IommuGroupInfo behind_port, inventory_.Group(edu_group));
  EXPECT_THAT(behind_port.devices, ElementsAre(kEduBehindRootPort));
  ASSERT_OK_AND_ASSIGN(const PciDeviceInfo port, inventory_.PciDevice(kRootPort));
  EXPECT_EQ(port.driver, "pcieport");
  ASSERT_OK_AND_ASSIGN(const PciDeviceInfo edu_behind_port, inventory_.PciDevice(kEduBehindRootPort));
  EXPECT_EQ(edu_behind_port.dma_requester_id, std::optional<uint16_t>(0x0200));
}

TEST_F(HostVfioVmTest, ReservedRegionsOfGroups) {
  // An endpoint's group: only the interrupt (MSI) window.
  ASSERT_OK_AND_ASSIGN(const IommuGroupInfo group, inventory_.Group(GroupOf(kEduAlone)));
  EXPECT_THAT(group.reserved_regions, ElementsAre(ReservedRegion{0xfee00000, 0xfeefffff, "msi"}));
  // The ICH9 group holds an ISA bridge: Intel's driver adds the low 16 MiB as direct-relaxable
  // (legacy floppy DMA), which VFIO does not exclude from the usable IOVA space.
  ASSERT_OK_AND_ASSIGN(const IommuGroupInfo ich9, inventory_.Group(GroupOf(kIch9Isa)));
  EXPECT_THAT(ich9.reserved_regions, Contains(ReservedRegion{0x0, 0xffffff, "direct-relaxable"}));
  EXPECT_THAT(ich9.reserved_regions, Contains(ReservedRegion{0xfee00000, 0xfeefffff, "msi"}));
}

TEST_F(HostVfioVmTest, BindToVfioAndRestore) {
  ASSERT_OK_AND_ASSIGN(const DriverBinding binding, binder_.BindToVfio(kEduAlone));
  bindings_.push_back(binding);
  EXPECT_TRUE(binding.changed);
  EXPECT_EQ(binding.previous_driver, "");
  ASSERT_OK_AND_ASSIGN(const PciDeviceInfo bound, inventory_.PciDevice(kEduAlone));
  EXPECT_EQ(bound.driver, "vfio-pci");
  EXPECT_TRUE(SysfsPathExists(absl::StrCat("/dev/vfio/", GroupOf(kEduAlone))));

  // Binding again is a no-op that restores nothing.
  ASSERT_OK_AND_ASSIGN(const DriverBinding again, binder_.BindToVfio(kEduAlone));
  EXPECT_FALSE(again.changed);

  ASSERT_OK(binder_.Restore(binding));
  bindings_.clear();
  ASSERT_OK_AND_ASSIGN(const PciDeviceInfo restored, inventory_.PciDevice(kEduAlone));
  EXPECT_EQ(restored.driver, "");
  EXPECT_EQ(restored.driver_override, "");
  // Without vfio-pci the group has no VFIO node.
  EXPECT_ERROR(VfioGroup::Open(GroupOf(kEduAlone)), kNotFound, "GROUP_NOT_FOUND");
}

TEST_F(HostVfioVmTest, BindTakesOnlyReplaceableDriversAndRestoresThem) {
  BindToPciStub(kEduAlone);
  EXPECT_ERROR(binder_.BindToVfio(kEduAlone), kFailedPrecondition, "DRIVER_UNSAFE");
  EXPECT_ERROR(binder_.BindToVfio(kBridge), kFailedPrecondition, "DEVICE_NOT_BINDABLE");
  EXPECT_ERROR(binder_.BindToVfio("0000:00:1e.7"), kNotFound, "DEVICE_NOT_FOUND");

  BindOptions options;
  options.replaceable_drivers = {"pci-stub"};
  ASSERT_OK_AND_ASSIGN(const DriverBinding binding, binder_.BindToVfio(kEduAlone, options));
  bindings_.push_back(binding);
  EXPECT_EQ(binding.previous_driver, "pci-stub");
  ASSERT_OK_AND_ASSIGN(const PciDeviceInfo bound, inventory_.PciDevice(kEduAlone));
  EXPECT_EQ(bound.driver, "vfio-pci");

  ASSERT_OK(binder_.Restore(binding));
  bindings_.clear();
  ASSERT_OK_AND_ASSIGN(const PciDeviceInfo restored, inventory_.PciDevice(kEduAlone));
  EXPECT_EQ(restored.driver, "pci-stub");
  EXPECT_EQ(restored.driver_override, "pci-stub");
}

TEST_F(HostVfioVmTest, GroupBindIsAllOrNothing) {
  // One edu of the shared group held by another driver: nothing of the group is touched.
  BindToPciStub(kEduBehindBridgeB);
  const int group_id = GroupOf(kEduBehindBridgeA);
  EXPECT_ERROR(binder_.BindGroupToVfio(group_id), kFailedPrecondition, "DRIVER_UNSAFE");
  ASSERT_OK_AND_ASSIGN(const PciDeviceInfo untouched, inventory_.PciDevice(kEduBehindBridgeA));
  EXPECT_EQ(untouched.driver, "");


  // Without the stub the whole group binds: both edus, the bridge left alone.
  ASSERT_OK(WriteSysfsAttribute("/sys/bus/pci/drivers/pci-stub/unbind", kEduBehindBridgeB));
  ASSERT_OK(WriteSysfsAttribute(absl::StrCat("/sys/bus/pci/devices/", kEduBehindBridgeB,
                                             "/driver_override"), "\n"));
  stubbed_.clear();
  ASSERT_OK_AND_ASSIGN(bindings_, binder_.BindGroupToVfio(group_id));
  ASSERT_EQ(bindings_.size(), 2u);
  for (const char* name : {kEduBehindBridgeA, kEduBehindBridgeB}) {
    ASSERT_OK_AND_ASSIGN(const PciDeviceInfo edu, inventory_.PciDevice(name));
    EXPECT_EQ(edu.driver, "vfio-pci") << name;
  }
  ASSERT_OK_AND_ASSIGN(const PciDeviceInfo bridge, inventory_.PciDevice(kBridge));
  EXPECT_EQ(bridge.driver, "");
}

TEST_F(HostVfioVmTest, GroupWithADeviceOnAKernelDmaDriverIsNotViable) {
  ASSERT_OK_AND_ASSIGN(const PciDeviceInfo sata, inventory_.PciDevice(kIch9Sata));
  ASSERT_EQ(sata.driver, "ahci");
  const int group_id = GroupOf(kIch9Smbus);
  ASSERT_EQ(GroupOf(kIch9Sata), group_id);
  EXPECT_ERROR(binder_.BindGroupToVfio(group_id), kFailedPrecondition, "DRIVER_UNSAFE");

  // vfio-pci on one function creates /dev/vfio/N, but ahci still owns DMA of the group.
  ASSERT_OK_AND_ASSIGN(const DriverBinding smbus, binder_.BindToVfio(kIch9Smbus));
  bindings_.push_back(smbus);
  EXPECT_ERROR(VfioGroup::Open(group_id), kFailedPrecondition, "GROUP_NOT_VIABLE");
}

TEST_F(HostVfioVmTest, ContainerIsType1v2AndReportsIovaRanges) {
  {
    // A container without a group has no IOMMU to describe.
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<VfioContainer> empty, VfioContainer::Open());
    EXPECT_EQ(ErrorReason(empty->Info().status()), "IOMMU_INFO_FAILED");
  }
  ASSERT_NO_FATAL_FAILURE(OpenGroupOf(kEduAlone));
  ASSERT_OK_AND_ASSIGN(const bool attached, groups_[0]->HasContainer());
  EXPECT_TRUE(attached);
  EXPECT_ERROR(VfioGroup::Open(groups_[0]->id()), kUnavailable, "GROUP_BUSY");

  ASSERT_OK_AND_ASSIGN(const DmaDomainInfo info, container_->Info());
  EXPECT_TRUE(info.page_sizes & kPage) << std::hex << info.page_sizes;
  ASSERT_FALSE(info.iova_ranges.empty());
  bool covers_buffers = false;
  for (const IovaRange& range : info.iova_ranges) {
    if (range.start <= kIovaA && kIovaB + kPage - 1 <= range.end) covers_buffers = true;
    // The MSI window is reserved and must not be usable IOVA.
    EXPECT_TRUE(range.end < 0xfee00000 || range.start > 0xfeefffff)
        << std::hex << range.start << "-" << range.end;
  }
  EXPECT_TRUE(covers_buffers);
  EXPECT_GE(info.iova_ranges.size(), 2u) << "the MSI window should split the IOVA space";

  // Mapping inside the MSI window is refused by the kernel.
  MemfdPages page;
  ASSERT_TRUE(page.ok());
  EXPECT_ERROR(container_->Map(0xfee00000, page.data(), kPage, kDmaReadWrite), kInvalidArgument,
               "DMA_MAP_FAILED");
  // So are an unaligned IOVA and a second mapping over an existing one.
  EXPECT_ERROR(container_->Map(kIovaA + 8, page.data(), kPage, kDmaReadWrite), kInvalidArgument,
               "DMA_MAP_FAILED");
  ASSERT_OK(container_->Map(kIovaA, page.data(), kPage, kDmaReadWrite));
  EXPECT_ERROR(container_->Map(kIovaA, page.data(), kPage, kDmaReadWrite), kAlreadyExists,
               "DMA_MAP_FAILED");
  ASSERT_OK_AND_ASSIGN(const uint64_t unmapped, container_->Unmap(kIovaA, kPage));
  EXPECT_EQ(unmapped, kPage);
}

TEST_F(HostVfioVmTest, DmaFromDeviceLandsInTheMappedMemfd) {
  ASSERT_NO_FATAL_FAILURE(OpenGroupOf(kEduAlone));
  EduDevice* edu = OpenEdu(kEduAlone);
  ASSERT_NE(edu, nullptr);
  MemfdPages a, b;
  ASSERT_TRUE(a.ok() && b.ok());
  const std::string pattern = Pattern(kCount, 3);
  std::memcpy(a.data(), pattern.data(), kCount);
  b.Fill(0);
  ASSERT_OK(container_->Map(kIovaA, a.data(), kPage, kDmaRead));
  ASSERT_OK(container_->Map(kIovaB, b.data(), kPage, kDmaReadWrite));

  ASSERT_OK(edu->CopyToDevice(kIovaA, kCount));
  ASSERT_OK(edu->CopyFromDevice(kIovaB, kCount));
  EXPECT_EQ(b.ReadFile(kCount), pattern);

  ASSERT_OK_AND_ASSIGN(const uint64_t unmapped, container_->Unmap(kIovaB, kPage));
  EXPECT_EQ(unmapped, kPage);
  ASSERT_OK_AND_ASSIGN(const uint64_t unmapped_a, container_->Unmap(kIovaA, kPage));
  EXPECT_EQ(unmapped_a, kPage);
}

TEST_F(HostVfioVmTest, DmaAfterUnmapFaultsAndLeavesMemoryUntouched) {
  ASSERT_NO_FATAL_FAILURE(OpenGroupOf(kEduAlone));
  EduDevice* edu = OpenEdu(kEduAlone);
  ASSERT_NE(edu, nullptr);
  MemfdPages a, b;
  ASSERT_TRUE(a.ok() && b.ok());
  const std::string pattern = Pattern(kCount, 11);
  std::memcpy(a.data(), pattern.data(), kCount);
  b.Fill(0);
  ASSERT_OK(container_->Map(kIovaA, a.data(), kPage, kDmaRead));
  ASSERT_OK(container_->Map(kIovaB, b.data(), kPage, kDmaReadWrite));
  ASSERT_OK(edu->CopyToDevice(kIovaA, kCount));
  ASSERT_OK(edu->CopyFromDevice(kIovaB, kCount));
  ASSERT_EQ(b.ReadFile(kCount), pattern) << "the mapped DMA must work before the unmap counts";

  ASSERT_OK(container_->Unmap(kIovaB, kPage));
  b.Fill(0x5a);
  KernelLog log;
  ASSERT_TRUE(log.ok());
  ASSERT_OK(edu->CopyFromDevice(kIovaB, kCount));
  EXPECT_EQ(b.ReadFile(kCount), std::string(kCount, '\x5a')) << "DMA reached unmapped memory";
  const std::string fault =
      log.WaitFor({"DMAR", "[00:02.0]", "fault addr 0x200000"}, absl::Seconds(5));
  EXPECT_FALSE(fault.empty()) << "no DMAR fault logged; kernel log since the DMA:\n" << log.seen();
}

TEST_F(HostVfioVmTest, ReadOnlyMappingRefusesDeviceWrites) {
  ASSERT_NO_FATAL_FAILURE(OpenGroupOf(kEduBehindRootPort));
  EduDevice* edu = OpenEdu(kEduBehindRootPort);
  ASSERT_NE(edu, nullptr);
  MemfdPages a, b;
  ASSERT_TRUE(a.ok() && b.ok());
  const std::string pattern = Pattern(kCount, 5);
  std::memcpy(a.data(), pattern.data(), kCount);
  b.Fill(0x33);
  ASSERT_OK(container_->Map(kIovaA, a.data(), kPage, kDmaRead));
  ASSERT_OK(container_->Map(kIovaB, b.data(), kPage, kDmaRead));
  KernelLog log;
  ASSERT_TRUE(log.ok());
  ASSERT_OK(edu->CopyToDevice(kIovaA, kCount));  // reading a read-only mapping works
  ASSERT_OK(edu->CopyFromDevice(kIovaB, kCount));
  EXPECT_EQ(b.ReadFile(kCount), std::string(kCount, '\x33')) << "the device wrote read-only memory";
  const std::string fault =
      log.WaitFor({"DMAR", "[02:00.0]", "fault addr 0x200000"}, absl::Seconds(5));
  EXPECT_FALSE(fault.empty()) << "no DMAR fault logged; kernel log since the DMA:\n" << log.seen();
  // The read did happen: the device's buffer holds the pattern (copied out to a writable page).
  MemfdPages c;
  ASSERT_TRUE(c.ok());
  c.Fill(0);
  ASSERT_OK(container_->Map(0x300000, c.data(), kPage, kDmaWrite));
  ASSERT_OK(edu->CopyFromDevice(0x300000, kCount));
  EXPECT_EQ(c.ReadFile(kCount), pattern);
}

// The VMM side of VmmGetsItsDeviceFdAndGivesItsMemoryOverAUnixSocket, in a child process that
// keeps nothing of its parent but the socket. Returns the child's exit code: 0 when the device's
// DMA, programmed through the received device fd, landed in the child's own memory.
int RunVmm(int socket) {
  // Close every inherited descriptor except stdio and the socket.
  absl::StatusOr<std::vector<std::string>> fds = ListSysfsDirectory("/proc/self/fd");
  if (!fds.ok()) return 10;
  for (const std::string& name : *fds) {
    const int fd = std::atoi(name.c_str());
    if (fd > 2 && fd != socket) ::close(fd);
  }
  MemfdPages source, destination;
  if (!source.ok() || !destination.ok()) return 11;
  const std::string pattern = Pattern(kCount, 77);
  std::memcpy(source.data(), pattern.data(), kCount);
  destination.Fill(0);
  // Guest memory to the control plane, which maps it for DMA.
  if (!SendFds(socket, "memory", {source.fd(), destination.fd()}).ok()) return 12;
  // The device fd back.
  absl::StatusOr<ReceivedFds> received = ReceiveFds(socket);
  if (!received.ok() || received->payload != "device" || received->fds.size() != 1) return 13;
  VfioDevice device(kEduAlone, std::move(received->fds[0]));
  absl::StatusOr<std::unique_ptr<EduDevice>> edu = EduDevice::Open(device);
  if (!edu.ok()) return 14;
  if (!(*edu)->CopyToDevice(kIovaA, kCount).ok()) return 15;
  if (!(*edu)->CopyFromDevice(kIovaB, kCount).ok()) return 16;
  if (std::memcmp(destination.data(), pattern.data(), kCount) != 0) return 17;
  return SendFds(socket, "done", {}).ok() ? 0 : 18;
}

TEST_F(HostVfioVmTest, VmmGetsItsDeviceFdAndGivesItsMemoryOverAUnixSocket) {
  ASSERT_NO_FATAL_FAILURE(OpenGroupOf(kEduAlone));
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd ours(sv[0]), theirs(sv[1]);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(RunVmm(theirs.get()));
  theirs.Reset();

  // The VMM's memory, mapped into the container at the IOVAs its device will use.
  ASSERT_OK_AND_ASSIGN(ReceivedFds memory, ReceiveFds(ours.get()));
  ASSERT_EQ(memory.payload, "memory");
  ASSERT_EQ(memory.fds.size(), 2u);
  void* source = ::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, memory.fds[0].get(), 0);
  void* destination =
      ::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, memory.fds[1].get(), 0);
  ASSERT_NE(source, MAP_FAILED);
  ASSERT_NE(destination, MAP_FAILED);
  EXPECT_OK(container_->Map(kIovaA, source, kPage, kDmaRead));
  EXPECT_OK(container_->Map(kIovaB, destination, kPage, kDmaWrite));

  // Its device, as an fd; the group (and so the device's DMA ownership) stays with us.
  ASSERT_OK_AND_ASSIGN(UniqueFd device, groups_[0]->GetDeviceFd(kEduAlone));
  EXPECT_OK(SendFds(ours.get(), "device", {device.get()}));
  device.Reset();

  absl::StatusOr<ReceivedFds> done = ReceiveFds(ours.get());
  int status = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  pid_t waited = 0;
  while ((waited = ::waitpid(child, &status, WNOHANG)) == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  if (waited == 0) {
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
    ADD_FAILURE() << "the VMM process did not finish";
  }
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the VMM process failed at step " << WEXITSTATUS(status);
  ASSERT_OK(done);
  EXPECT_EQ(done->payload, "done");
  // What the device wrote is in the VMM's memfd, seen through our mapping too.
  EXPECT_EQ(std::memcmp(destination, static_cast<const char*>(source), kCount), 0);
  ASSERT_OK(container_->Unmap(kIovaA, kPage));
  ASSERT_OK(container_->Unmap(kIovaB, kPage));
  ::munmap(source, kPage);
  ::munmap(destination, kPage);
}

TEST_F(HostVfioVmTest, SharedRequesterIdGroupServesBothEdusInOneContainer) {
  ASSERT_NO_FATAL_FAILURE(OpenGroupOf(kEduBehindBridgeA));
  ASSERT_EQ(groups_.size(), 1u);
  EduDevice* first = OpenEdu(kEduBehindBridgeA);
  EduDevice* second = OpenEdu(kEduBehindBridgeB);
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  // Also the edu alone in the same container: two groups, one address space.
  ASSERT_NO_FATAL_FAILURE(OpenGroupOf(kEduAlone));
  EduDevice* third = OpenEdu(kEduAlone);
  ASSERT_NE(third, nullptr);

  MemfdPages source, out1, out2, out3;
  ASSERT_TRUE(source.ok() && out1.ok() && out2.ok() && out3.ok());
  const std::string pattern = Pattern(kCount, 42);
  std::memcpy(source.data(), pattern.data(), kCount);
  out1.Fill(0);
  out2.Fill(0);
  out3.Fill(0);
  ASSERT_OK(container_->Map(kIovaA, source.data(), kPage, kDmaRead));
  ASSERT_OK(container_->Map(0x300000, out1.data(), kPage, kDmaWrite));
  ASSERT_OK(container_->Map(0x400000, out2.data(), kPage, kDmaWrite));
  ASSERT_OK(container_->Map(0x500000, out3.data(), kPage, kDmaWrite));

  int index = 0;
  for (EduDevice* edu : {first, second, third}) {
    ASSERT_OK(edu->CopyToDevice(kIovaA, kCount));
    ASSERT_OK(edu->CopyFromDevice(0x300000 + 0x100000 * index, kCount));
    ++index;
  }
  EXPECT_EQ(out1.ReadFile(kCount), pattern);
  EXPECT_EQ(out2.ReadFile(kCount), pattern);
  EXPECT_EQ(out3.ReadFile(kCount), pattern);

  // A group with an open device fd cannot leave its container; once the fds are closed it can.
  EXPECT_ERROR(container_->Detach(*groups_[0]), kUnavailable, "GROUP_UNSET_CONTAINER_FAILED");
  edus_.clear();
  devices_.clear();
  for (const auto& group : groups_) {
    ASSERT_OK(container_->Detach(*group));
    ASSERT_OK_AND_ASSIGN(const bool attached, group->HasContainer());
    EXPECT_FALSE(attached);
  }
  // The last group gone, the container has no IOMMU (and no mappings) left; a group attached again
  // gets a fresh one.
  EXPECT_EQ(ErrorReason(container_->Info().status()), "IOMMU_INFO_FAILED");
  ASSERT_OK(container_->Attach(*groups_[0]));
  EXPECT_OK(container_->Info());
  ASSERT_OK_AND_ASSIGN(const uint64_t gone, container_->Unmap(kIovaA, kPage));
  EXPECT_EQ(gone, 0u) << "a mapping survived the teardown of the container's IOMMU";
  // Closing a group's fd (no Detach) takes it out of the container as well; the next group
  // attached sets the IOMMU up again.
  groups_.erase(groups_.begin());
  EXPECT_EQ(ErrorReason(container_->Info().status()), "IOMMU_INFO_FAILED");
  ASSERT_OK(container_->Attach(*groups_[0]));
  EXPECT_OK(container_->Info());
}

// The libvirt way: the control plane binds the group to vfio-pci and gives /dev/vfio/N to the VMM's
// uid; Debian's QEMU, run as that uid, opens VFIO itself. While it holds the group, taking it back
// is refused; once QEMU is gone, the group goes back to how it was.
TEST_F(HostVfioVmTest, VmmOpensTheGroupHandedToItsUidAndTakeBackWaitsForIt) {
  ASSERT_EQ(::access(kQemu, X_OK), 0) << kQemu << " is needed in the build machine's root";
  const int group_id = GroupOf(kEduAlone);
  ASSERT_GE(group_id, 0);
  const std::string node = absl::StrCat("/dev/vfio/", group_id);
  ASSERT_OK_AND_ASSIGN(const HandoverRecord record,
                       handover_.HandOver(group_id, kVmmUid, kVmmGid));
  handovers_.push_back(record);
  ASSERT_EQ(record.bindings.size(), 1u);
  EXPECT_EQ(record.bindings[0].device, kEduAlone);
  EXPECT_EQ(record.bindings[0].previous_driver, "");
  EXPECT_TRUE(record.bindings[0].changed);
  // The kernel creates the node root-owned, 0600.
  EXPECT_EQ(record.previous_node_uid, 0u);
  EXPECT_EQ(record.previous_node_gid, 0u);
  EXPECT_EQ(record.previous_node_mode, 0600u);
  const struct stat handed = NodeStat(group_id);
  EXPECT_TRUE(S_ISCHR(handed.st_mode));
  EXPECT_EQ(handed.st_uid, kVmmUid);
  EXPECT_EQ(handed.st_gid, kVmmGid);
  EXPECT_EQ(handed.st_mode & 07777, 0660u);
  ASSERT_OK_AND_ASSIGN(const PciDeviceInfo bound, inventory_.PciDevice(kEduAlone));
  EXPECT_EQ(bound.driver, "vfio-pci");
  ASSERT_OK_AND_ASSIGN(const std::vector<GroupHolder> before, handover_.GroupHolders(group_id));
  EXPECT_TRUE(before.empty()) << "the group is held before any VMM runs";

  const std::string log = "/tmp/vmm-handed-over.log";
  const pid_t qemu = StartVmm(kEduAlone, log);
  ASSERT_GT(qemu, 0) << "fork: " << std::strerror(errno);
  // QEMU opens the group while it realizes its vfio-pci device (group, container, its RAM mapped
  // and pinned, then the device fd), then waits paused (-S). Wait for the device fd: the last step.
  std::vector<GroupHolder> holders;
  const absl::Time deadline = absl::Now() + kVmmTimeout;
  while (true) {
    ASSERT_OK_AND_ASSIGN(holders, handover_.GroupHolders(group_id));
    if (!holders.empty() && HasFdTo(qemu, "anon_inode:[vfio-device]")) break;
    int status = 0;
    if (WaitForExit(qemu, absl::ZeroDuration(), &status)) {
      FAIL() << "QEMU (uid " << kVmmUid << ") ended with " << DescribeExit(status)
             << " before its vfio-pci device was set up (" << node
             << " opened, RAM pinned, device fd); its output:\n" << ReadWholeFile(log);
    }
    ASSERT_LT(absl::Now(), deadline) << "QEMU did not open " << node << " and its device within "
                                     << kVmmTimeout << "; its output:\n" << ReadWholeFile(log);
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ(holders.size(), 1u);
  EXPECT_EQ(holders[0].pid, qemu);
  EXPECT_EQ(holders[0].uid, kVmmUid);
  EXPECT_EQ(holders[0].comm, "qemu-system-x86");  // comm keeps 15 characters
  EXPECT_FALSE(holders[0].fds.empty());
  // VFIO pinned the VMM's 64 MiB of RAM, accounted as locked memory (what RLIMIT_MEMLOCK limits).
  EXPECT_GE(StatusKib(qemu, "VmLck"), 64 * 1024);

  // The group is the VMM's: taking it back is refused and changes nothing.
  const absl::Status refused = handover_.TakeBack(record);
  EXPECT_ERROR(refused, kFailedPrecondition, "GROUP_STILL_OPEN");
  EXPECT_EQ(GetErrorMetadata(refused)["pids"], absl::StrCat(qemu));
  const struct stat still = NodeStat(group_id);
  EXPECT_EQ(still.st_uid, kVmmUid);
  EXPECT_EQ(still.st_mode & 07777, 0660u);
  ASSERT_OK_AND_ASSIGN(const PciDeviceInfo kept, inventory_.PciDevice(kEduAlone));
  EXPECT_EQ(kept.driver, "vfio-pci");
  int status = 0;
  EXPECT_FALSE(WaitForExit(qemu, absl::ZeroDuration(), &status))
      << "QEMU ended (" << DescribeExit(status) << ") while its group was being taken back:\n"
      << ReadWholeFile(log);

  KillVmm(qemu);
  ASSERT_OK_AND_ASSIGN(const std::vector<GroupHolder> after, handover_.GroupHolders(group_id));
  EXPECT_TRUE(after.empty()) << "the group is still held after its VMM ended";
  ASSERT_OK(handover_.TakeBack(record));
  handovers_.clear();
  // The drivers are as before (none), and the node went with vfio-pci.
  ASSERT_OK_AND_ASSIGN(const PciDeviceInfo restored, inventory_.PciDevice(kEduAlone));
  EXPECT_EQ(restored.driver, "");
  EXPECT_EQ(restored.driver_override, "");
  EXPECT_FALSE(SysfsPathExists(node));
}

// A group that stays on vfio-pci (bound before the hand-over) keeps its node: taking it back gives
// the node to root, 0600, again, and leaves the driver as it was.
TEST_F(HostVfioVmTest, TakeBackGivesTheNodeBackToRoot) {
  const int group_id = GroupOf(kEduAlone);
  ASSERT_GE(group_id, 0);
  ASSERT_OK_AND_ASSIGN(std::vector<DriverBinding> bindings, binder_.BindGroupToVfio(group_id));
  bindings_ = bindings;
  ASSERT_OK_AND_ASSIGN(const HandoverRecord record,
                       handover_.HandOver(group_id, kVmmUid, kVmmGid));
  handovers_.push_back(record);
  ASSERT_EQ(record.bindings.size(), 1u);
  EXPECT_FALSE(record.bindings[0].changed);
  EXPECT_EQ(NodeStat(group_id).st_uid, kVmmUid);
  EXPECT_EQ(NodeStat(group_id).st_mode & 07777, 0660u);
  // A second hand-over of the same group is refused and leaves the first in place.
  EXPECT_ERROR(handover_.HandOver(group_id, kVmmUid + 1, kVmmGid + 1), kFailedPrecondition,
               "GROUP_ALREADY_HANDED_OVER");
  EXPECT_EQ(NodeStat(group_id).st_uid, kVmmUid);

  ASSERT_OK(handover_.TakeBack(record));
  handovers_.clear();
  const struct stat back = NodeStat(group_id);
  EXPECT_EQ(back.st_uid, 0u);
  EXPECT_EQ(back.st_gid, 0u);
  EXPECT_EQ(back.st_mode & 07777, 0600u);
  ASSERT_OK_AND_ASSIGN(const PciDeviceInfo still, inventory_.PciDevice(kEduAlone));
  EXPECT_EQ(still.driver, "vfio-pci");
}

// The same uid's QEMU given a group that was not handed over (vfio-pci bound, node root 0600)
// cannot open it: it exits with an error and never holds the group.
TEST_F(HostVfioVmTest, VmmCannotOpenAGroupNotHandedToIt) {
  ASSERT_EQ(::access(kQemu, X_OK), 0) << kQemu << " is needed in the build machine's root";
  const int group_id = GroupOf(kEduBehindRootPort);
  ASSERT_GE(group_id, 0);
  ASSERT_OK_AND_ASSIGN(std::vector<DriverBinding> bindings, binder_.BindGroupToVfio(group_id));
  bindings_ = bindings;
  const std::string node = absl::StrCat("/dev/vfio/", group_id);
  const struct stat st = NodeStat(group_id);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0600u);

  const std::string log = "/tmp/vmm-not-handed-over.log";
  const pid_t qemu = StartVmm(kEduBehindRootPort, log);
  ASSERT_GT(qemu, 0) << "fork: " << std::strerror(errno);
  int status = 0;
  bool exited = false;
  const absl::Time deadline = absl::Now() + kVmmTimeout;
  while (!(exited = WaitForExit(qemu, absl::ZeroDuration(), &status)) && absl::Now() < deadline) {
    ASSERT_OK_AND_ASSIGN(const std::vector<GroupHolder> holders, handover_.GroupHolders(group_id));
    ASSERT_TRUE(holders.empty()) << "pid " << holders[0].pid << " (uid " << holders[0].uid
                                 << ") holds " << node << ", which was not handed over";
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(exited) << "QEMU did not give up within " << kVmmTimeout << "; its output:\n"
                      << ReadWholeFile(log);
  const std::string output = ReadWholeFile(log);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) < 120)
      << "QEMU ended with " << DescribeExit(status) << " (120-127: the test's child setup failed)";
  // QEMU 7.2: "vfio 0000:02:00.0: failed to open /dev/vfio/N: Permission denied".
  EXPECT_THAT(output, ::testing::HasSubstr(absl::StrCat("failed to open ", node)));
  EXPECT_THAT(output, ::testing::HasSubstr("Permission denied"));
  ASSERT_OK_AND_ASSIGN(const std::vector<GroupHolder> holders, handover_.GroupHolders(group_id));
  EXPECT_TRUE(holders.empty());
}

}  // namespace
}  // namespace test
}  // namespace host
}  // namespace iommud

// iommud `--backend=linux` end to end, through its API only: run only inside the VM that
// tests/host/run.sh boots (Debian's kernel, QEMU's intel-iommu, edu devices), as root.
//
// One daemon serves every scenario (started in SetUpTestSuite from $IOMMUD_BIN, run.sh puts the
// build's iommud next to this binary). The test makes no VFIO call itself except on the device
// fds iommud hands over (mapping BAR0 to drive the edu's DMA); it sets up conflicting drivers
// through sysfs where a scenario needs one. After every scenario: iommud's audit is clean, every
// PCI device has the driver it had before, no /dev/vfio group node is left, no fd leaked.
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clients/cpp/fd_channel_client.h"
#include "clients/cpp/iommud_client.h"
#include "core/error.h"
#include "core/host/sysfs_inventory.h"
#include "core/host/sysfs_io.h"
#include "core/host/unique_fd.h"
#include "core/host/vfio_device.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/host/edu_device.h"
#include "tests/host/vm_daemon.h"
#include "tests/host/vm_scenario_support.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace host {
namespace test {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;


constexpr char kStateDir[] = "/tmp/iommud-api";
constexpr char kSocket[] = "/tmp/iommud-api/iommud.sock";
constexpr char kFdSocket[] = "/tmp/iommud-api/iommud.sock.fds";
constexpr char kOwner[] = "vmm-1";
constexpr char kOtherOwner[] = "vmm-2";


pid_t daemon_pid = -1;

class HostApiVmTest : public ::testing::Test {
 protected:
  // Starts iommud --backend=linux and waits until it serves.
  static void SetUpTestSuite() {
    const char* binary = std::getenv("IOMMUD_BIN");
    ASSERT_NE(binary, nullptr) << "IOMMUD_BIN must name the iommud binary (run.sh sets it)";
    absl::StatusOr<pid_t> pid = StartVmDaemon(binary, kStateDir, {"--allow_fault_injection"});
    ASSERT_OK(pid);
    daemon_pid = *pid;
  }

  // Stops the daemon (SIGTERM): it must exit 0 and give the host back.
  static void TearDownTestSuite() {
    if (daemon_pid <= 0) return;
    EXPECT_OK(StopVmDaemon(daemon_pid, kStateDir));
    daemon_pid = -1;
  }

  void SetUp() override {
    ASSERT_GT(daemon_pid, 0) << "no daemon (see the suite's set-up failure)";
    fds_before_ = CountOpenFds();
    drivers_before_ = DriverSnapshot(inventory_);
    ClientOptions options;
    options.target = absl::StrCat("unix:", kSocket);
    ASSERT_OK_AND_ASSIGN(client_, IommuClient::Connect(options));
    ASSERT_OK_AND_ASSIGN(fds_, FdChannelClient::Connect(kFdSocket));
  }

  void TearDown() override {
    edus_.clear();
    devices_.clear();
    for (const std::string& device : stubbed_) {
      EXPECT_OK(WriteSysfsAttribute("/sys/bus/pci/drivers/pci-stub/unbind", device));
      EXPECT_OK(WriteSysfsAttribute(
          absl::StrCat("/sys/bus/pci/devices/", device, "/driver_override"), "\n"));
    }
    stubbed_.clear();
    if (client_ != nullptr) {
      absl::StatusOr<iommu::v1::AuditResponse> audit = client_->Audit(iommu::v1::AuditRequest());
      ASSERT_OK(audit);
      EXPECT_EQ(audit->leaks_size(), 0) << audit->DebugString();
    }
    fds_.reset();
    client_.reset();
    EXPECT_EQ(CountOpenFds(), fds_before_) << "file descriptors leaked";
    EXPECT_EQ(DriverSnapshot(inventory_), drivers_before_) << "drivers or driver_override changed";
    absl::StatusOr<std::vector<std::string>> vfio = ListSysfsDirectory("/dev/vfio");
    ASSERT_OK(vfio);
    EXPECT_THAT(*vfio, ElementsAre("vfio")) << "a /dev/vfio group node outlived its owner";
  }

  absl::StatusOr<iommu::v1::Device> Device(const std::string& name) {
    iommu::v1::GetDeviceRequest request;
    request.set_device(name);
    return client_->GetDevice(request);
  }

  absl::StatusOr<iommu::v1::Group> Claim(uint64_t group, const std::string& owner) {
    iommu::v1::ClaimOwnershipRequest request;
    request.set_group_id(group);
    request.set_owner(owner);
    return client_->ClaimOwnership(request);
  }

  absl::StatusOr<iommu::v1::Group> Release(uint64_t group, const std::string& owner) {
    iommu::v1::ReleaseOwnershipRequest request;
    request.set_group_id(group);
    request.set_owner(owner);
    return client_->ReleaseOwnership(request);
  }

  // A user domain on the edu's unit with `group` attached.
  absl::StatusOr<uint64_t> AttachNewDomain(uint64_t group, const std::string& owner) {
    iommu::v1::AllocDomainRequest alloc;
    alloc.set_unit("dmar0");
    alloc.set_type(iommu::v1::DOMAIN_TYPE_UNMANAGED);
    alloc.set_owner(owner);
    absl::StatusOr<iommu::v1::Domain> domain = client_->AllocDomain(alloc);
    if (!domain.ok()) return domain.status();
    iommu::v1::AttachGroupRequest attach;
    attach.set_group_id(group);
    attach.set_domain_id(domain->id());
    attach.set_owner(owner);
    absl::StatusOr<iommu::v1::Group> attached = client_->AttachGroup(attach);
    if (!attached.ok()) return attached.status();
    return domain->id();
  }

  absl::Status Map(uint64_t domain, uint64_t iova, uint64_t region, uint64_t offset,
                   uint32_t prot) {
    iommu::v1::MapRequest request;
    request.set_domain_id(domain);
    request.set_iova(iova);
    request.set_region_id(region);
    request.set_region_offset(offset);
    request.set_size(kPage);
    request.set_prot(prot);
    request.set_owner(kOwner);
    return client_->Map(request).status();
  }

  absl::Status Unmap(uint64_t domain, uint64_t iova) {
    iommu::v1::UnmapRequest request;
    request.set_domain_id(domain);
    request.set_iova(iova);
    request.set_size(kPage);
    request.set_owner(kOwner);
    return client_->Unmap(request).status();
  }

  absl::Status Unregister(uint64_t region) {
    iommu::v1::UnregisterMemoryRequest request;
    request.set_region_id(region);
    request.set_owner(kOwner);
    return client_->UnregisterMemory(request).status();
  }

  absl::Status Free(uint64_t domain) {
    iommu::v1::FreeDomainRequest request;
    request.set_domain_id(domain);
    request.set_owner(kOwner);
    return client_->FreeDomain(request).status();
  }

  absl::Status Detach(uint64_t group, uint64_t domain) {
    iommu::v1::DetachGroupRequest request;
    request.set_group_id(group);
    request.set_domain_id(domain);
    request.set_owner(kOwner);
    return client_->DetachGroup(request).status();
  }

  // The edu `device` through the fd iommud hands its owner.
  EduDevice* OpenEdu(const std::string& device) {
    absl::StatusOr<UniqueFd> fd = fds_->OpenDevice(device, kOwner);
    EXPECT_OK(fd);
    if (!fd.ok()) return nullptr;
    devices_.push_back(std::make_unique<VfioDevice>(device, *std::move(fd)));
    absl::StatusOr<std::unique_ptr<EduDevice>> edu = EduDevice::Open(*devices_.back());
    EXPECT_OK(edu);
    if (!edu.ok()) return nullptr;
    edus_.push_back(*std::move(edu));
    return edus_.back().get();
  }

  // Closes the device fds (before a release: VFIO refuses to take a group with open device fds
  // out of its container).
  void CloseDevices() {
    edus_.clear();
    devices_.clear();
  }

  std::string DriverOf(const std::string& device) {
    absl::StatusOr<PciDeviceInfo> info = inventory_.PciDevice(device);
    return info.ok() ? info->driver : "<" + info.status().ToString() + ">";
  }

  void BindToPciStub(const std::string& device) {
    stubbed_.push_back(device);
    ASSERT_OK(WriteSysfsAttribute(absl::StrCat("/sys/bus/pci/devices/", device, "/driver_override"),
                                  "pci-stub"));
    ASSERT_OK(WriteSysfsAttribute("/sys/bus/pci/drivers_probe", device));
    ASSERT_EQ(DriverOf(device), "pci-stub");
  }

  // The kernel steps of one owner's whole life with the group of `edu`, each made to fail once in
  // turn (host.* fault points): the failed call reports the injected error, the group is exactly
  // as it was (owner, domain, drivers, mappings, and a DMA by `edu` that must or must not land),
  // and the same call then succeeds.
  void SweepKernelSteps(const std::string& edu) {
    ASSERT_OK_AND_ASSIGN(iommu::v1::Device info, Device(edu));
    const uint64_t group = info.group_id();
    MemfdPages memory(2);
    ASSERT_TRUE(memory.ok());
    const std::string pattern = Pattern(kCount, 13);
    std::memcpy(memory.data(0), pattern.data(), kCount);
    ASSERT_OK_AND_ASSIGN(iommu::v1::MemoryRegionRef region,
                         fds_->RegisterMemory(memory.fd(), memory.size(), kOwner));

    auto group_now = [&]() -> iommu::v1::Group {
      iommu::v1::GetGroupRequest get;
      get.set_group_id(group);
      absl::StatusOr<iommu::v1::Group> got = client_->GetGroup(get);
      EXPECT_OK(got);
      return got.ok() ? *got : iommu::v1::Group();
    };
    auto mappings_of = [&](uint64_t domain) -> int {
      iommu::v1::ListMappingsRequest list;
      list.set_domain_id(domain);
      absl::StatusOr<iommu::v1::ListMappingsResponse> got = client_->ListMappings(list);
      return got.ok() ? got->mappings_size() : -1;
    };
    // Whether the edu's device-to-RAM DMA at kIovaB lands in page 1 (through a device fd opened and
    // closed here, so that detach and release are not held up by it).
    auto dma_lands = [&]() -> bool {
      memory.Fill(0x5a, 1);
      EduDevice* device = OpenEdu(edu);
      if (device == nullptr) return false;
      EXPECT_OK(device->CopyToDevice(kIovaA, kCount));
      EXPECT_OK(device->CopyFromDevice(kIovaB, kCount));
      CloseDevices();
      return memory.ReadFile(kCount, 1) == pattern;
    };
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
      ASSERT_OK(client_->ClearFaults(iommu::v1::ClearFaultsRequest()).status());
    };

    // Claim: bind, then open the group.
    for (const char* point : {"host.bind", "host.open_group"}) {
      SCOPED_TRACE(point);
      inject(point);
      EXPECT_ERROR(Claim(group, kOwner), kUnavailable, "INJECTED_FAULT");
      injected_once();
      EXPECT_EQ(group_now().owner(), "");
      EXPECT_EQ(DriverOf(edu), "");
      absl::StatusOr<std::vector<std::string>> vfio = ListSysfsDirectory("/dev/vfio");
      ASSERT_OK(vfio);
      EXPECT_THAT(*vfio, ElementsAre("vfio"));
    }
    ASSERT_OK(Claim(group, kOwner));

    // Attach: set the container.
    iommu::v1::AllocDomainRequest alloc;
    alloc.set_unit("dmar0");
    alloc.set_type(iommu::v1::DOMAIN_TYPE_UNMANAGED);
    alloc.set_owner(kOwner);
    ASSERT_OK_AND_ASSIGN(iommu::v1::Domain domain, client_->AllocDomain(alloc));
    iommu::v1::AttachGroupRequest attach;
    attach.set_group_id(group);
    attach.set_domain_id(domain.id());
    attach.set_owner(kOwner);
    inject("host.set_container");
    EXPECT_ERROR(client_->AttachGroup(attach), kUnavailable, "INJECTED_FAULT");
    injected_once();
    EXPECT_EQ(group_now().domain_id(), group_now().blocking_domain_id());
    EXPECT_ERROR(fds_->OpenDevice(edu, kOwner), kFailedPrecondition,
                 "GROUP_NOT_ATTACHED");
    ASSERT_OK(client_->AttachGroup(attach));

    // Map: VFIO_IOMMU_MAP_DMA.
    ASSERT_OK(Map(domain.id(), kIovaA, region.id(), 0, iommu::v1::PROT_READ));
    inject("host.map_dma");
    EXPECT_ERROR(Map(domain.id(), kIovaB, region.id(), kPage,
                     iommu::v1::PROT_READ | iommu::v1::PROT_WRITE),
                 kUnavailable, "INJECTED_FAULT");
    injected_once();
    EXPECT_EQ(mappings_of(domain.id()), 1);
    EXPECT_FALSE(dma_lands()) << "DMA landed through a mapping whose map failed";
    ASSERT_OK(Map(domain.id(), kIovaB, region.id(), kPage, iommu::v1::PROT_READ | iommu::v1::PROT_WRITE));
    EXPECT_TRUE(dma_lands());

    // Unmap: VFIO_IOMMU_UNMAP_DMA.
    inject("host.unmap_dma");
    EXPECT_ERROR(Unmap(domain.id(), kIovaB), kUnavailable, "INJECTED_FAULT");
    injected_once();
    EXPECT_EQ(mappings_of(domain.id()), 2);
    EXPECT_TRUE(dma_lands()) << "a failed unmap took the mapping away";
    ASSERT_OK(Unmap(domain.id(), kIovaB));
    EXPECT_FALSE(dma_lands());

    // Detach: unset the container.
    inject("host.unset_container");
    EXPECT_ERROR(Detach(group, domain.id()), kUnavailable, "INJECTED_FAULT");
    injected_once();
    EXPECT_EQ(group_now().domain_id(), domain.id());
    ASSERT_OK(Detach(group, domain.id()));

    // Release: restoring the drivers. The registry retries a failed return to the default domain
    // once, so one failure is absorbed and the release completes.
    inject("host.restore");
    ASSERT_OK_AND_ASSIGN(iommu::v1::Group released, Release(group, kOwner));
    injected_once();
    EXPECT_EQ(released.owner(), "");
    EXPECT_EQ(DriverOf(edu), "");
    ASSERT_OK(Unmap(domain.id(), kIovaA));
    ASSERT_OK(Free(domain.id()));
    ASSERT_OK(Unregister(region.id()));
  }

  SysfsInventory inventory_;
  std::unique_ptr<IommuClient> client_;
  std::unique_ptr<FdChannelClient> fds_;
  std::vector<std::unique_ptr<VfioDevice>> devices_;
  std::vector<std::unique_ptr<EduDevice>> edus_;
  std::vector<std::string> stubbed_;
  int fds_before_ = 0;
  std::map<std::string, std::string> drivers_before_;
};

TEST_F(HostApiVmTest, InventoryIsTheHostsAndAGroupWithAKernelDriverCannotBeOwned) {
  ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::IommuUnit> units, client_->ListAllUnits());
  ASSERT_EQ(units.size(), 1u);
  EXPECT_EQ(units[0].name(), "dmar0");
  EXPECT_EQ(units[0].backend(), "linux");
  ASSERT_OK_AND_ASSIGN(iommu::v1::Device alone, Device(kEduAlone));
  EXPECT_EQ(alone.rid(), 0x10u);
  // The bridge's group: the bridge and both edus, which DMA with the bridge's requester id.
  ASSERT_OK_AND_ASSIGN(iommu::v1::Device behind, Device(kEduBehindBridgeA));
  EXPECT_THAT(behind.alias_rids(), ElementsAre(0x18u));
  iommu::v1::GetGroupRequest get;
  get.set_group_id(behind.group_id());
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group shared, client_->GetGroup(get));
  EXPECT_THAT(shared.devices(), UnorderedElementsAre(kBridge, kEduBehindBridgeA, kEduBehindBridgeB));
  EXPECT_NE(shared.id(), alone.group_id());
  // ahci holds the SATA function: its group is the kernel's, as the kernel says.
  ASSERT_OK_AND_ASSIGN(iommu::v1::Device sata, Device(kIch9Sata));
  EXPECT_ERROR(Claim(sata.group_id(), kOwner), kFailedPrecondition,
               "GROUP_IN_USE");
  EXPECT_EQ(DriverOf(kIch9Sata), "ahci");
}

TEST_F(HostApiVmTest, OwnerMapsItsMemfdAndTheDeviceDmasThroughIommudUntilUnmapped) {
  ASSERT_OK_AND_ASSIGN(iommu::v1::Device edu_info, Device(kEduAlone));
  const uint64_t group = edu_info.group_id();
  ASSERT_OK(Claim(group, kOwner));
  EXPECT_EQ(DriverOf(kEduAlone), "vfio-pci") << "a claim binds the group to vfio-pci";
  ASSERT_OK_AND_ASSIGN(const uint64_t domain, AttachNewDomain(group, kOwner));

  MemfdPages memory(2);
  ASSERT_TRUE(memory.ok());
  const std::string pattern = Pattern(kCount, 5);
  std::memcpy(memory.data(0), pattern.data(), kCount);
  memory.Fill(0, 1);
  ASSERT_OK_AND_ASSIGN(iommu::v1::MemoryRegionRef region, fds_->RegisterMemory(memory.fd(), memory.size(), kOwner));
  ASSERT_OK(Map(domain, kIovaA, region.id(), 0, iommu::v1::PROT_READ));
  ASSERT_OK(Map(domain, kIovaB, region.id(), kPage, iommu::v1::PROT_READ | iommu::v1::PROT_WRITE));

  EduDevice* edu = OpenEdu(kEduAlone);
  ASSERT_NE(edu, nullptr);
  ASSERT_OK(edu->CopyToDevice(kIovaA, kCount));
  ASSERT_OK(edu->CopyFromDevice(kIovaB, kCount));
  EXPECT_EQ(memory.ReadFile(kCount, 1), pattern) << "the device's DMA did not land in the memfd";

  // Unmapped: the same DMA faults in the IOMMU, the memory keeps its fill, iommud reports it.
  ASSERT_OK(Unmap(domain, kIovaB));
  memory.Fill(0x5a, 1);
  KernelLog log;
  ASSERT_OK(edu->CopyFromDevice(kIovaB, kCount));
  EXPECT_EQ(memory.ReadFile(kCount, 1), std::string(kCount, '\x5a')) << "DMA reached unmapped memory";
  EXPECT_FALSE(log.WaitFor({"DMAR", "[00:02.0]", "fault addr 0x200000"}, absl::Seconds(5)).empty());
  iommu::v1::ListTranslationFaultsRequest faults_request;
  ASSERT_OK_AND_ASSIGN(iommu::v1::ListTranslationFaultsResponse faults,
                       client_->ListTranslationFaults(faults_request));
  bool reported = false;
  for (const iommu::v1::FaultRecord& fault : faults.faults()) {
    reported = reported || (fault.rid() == 0x10u && fault.iova() == kIovaB);
  }
  EXPECT_TRUE(reported) << "iommud did not report the DMAR fault: " << faults.DebugString();

  // Release: the device fd first (VFIO holds the group while it is open), then the group.
  CloseDevices();
  ASSERT_OK(Unmap(domain, kIovaA));
  ASSERT_OK(Detach(group, domain));
  ASSERT_OK(Free(domain));
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group released, Release(group, kOwner));
  EXPECT_EQ(released.domain_id(), released.default_domain_id());
  EXPECT_EQ(DriverOf(kEduAlone), "") << "the edu's driver (none) is not restored";
  ASSERT_OK(Unregister(region.id()));
}

// The kernel's reserved regions of `device`'s IOMMU group ("START END TYPE" lines of
// /sys/kernel/iommu_groups/N/reserved_regions, END inclusive), independent of VFIO.
std::vector<std::pair<uint64_t, uint64_t>> KernelReservedRegions(const std::string& device) {
  std::vector<std::pair<uint64_t, uint64_t>> regions;
  absl::StatusOr<std::string> text = ReadSysfsAttribute(
      absl::StrCat("/sys/bus/pci/devices/", device, "/iommu_group/reserved_regions"));
  EXPECT_OK(text);
  if (!text.ok()) return regions;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    std::vector<std::string> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    uint64_t start = 0;
    uint64_t end = 0;
    if (words.size() >= 2 && absl::SimpleHexAtoi(words[0], &start) &&
        absl::SimpleHexAtoi(words[1], &end)) {
      regions.emplace_back(start, end);
    }
  }
  return regions;
}

TEST_F(HostApiVmTest, UnmapAllStopsDmaIovaRangesAreTheKernelsAndReplaceIsRefused) {
  ASSERT_OK_AND_ASSIGN(iommu::v1::Device edu_info, Device(kEduAlone));
  const uint64_t group = edu_info.group_id();
  ASSERT_OK(Claim(group, kOwner));
  ASSERT_OK_AND_ASSIGN(const uint64_t domain, AttachNewDomain(group, kOwner));

  // IOVA ranges: what the container reports (VFIO_IOMMU_GET_INFO) within the unit's aperture;
  // every reserved region the kernel lists for the group (the x86 interrupt range) is outside
  // them, and the addresses between them are inside.
  iommu::v1::GetIovaRangesRequest ranges_request;
  ranges_request.set_domain_id(domain);
  ASSERT_OK_AND_ASSIGN(iommu::v1::GetIovaRangesResponse ranges,
                       client_->GetIovaRanges(ranges_request));
  ASSERT_GE(ranges.ranges_size(), 2) << ranges.DebugString();
  EXPECT_EQ(ranges.ranges(0).start(), 0u) << ranges.DebugString();
  const auto reserved = KernelReservedRegions(kEduAlone);
  ASSERT_FALSE(reserved.empty()) << "the kernel lists no reserved region for the group";
  for (const auto& [start, end] : reserved) {
    for (const iommu::v1::IovaRange& range : ranges.ranges()) {
      const uint64_t last = range.start() + (range.size() - 1);
      EXPECT_TRUE(last < start || range.start() > end)
          << "usable range [0x" << std::hex << range.start() << ", 0x" << last
          << "] overlaps the kernel's reserved [0x" << start << ", 0x" << end << "]";
    }
  }
  bool msi_gap = false;
  for (int i = 1; i < ranges.ranges_size(); ++i) {
    const uint64_t gap_start =
        ranges.ranges(i - 1).start() + ranges.ranges(i - 1).size();  // first unusable
    const uint64_t gap_last = ranges.ranges(i).start() - 1;
    for (const auto& [start, end] : reserved) {
      msi_gap = msi_gap || (gap_start <= start && end <= gap_last);
    }
  }
  EXPECT_TRUE(msi_gap) << "no gap between the ranges holds a reserved region of the kernel";

  MemfdPages memory(2);
  ASSERT_TRUE(memory.ok());
  const std::string pattern = Pattern(kCount, 9);
  std::memcpy(memory.data(0), pattern.data(), kCount);
  memory.Fill(0, 1);
  ASSERT_OK_AND_ASSIGN(iommu::v1::MemoryRegionRef region,
                       fds_->RegisterMemory(memory.fd(), memory.size(), kOwner));
  ASSERT_OK(Map(domain, kIovaA, region.id(), 0, iommu::v1::PROT_READ));
  ASSERT_OK(Map(domain, kIovaB, region.id(), kPage, iommu::v1::PROT_READ | iommu::v1::PROT_WRITE));
  EduDevice* edu = OpenEdu(kEduAlone);
  ASSERT_NE(edu, nullptr);
  ASSERT_OK(edu->CopyToDevice(kIovaA, kCount));
  ASSERT_OK(edu->CopyFromDevice(kIovaB, kCount));
  EXPECT_EQ(memory.ReadFile(kCount, 1), pattern) << "the device's DMA did not land in the memfd";

  // Replace: VFIO type1 cannot move a group between containers without a blocking window.
  iommu::v1::AllocDomainRequest alloc;
  alloc.set_unit("dmar0");
  alloc.set_owner(kOwner);
  ASSERT_OK_AND_ASSIGN(iommu::v1::Domain other, client_->AllocDomain(alloc));
  iommu::v1::ReplaceDomainRequest replace;
  replace.set_group_id(group);
  replace.set_from_domain_id(domain);
  replace.set_to_domain_id(other.id());
  replace.set_owner(kOwner);
  EXPECT_ERROR(client_->ReplaceDomain(replace), kFailedPrecondition, "REPLACE_NOT_ATOMIC");
  iommu::v1::GetGroupRequest get_group;
  get_group.set_group_id(group);
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group still, client_->GetGroup(get_group));
  EXPECT_EQ(still.domain_id(), domain);
  memory.Fill(0, 1);
  ASSERT_OK(edu->CopyFromDevice(kIovaB, kCount));
  EXPECT_EQ(memory.ReadFile(kCount, 1), pattern) << "a refused replace stopped the DMA";
  ASSERT_OK(Free(other.id()));

  // Unmap all: both mappings go, and the same DMA no longer lands.
  iommu::v1::UnmapRequest unmap_all;
  unmap_all.set_domain_id(domain);
  unmap_all.set_iova(0);
  unmap_all.set_size(~uint64_t{0});
  unmap_all.set_owner(kOwner);
  ASSERT_OK_AND_ASSIGN(iommu::v1::UnmapResponse unmapped, client_->Unmap(unmap_all));
  EXPECT_EQ(unmapped.bytes_unmapped(), 2 * kPage);
  iommu::v1::ListMappingsRequest list;
  list.set_domain_id(domain);
  ASSERT_OK_AND_ASSIGN(iommu::v1::ListMappingsResponse left, client_->ListMappings(list));
  EXPECT_EQ(left.mappings_size(), 0);
  memory.Fill(0x5a, 1);
  KernelLog log;
  ASSERT_OK(edu->CopyFromDevice(kIovaB, kCount));
  EXPECT_EQ(memory.ReadFile(kCount, 1), std::string(kCount, '\x5a'))
      << "DMA reached memory after unmap-all";
  EXPECT_FALSE(log.WaitFor({"DMAR", "[00:02.0]", "fault addr 0x200000"}, absl::Seconds(5)).empty());
  // The region is no longer pinned by any mapping: it unregisters.
  CloseDevices();
  ASSERT_OK(Detach(group, domain));
  ASSERT_OK(Free(domain));
  ASSERT_OK(Release(group, kOwner));
  ASSERT_OK(Unregister(region.id()));
}

TEST_F(HostApiVmTest, SharedRidGroupIsClaimedWholeAndBothEdusDmaForOneOwner) {
  ASSERT_OK_AND_ASSIGN(iommu::v1::Device a_info, Device(kEduBehindBridgeA));
  const uint64_t group = a_info.group_id();
  // One edu held by another driver: the claim is refused and changes nothing.
  BindToPciStub(kEduBehindBridgeB);
  EXPECT_ERROR(Claim(group, kOwner), kFailedPrecondition, "DRIVER_UNSAFE");
  EXPECT_EQ(DriverOf(kEduBehindBridgeA), "");
  EXPECT_EQ(DriverOf(kEduBehindBridgeB), "pci-stub");
  iommu::v1::GetGroupRequest get;
  get.set_group_id(group);
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group untouched, client_->GetGroup(get));
  EXPECT_EQ(untouched.owner(), "");
  ASSERT_OK(WriteSysfsAttribute("/sys/bus/pci/drivers/pci-stub/unbind", kEduBehindBridgeB));
  ASSERT_OK(WriteSysfsAttribute(
      absl::StrCat("/sys/bus/pci/devices/", kEduBehindBridgeB, "/driver_override"), "\n"));
  stubbed_.clear();

  ASSERT_OK(Claim(group, kOwner));
  ASSERT_OK_AND_ASSIGN(const uint64_t domain, AttachNewDomain(group, kOwner));
  MemfdPages memory(3);
  ASSERT_TRUE(memory.ok());
  const std::string pattern = Pattern(kCount, 9);
  std::memcpy(memory.data(0), pattern.data(), kCount);
  memory.Fill(0, 1);
  memory.Fill(0, 2);
  ASSERT_OK_AND_ASSIGN(iommu::v1::MemoryRegionRef region, fds_->RegisterMemory(memory.fd(), memory.size(), kOwner));
  ASSERT_OK(Map(domain, kIovaA, region.id(), 0, iommu::v1::PROT_READ));
  ASSERT_OK(Map(domain, kIovaB, region.id(), kPage, iommu::v1::PROT_READ | iommu::v1::PROT_WRITE));
  ASSERT_OK(Map(domain, kIovaB + kPage, region.id(), 2 * kPage,
                iommu::v1::PROT_READ | iommu::v1::PROT_WRITE));
  EduDevice* edu_a = OpenEdu(kEduBehindBridgeA);
  EduDevice* edu_b = OpenEdu(kEduBehindBridgeB);
  ASSERT_NE(edu_a, nullptr);
  ASSERT_NE(edu_b, nullptr);
  ASSERT_OK(edu_a->CopyToDevice(kIovaA, kCount));
  ASSERT_OK(edu_a->CopyFromDevice(kIovaB, kCount));
  ASSERT_OK(edu_b->CopyToDevice(kIovaA, kCount));
  ASSERT_OK(edu_b->CopyFromDevice(kIovaB + kPage, kCount));
  EXPECT_EQ(memory.ReadFile(kCount, 1), pattern);
  EXPECT_EQ(memory.ReadFile(kCount, 2), pattern);

  CloseDevices();
  // Releasing with the domain still attached: iommud detaches, closes and restores by itself.
  ASSERT_OK(Release(group, kOwner));
  EXPECT_EQ(DriverOf(kEduBehindBridgeA), "");
  EXPECT_EQ(DriverOf(kEduBehindBridgeB), "");
  ASSERT_OK(Unmap(domain, kIovaA));
  ASSERT_OK(Unmap(domain, kIovaB));
  ASSERT_OK(Unmap(domain, kIovaB + kPage));
  ASSERT_OK(Free(domain));
  ASSERT_OK(Unregister(region.id()));
}

TEST_F(HostApiVmTest, OnlyTheOwnerOfAnAttachedGroupGetsItsDeviceFdAndDmasBehindARootPort) {
  ASSERT_OK_AND_ASSIGN(iommu::v1::Device info, Device(kEduBehindRootPort));
  const uint64_t group = info.group_id();
  EXPECT_ERROR(fds_->OpenDevice(kEduBehindRootPort, kOwner), kFailedPrecondition,
               "GROUP_NOT_OWNED");
  ASSERT_OK(Claim(group, kOwner));
  EXPECT_ERROR(fds_->OpenDevice(kEduBehindRootPort, kOwner), kFailedPrecondition,
               "GROUP_NOT_ATTACHED");
  ASSERT_OK_AND_ASSIGN(const uint64_t domain, AttachNewDomain(group, kOwner));
  EXPECT_ERROR(fds_->OpenDevice(kEduBehindRootPort, kOtherOwner), kPermissionDenied, "NOT_OWNER");

  // The owner's device DMAs through its domain (the edu keeps its own requester id behind a PCIe
  // root port).
  MemfdPages memory(2);
  ASSERT_TRUE(memory.ok());
  const std::string pattern = Pattern(kCount, 17);
  std::memcpy(memory.data(0), pattern.data(), kCount);
  memory.Fill(0, 1);
  ASSERT_OK_AND_ASSIGN(iommu::v1::MemoryRegionRef region,
                       fds_->RegisterMemory(memory.fd(), memory.size(), kOwner));
  ASSERT_OK(Map(domain, kIovaA, region.id(), 0, iommu::v1::PROT_READ));
  ASSERT_OK(Map(domain, kIovaB, region.id(), kPage, iommu::v1::PROT_READ | iommu::v1::PROT_WRITE));
  EduDevice* edu = OpenEdu(kEduBehindRootPort);
  ASSERT_NE(edu, nullptr);
  ASSERT_OK(edu->CopyToDevice(kIovaA, kCount));
  ASSERT_OK(edu->CopyFromDevice(kIovaB, kCount));
  EXPECT_EQ(memory.ReadFile(kCount, 1), pattern) << "the device's DMA did not land in the memfd";

  CloseDevices();
  ASSERT_OK(Unmap(domain, kIovaA));
  ASSERT_OK(Unmap(domain, kIovaB));
  ASSERT_OK(Detach(group, domain));
  ASSERT_OK(Free(domain));
  ASSERT_OK(Release(group, kOwner));
  EXPECT_EQ(DriverOf(kEduBehindRootPort), "");
  ASSERT_OK(Unregister(region.id()));
}

TEST_F(HostApiVmTest, EveryKernelStepFailedInTurnChangesNothingOnALoneDevice) {
  SweepKernelSteps(kEduAlone);
}

TEST_F(HostApiVmTest, EveryKernelStepFailedInTurnChangesNothingOnTheSharedRidGroup) {
  SweepKernelSteps(kEduBehindBridgeA);
}

}  // namespace
}  // namespace test
}  // namespace host
}  // namespace iommud

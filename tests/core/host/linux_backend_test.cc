// LinuxBackend without a kernel: the topology it reads from a fake sysfs tree, its refusals, and
// how it follows the registry's RID-by-RID programming (a group moves only when all its RIDs
// agree). What it does to a real kernel (binding, VFIO groups and containers, DMA) is tested in the
// VM (tests/host/).
#include "core/host/linux_backend.h"

#include <fstream>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/host/fake_sysfs.h"
#include "tests/testing/status_test_macros.h"
#include "tests/testing/temp_dir.h"

namespace iommud {
namespace host {
namespace test {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kMsi[] = "0x00000000fee00000 0x00000000feefffff msi\n";

// Resolves nothing: every map of the backend is refused before VFIO is asked.
class NoMemory : public MemoryResolver {
 public:
  absl::StatusOr<void*> Resolve(uint64_t paddr, uint64_t size) const override {
    return Error(absl::StatusCode::kNotFound, reason::kMemoryNotRegistered, "none");
  }
};

// An edu alone (group 1), a conventional bridge with two edus (group 2, one RID), a multi-function
// device without ACS whose three functions share no RID (group 3, the SATA one on ahci).
class LinuxBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sysfs_.AddIommu("dmar0");
    sysfs_.AddGroup(1, "DMA", kMsi);
    sysfs_.AddGroup(2, "DMA", kMsi);
    sysfs_.AddGroup(3, "DMA",
                    absl::StrCat("0x0000000000000000 0x0000000000ffffff direct-relaxable\n", kMsi));
    sysfs_.AddDriver("ahci");
    sysfs_.AddDriver("vfio-pci");
    Add("pci0000:00/0000:00:02.0", 1);
    Add("pci0000:00/0000:00:03.0", 2, "0x060400");
    Add("pci0000:00/0000:00:03.0/0000:01:01.0", 2);
    Add("pci0000:00/0000:00:03.0/0000:01:02.0", 2);
    Add("pci0000:00/0000:00:1f.0", 3, "0x060100");
    Add("pci0000:00/0000:00:1f.2", 3, "0x010601", "ahci");
    Add("pci0000:00/0000:00:1f.3", 3, "0x0c0500");
    options_.sysfs_root = sysfs_.root();
    options_.vfio_dir = no_vfio_.path();  // no /dev/vfio: a claim cannot reach a kernel
    options_.kmsg_path = "";
  }

  void Add(const std::string& path, int group, const std::string& pci_class = "0x00ff00",
           const std::string& driver = "") {
    FakePciDevice device;
    device.path = path;
    device.group = group;
    device.iommu = "dmar0";
    device.pci_class = pci_class;
    device.config = FakeSysfs::ConventionalConfig();
    device.driver = driver;
    sysfs_.AddPciDevice(device);
  }

  std::unique_ptr<LinuxBackend> Backend() {
    absl::StatusOr<std::unique_ptr<LinuxBackend>> backend = LinuxBackend::Create(options_, &memory_);
    EXPECT_TRUE(backend.ok()) << backend.status();
    return backend.ok() ? std::move(*backend) : nullptr;
  }

  FakeSysfs sysfs_;
  iommud::test::TempDir no_vfio_;
  NoMemory memory_;
  LinuxBackendOptions options_;
};

const HostDevice* Find(const HostTopology& topology, const std::string& name) {
  for (const HostDevice& device : topology.devices) {
    if (device.name == name) return &device;
  }
  return nullptr;
}

// The kernel shows reserved regions per group: every device of a group gets all of its group's,
// typed, in the order sysfs lists them.
TEST_F(LinuxBackendTest, EveryDeviceOfAKernelGroupGetsItsGroupsTypedRegions) {
  ASSERT_OK_AND_ASSIGN(HostTopology topology, ReadHostTopology(SysfsInventory(sysfs_.root())));
  const ::iommud::ReservedRegion msi{0xfee00000, 0x100000, ::iommud::ReservedRegionType::kMsi};
  const ::iommud::ReservedRegion isa{0, 0x1000000,
                                     ::iommud::ReservedRegionType::kDirectRelaxable};
  const HostDevice* alone = Find(topology, "0000:00:02.0");
  ASSERT_NE(alone, nullptr);
  EXPECT_THAT(alone->reserved_regions, ElementsAre(msi));
  for (const char* name : {"0000:00:1f.0", "0000:00:1f.2", "0000:00:1f.3"}) {
    const HostDevice* device = Find(topology, name);
    ASSERT_NE(device, nullptr) << name;
    EXPECT_THAT(device->reserved_regions, ElementsAre(isa, msi)) << name;
  }
}

TEST_F(LinuxBackendTest, TopologyGroupsDevicesAsTheKernelDoes) {
  ASSERT_OK_AND_ASSIGN(HostTopology topology, ReadHostTopology(SysfsInventory(sysfs_.root())));
  ASSERT_EQ(topology.units.size(), 1u);
  EXPECT_EQ(topology.units[0].name, "dmar0");
  EXPECT_EQ(topology.units[0].caps.iova_bits, 39u);  // no capability register to read
  // The MSI window is reserved; the ISA bridge's direct-relaxable range is the kernel's business.
  ASSERT_EQ(topology.units[0].caps.reserved_regions.size(), 1u);
  EXPECT_EQ(topology.units[0].caps.reserved_regions[0].start, 0xfee00000u);
  EXPECT_EQ(topology.units[0].caps.reserved_regions[0].size, 0x100000u);
  ASSERT_EQ(topology.devices.size(), 7u);

  const HostDevice* alone = Find(topology, "0000:00:02.0");
  ASSERT_NE(alone, nullptr);
  EXPECT_EQ(alone->rid, 0x10u);
  EXPECT_THAT(alone->alias_rids, IsEmpty());
  EXPECT_EQ(alone->kernel_group, 1);
  // Behind the bridge: their own RID, and the bridge's as their DMA alias.
  const HostDevice* behind = Find(topology, "0000:01:02.0");
  ASSERT_NE(behind, nullptr);
  EXPECT_EQ(behind->rid, 0x110u);
  EXPECT_THAT(behind->alias_rids, ElementsAre(0x18u));
  EXPECT_TRUE(Find(topology, "0000:00:03.0")->bridge);
  // No shared RID in the multi-function group: the first function's RID becomes everyone's alias.
  EXPECT_THAT(Find(topology, "0000:00:1f.0")->alias_rids, IsEmpty());
  EXPECT_THAT(Find(topology, "0000:00:1f.2")->alias_rids, ElementsAre(0xf8u));
  EXPECT_THAT(Find(topology, "0000:00:1f.3")->alias_rids, ElementsAre(0xf8u));
  EXPECT_EQ(Find(topology, "0000:00:1f.2")->driver, "ahci");
}

TEST_F(LinuxBackendTest, IovaWidthComesFromTheCapabilityRegister) {
  const std::string dir = absl::StrCat(sysfs_.root(), "/class/iommu/dmar0/intel-iommu");
  ASSERT_EQ(::system(absl::StrCat("mkdir -p ", dir).c_str()), 0);
  std::ofstream(dir + "/cap") << "d2008c222f0206\n";  // MGAW field (bits 21:16) 0x2f: 48 bits
  ASSERT_OK_AND_ASSIGN(HostTopology topology, ReadHostTopology(SysfsInventory(sysfs_.root())));
  EXPECT_EQ(topology.units[0].caps.iova_bits, 48u);
}

TEST_F(LinuxBackendTest, OptionsAndResolverAreRequired) {
  EXPECT_ERROR(NewLinuxBackend({{"sysfs_root", sysfs_.root()}, {"kmsg", ""}}, BackendHooks{}),
               kFailedPrecondition, "MISSING_MEMORY_RESOLVER");
  BackendHooks hooks;
  hooks.memory = &memory_;
  EXPECT_ERROR(NewLinuxBackend({{"colour", "blue"}}, hooks), kInvalidArgument,
               "INVALID_BACKEND_OPTION");
  ASSERT_OK_AND_ASSIGN(LinuxBackendOptions parsed,
                       ParseLinuxBackendOptions({{"replaceable_drivers", "pci-stub,,ahci"}}));
  EXPECT_THAT(parsed.bind.replaceable_drivers, ElementsAre("ahci", "pci-stub"));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuBackend> backend,
                       NewLinuxBackend({{"sysfs_root", sysfs_.root()}, {"kmsg", ""}}, hooks));
  EXPECT_EQ(backend->name(), "linux");
}

TEST_F(LinuxBackendTest, OnlyTheHostsUnitsAndRids) {
  std::unique_ptr<LinuxBackend> backend = Backend();
  ASSERT_NE(backend, nullptr);
  EXPECT_ERROR(backend->AddUnit("smmu0", UnitCaps{}), kNotFound,
               "UNIT_NOT_ON_HOST");
  ASSERT_OK(backend->AddUnit("dmar0", UnitCaps{}));
  EXPECT_ERROR(backend->AddUnit("dmar0", UnitCaps{}), kAlreadyExists,
               "UNIT_EXISTS");
  ASSERT_OK(backend->AllocDomain("dmar0", 1, DomainType::kDma));
  EXPECT_ERROR(backend->AttachRid("dmar0", 0x77, 1), kInvalidArgument,
               "RID_NOT_IN_KERNEL_GROUP");
  // A user domain is a VFIO container: none without /dev/vfio/vfio.
  EXPECT_ERROR(backend->AllocDomain("dmar0", 2, DomainType::kUnmanaged), kUnavailable,
               "VFIO_UNAVAILABLE");
  EXPECT_THAT(backend->ReadDomains(), ElementsAre(1u));
}

TEST_F(LinuxBackendTest, KernelDomainsAreNeverProgrammed) {
  std::unique_ptr<LinuxBackend> backend = Backend();
  ASSERT_NE(backend, nullptr);
  ASSERT_OK(backend->AddUnit("dmar0", UnitCaps{}));
  ASSERT_OK(backend->AllocDomain("dmar0", 1, DomainType::kDma));
  // Pointing the edu at its default domain is where the kernel already has it: nothing written.
  ASSERT_OK(backend->AttachRid("dmar0", 0x10, 1));
  EXPECT_THAT(sysfs_.writes, IsEmpty());
  ASSERT_OK_AND_ASSIGN(RidEntry entry, backend->ReadRid("dmar0", 0x10));
  EXPECT_EQ(entry.domain, 1u);
  EXPECT_EQ(sysfs_.OverrideOf("0000:00:02.0"), "(null)");
  EXPECT_ERROR(backend->Map(1, 0x100000, 0x1000, 0x1000, kProtRead),
               kFailedPrecondition, "KERNEL_MANAGED_DOMAIN");
  EXPECT_ERROR(backend->FreeDomain(1), kFailedPrecondition, "DOMAIN_IN_USE");
  ASSERT_OK(backend->ReleaseRid("dmar0", 0x10));
  ASSERT_OK(backend->FreeDomain(1));
  EXPECT_EQ(backend->Stats().domains, 0u);
}

TEST_F(LinuxBackendTest, AGroupMovesOnlyWhenAllItsRidsAgreeAndAFailedMoveChangesNothing) {
  std::unique_ptr<LinuxBackend> backend = Backend();
  ASSERT_NE(backend, nullptr);
  ASSERT_OK(backend->AddUnit("dmar0", UnitCaps{}));
  ASSERT_OK(backend->AllocDomain("dmar0", 1, DomainType::kDma));
  ASSERT_OK(backend->AllocDomain("dmar0", 2, DomainType::kBlocked));
  // The bridge group's RIDs: the bridge's (0x18) and the two edus' own.
  for (Rid rid : {0x18u, 0x108u, 0x110u}) ASSERT_OK(backend->AttachRid("dmar0", rid, 1));
  // Two of three RIDs on the blocking domain (a switch in progress, or one device released): the
  // group stays with the kernel.
  ASSERT_OK(backend->AttachRid("dmar0", 0x108, 2));
  ASSERT_OK(backend->AttachRid("dmar0", 0x110, 2));
  EXPECT_EQ(sysfs_.OverrideOf("0000:01:01.0"), "(null)");
  EXPECT_EQ(sysfs_.OverrideOf("0000:01:02.0"), "(null)");
  // The last one agrees: the claim binds vfio-pci, which this fake tree cannot do; the attach
  // fails and the RID keeps its domain.
  EXPECT_FALSE(backend->AttachRid("dmar0", 0x18, 2).ok());
  ASSERT_OK_AND_ASSIGN(RidEntry entry, backend->ReadRid("dmar0", 0x18));
  EXPECT_EQ(entry.domain, 1u);
  EXPECT_EQ(sysfs_.DriverOf("0000:01:01.0"), "");
  EXPECT_EQ(sysfs_.DriverOf("0000:01:02.0"), "");
}

TEST_F(LinuxBackendTest, HostFaultPointsFailAClaimBeforeTheKernelIsTouched) {
  FaultInjector injector;
  FaultSpec spec;
  spec.point = "host.bind";
  spec.code = absl::StatusCode::kResourceExhausted;
  ASSERT_OK(injector.Add(spec).status());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<LinuxBackend> backend,
                       LinuxBackend::Create(options_, &memory_, &injector));
  ASSERT_OK(backend->AddUnit("dmar0", UnitCaps{}));
  ASSERT_OK(backend->AllocDomain("dmar0", 1, DomainType::kDma));
  ASSERT_OK(backend->AllocDomain("dmar0", 2, DomainType::kBlocked));
  ASSERT_OK(backend->AttachRid("dmar0", 0x10, 1));
  const absl::Status claimed = backend->AttachRid("dmar0", 0x10, 2);
  EXPECT_EQ(claimed.code(), absl::StatusCode::kResourceExhausted) << claimed;
  EXPECT_EQ(sysfs_.OverrideOf("0000:00:02.0"), "(null)") << "the binder ran despite the fault";
  ASSERT_OK_AND_ASSIGN(RidEntry entry, backend->ReadRid("dmar0", 0x10));
  EXPECT_EQ(entry.domain, 1u);
  ASSERT_EQ(injector.List().size(), 1u);
  EXPECT_EQ(injector.List()[0].injected, 1u);
}

// A journal record a killed iommud left (group 1 bound to vfio-pci, previously unbound): the group
// node is gone (someone moved the device off vfio-pci), so the next Create reports it "gone", puts
// the driver_override back and forgets the record. A later claim that fails at the bind leaves
// no record behind.
TEST_F(LinuxBackendTest, CreateRecoversWhatTheHostJournalRecordsAndAFailedClaimRecordsNothing) {
  iommud::test::TempDir state;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostJournal> journal, HostJournal::Open(state.path()));
    JournaledGroup record;
    record.group = 1;
    record.phase = JournaledGroup::Phase::kClaimed;
    DriverBinding binding;
    binding.device = "0000:00:02.0";
    binding.changed = true;
    record.bindings.push_back(binding);
    ASSERT_OK(journal->Put(record));
  }
  options_.host_state_dir = state.path();
  std::unique_ptr<LinuxBackend> backend = Backend();
  ASSERT_NE(backend, nullptr);
  ASSERT_EQ(backend->recovered().size(), 1u);
  EXPECT_EQ(backend->recovered()[0].group, 1);
  EXPECT_EQ(backend->recovered()[0].outcome, RecoveredGroup::Outcome::kGone)
      << backend->recovered()[0].detail;
  EXPECT_EQ(sysfs_.DriverOf("0000:00:02.0"), "");
  ASSERT_OK(backend->AddUnit("dmar0", UnitCaps{}));
  ASSERT_OK(backend->AllocDomain("dmar0", 1, DomainType::kDma));
  ASSERT_OK(backend->AllocDomain("dmar0", 2, DomainType::kBlocked));
  ASSERT_OK(backend->AttachRid("dmar0", 0x10, 1));
  EXPECT_FALSE(backend->AttachRid("dmar0", 0x10, 2).ok());  // this tree cannot bind vfio-pci
  backend.reset();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostJournal> after, HostJournal::Open(state.path()));
  EXPECT_TRUE(after->previous().empty());
}

TEST_F(LinuxBackendTest, TranslateModelsTheGroupsDomain) {
  std::unique_ptr<LinuxBackend> backend = Backend();
  ASSERT_NE(backend, nullptr);
  ASSERT_OK(backend->AddUnit("dmar0", UnitCaps{}));
  ASSERT_OK(backend->AllocDomain("dmar0", 1, DomainType::kDma));
  EXPECT_EQ(backend->Translate("dmar0", 0x10, 0x1000, kProtRead).fault, FaultReason::kUnknownRid);
  ASSERT_OK(backend->AttachRid("dmar0", 0x10, 1));
  const Translation translation = backend->Translate("dmar0", 0x10, 0x1000, kProtRead);
  EXPECT_EQ(translation.fault, FaultReason::kNone);
  EXPECT_EQ(translation.domain, 1u);
  EXPECT_ERROR(backend->DeviceFd("0000:00:02.0"), kFailedPrecondition,
               "GROUP_NOT_ATTACHED");
  EXPECT_ERROR(backend->DeviceFd("0000:09:00.0"), kNotFound, "DEVICE_NOT_FOUND");
}

TEST(DmarFaultTest, ParsesTheKernelsFaultReports) {
  std::optional<DmarFault> fault = ParseDmarFault(
      "3,1234,5678901,-;DMAR: [DMA Write NO_PASID] Request device [00:02.0] fault addr 0x200000 "
      "[fault reason 0x05] PTE Write access is not set\n");
  ASSERT_TRUE(fault.has_value());
  EXPECT_EQ(fault->rid, 0x10u);
  EXPECT_EQ(fault->iova, 0x200000u);
  EXPECT_EQ(fault->access, kProtWrite);
  // Older kernels: no PASID word; a device behind a bridge.
  fault = ParseDmarFault(
      "DMAR: [DMA Read] Request device [02:00.0] fault addr 100000 [fault reason 06] PTE Read "
      "access is not set");
  ASSERT_TRUE(fault.has_value());
  EXPECT_EQ(fault->rid, 0x200u);
  EXPECT_EQ(fault->iova, 0x100000u);
  EXPECT_EQ(fault->access, kProtRead);
  EXPECT_FALSE(ParseDmarFault("6,1,2,-;DMAR: DRHD: handling fault status reg 2").has_value());
  EXPECT_FALSE(ParseDmarFault("6,1,2,-;DMAR: [DMA Read] Request device [zz:00.0] fault addr 0x0 "
                              "[fault reason 0x06]").has_value());
}

}  // namespace
}  // namespace test
}  // namespace host
}  // namespace iommud

// LinuxBackend with an FdKeeper, without a kernel: what it keeps and drops, and what it takes back
// from a previous process (core/host/fd_keeper.h; adoption in linux_backend.h). The kernel side of
// adoption (a kept group still in its container, DMA through kept mappings) is tested in the VM
// (tests/host/host_fdstore_vm_test.cc).
#include <fcntl.h>

#include <memory>
#include <string>

#include "core/host/host_journal.h"
#include "core/host/linux_backend.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/host/fake_fd_keeper.h"
#include "tests/core/host/fake_sysfs.h"
#include "tests/testing/status_test_macros.h"
#include "tests/testing/temp_dir.h"

namespace iommud {
namespace host {
namespace test {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class NoMemory : public MemoryResolver {
 public:
  absl::StatusOr<void*> Resolve(uint64_t, uint64_t) const override {
    return Error(absl::StatusCode::kNotFound, reason::kMemoryNotRegistered, "none");
  }
};

class LinuxBackendAdoptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sysfs_.AddIommu("dmar0");
    sysfs_.AddGroup(1, "DMA", "");
    sysfs_.AddDriver("vfio-pci");
    FakePciDevice device;
    device.path = "pci0000:00/0000:00:02.0";
    device.group = 1;
    device.iommu = "dmar0";
    device.pci_class = "0x00ff00";
    device.config = FakeSysfs::ConventionalConfig();
    sysfs_.AddPciDevice(device);
    options_.sysfs_root = sysfs_.root();
    options_.vfio_dir = no_vfio_.path();
    options_.kmsg_path = "";
    options_.host_state_dir = state_.path();
    options_.fd_keeper = &keeper_;
  }

  // What a previous process's claim of group 1 left in the journal.
  void JournalClaimOfGroup1() {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostJournal> journal, HostJournal::Open(state_.path()));
    JournaledGroup record;
    record.group = 1;
    record.phase = JournaledGroup::Phase::kClaimed;
    DriverBinding binding;
    binding.device = "0000:00:02.0";
    binding.changed = false;  // was on vfio-pci already: nothing to rebind on the fake tree
    record.bindings.push_back(binding);
    ASSERT_OK(journal->Put(record));
  }

  // An open file at <vfio_dir>/<name>: what a kept /dev/vfio/N or /dev/vfio/vfio fd reads as.
  UniqueFd OpenVfioNode(const std::string& name) {
    return UniqueFd(::open(no_vfio_.WriteFile(name, "").c_str(), O_RDWR | O_CLOEXEC));
  }

  std::unique_ptr<LinuxBackend> Backend() {
    absl::StatusOr<std::unique_ptr<LinuxBackend>> backend =
        LinuxBackend::Create(options_, &memory_);
    EXPECT_TRUE(backend.ok()) << backend.status();
    return backend.ok() ? std::move(*backend) : nullptr;
  }

  FakeSysfs sysfs_;
  iommud::test::TempDir no_vfio_;
  iommud::test::TempDir state_;
  NoMemory memory_;
  FakeFdKeeper keeper_;
  LinuxBackendOptions options_;
};

TEST_F(LinuxBackendAdoptionTest, AKeptContainerIsAUserDomainAgainAndIsDroppedWhenFreed) {
  keeper_.Hand("container-dmar0-5", OpenVfioNode("vfio"));
  std::unique_ptr<LinuxBackend> backend = Backend();
  ASSERT_NE(backend, nullptr);
  EXPECT_THAT(keeper_.Untaken(), IsEmpty());
  EXPECT_THAT(backend->ReadDomains(), ElementsAre(5u));
  ASSERT_OK_AND_ASSIGN(std::vector<Mapping> mappings, backend->ReadMappings(5));
  EXPECT_THAT(mappings, IsEmpty());  // the shadow is the registry's to fill (Recover's Map calls)
  ASSERT_OK(backend->AddUnit("dmar0", UnitCaps{}));
  // A user domain: kernel-managed domains refuse mappings, this one asks the memory first.
  EXPECT_ERROR(backend->Map(5, 0x1000, 0x1000, 0x1000, kProtRead), kNotFound,
               "MEMORY_NOT_REGISTERED");
  ASSERT_OK(backend->FreeDomain(5));
  EXPECT_THAT(keeper_.dropped, ElementsAre("container-dmar0-5"));
  EXPECT_THAT(backend->ReadDomains(), IsEmpty());
}

TEST_F(LinuxBackendAdoptionTest, AKeptGroupNoAcknowledgedCallHoldsIsGivenBackAndDropped) {
  JournalClaimOfGroup1();
  keeper_.Hand("group-1", OpenVfioNode("1"));
  std::unique_ptr<LinuxBackend> backend = Backend();
  ASSERT_NE(backend, nullptr);
  // Taken back, so not restored by the journal's recovery (it is still claimed)...
  EXPECT_THAT(backend->recovered(), IsEmpty());
  EXPECT_TRUE(backend->HoldsGroupOf("0000:00:02.0"));
  EXPECT_THAT(keeper_.Untaken(), IsEmpty());
  // ... until the registry's recovery is over and nothing of it referenced the group.
  std::vector<RecoveredGroup> outcomes = backend->FinishAdoption();
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_EQ(outcomes[0].group, 1);
  EXPECT_EQ(outcomes[0].outcome, RecoveredGroup::Outcome::kRestored);
  EXPECT_THAT(outcomes[0].detail, HasSubstr("no acknowledged call holds it"));
  EXPECT_THAT(outcomes[0].devices, ElementsAre("0000:00:02.0"));
  EXPECT_THAT(keeper_.dropped, ElementsAre("group-1"));
  EXPECT_FALSE(backend->HoldsGroupOf("0000:00:02.0"));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostJournal> journal, HostJournal::Open(state_.path()));
  EXPECT_THAT(journal->previous(), IsEmpty());  // given back: the record is gone
  EXPECT_THAT(backend->FinishAdoption(), IsEmpty());  // once
}

TEST_F(LinuxBackendAdoptionTest, FdsThatAreNotWhatTheirNameSaysAreNotAdoptedButDropped) {
  JournalClaimOfGroup1();
  keeper_.Hand("group-1", SomeFd());             // a pipe, not /dev/vfio/1
  keeper_.Hand("container-dmar0-6", SomeFd());  // a pipe, not /dev/vfio/vfio
  std::unique_ptr<LinuxBackend> backend = Backend();
  ASSERT_NE(backend, nullptr);
  EXPECT_THAT(backend->ReadDomains(), IsEmpty());
  EXPECT_THAT(keeper_.Untaken(), IsEmpty());
  EXPECT_THAT(keeper_.dropped, testing::UnorderedElementsAre("group-1", "container-dmar0-6"));
  // The group is decided by the journal, as without the store (no /dev/vfio/1 here: gone).
  ASSERT_EQ(backend->recovered().size(), 1u);
  EXPECT_EQ(backend->recovered()[0].outcome, RecoveredGroup::Outcome::kGone);
  EXPECT_FALSE(backend->HoldsGroupOf("0000:00:02.0"));
  EXPECT_THAT(backend->FinishAdoption(), IsEmpty());
}

TEST_F(LinuxBackendAdoptionTest, AGroupFdWithoutAJournalRecordIsNotTaken) {
  keeper_.Hand("group-1", SomeFd());
  keeper_.Hand("something-else", SomeFd());
  std::unique_ptr<LinuxBackend> backend = Backend();
  ASSERT_NE(backend, nullptr);
  // Left for the daemon to close and drop (it reports every name nobody took).
  EXPECT_THAT(keeper_.Untaken(), ElementsAre("group-1", "something-else"));
  EXPECT_FALSE(backend->HoldsGroupOf("0000:00:02.0"));
  EXPECT_THAT(backend->FinishAdoption(), IsEmpty());
}

}  // namespace
}  // namespace test
}  // namespace host
}  // namespace iommud

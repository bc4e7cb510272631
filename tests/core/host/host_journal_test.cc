// The host journal (what iommud changed on the host) and the restart's recovery of what it records,
// against a temporary directory and a fake sysfs (no kernel).
#include "core/host/host_journal.h"

#include <map>
#include <string>

#include "core/error.h"
#include "core/host/host_recovery.h"
#include "core/host/pci_driver_binder.h"
#include "gtest/gtest.h"
#include "tests/core/host/fake_sysfs.h"
#include "tests/testing/status_test_macros.h"
#include "tests/testing/temp_dir.h"

namespace iommud {
namespace host {
namespace test {
namespace {

JournaledGroup Claimed(int group, const std::string& device, const std::string& driver) {
  JournaledGroup record;
  record.group = group;
  record.phase = JournaledGroup::Phase::kClaimed;
  DriverBinding binding;
  binding.device = device;
  binding.previous_driver = driver;
  binding.changed = true;
  record.bindings.push_back(binding);
  return record;
}

TEST(HostJournalTest, RecordsSurviveAReopenOfTheSameBootAndRemoveForgets) {
  ::iommud::test::TempDir dir;
  const std::string boot = dir.WriteFile("boot_id", "boot-1\n");
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostJournal> journal, HostJournal::Open(dir.path(), boot));
    EXPECT_TRUE(journal->previous().empty());
    ASSERT_OK(journal->Put(Claimed(7, "0000:00:02.0", "")));
    ASSERT_OK(journal->Put(Claimed(9, "0000:00:05.0", "pci-stub")));
    ASSERT_OK(journal->Remove(7));
  }  // the process dies: nothing is flushed at exit, every change already is on disk
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostJournal> again, HostJournal::Open(dir.path(), boot));
  ASSERT_EQ(again->previous().size(), 1u);
  const JournaledGroup& nine = again->previous().at(9);
  EXPECT_EQ(nine.phase, JournaledGroup::Phase::kClaimed);
  ASSERT_EQ(nine.bindings.size(), 1u);
  EXPECT_EQ(nine.bindings[0].device, "0000:00:05.0");
  EXPECT_EQ(nine.bindings[0].previous_driver, "pci-stub");
  EXPECT_EQ(nine.bindings[0].previous_override, "");
  EXPECT_TRUE(nine.bindings[0].changed);
  EXPECT_EQ(again->Current().size(), 1u);
}

TEST(HostJournalTest, AJournalOfAnotherBootIsDiscarded) {
  ::iommud::test::TempDir dir;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostJournal> journal,
                         HostJournal::Open(dir.path(), dir.WriteFile("boot_id", "boot-1\n")));
    ASSERT_OK(journal->Put(Claimed(7, "0000:00:02.0", "")));
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostJournal> rebooted,
                       HostJournal::Open(dir.path(), dir.WriteFile("boot_id", "boot-2\n")));
  EXPECT_TRUE(rebooted->previous().empty());
  EXPECT_TRUE(rebooted->discarded_other_boot());
}

TEST(HostJournalTest, ATornOrForeignFileIsAnError) {
  ::iommud::test::TempDir dir;
  const std::string boot = dir.WriteFile("boot_id", "boot-1\n");
  std::string text = FormatHostJournal("boot-1", {{7, Claimed(7, "0000:00:02.0", "")}});
  dir.WriteFile("host-journal", text.substr(0, text.size() - 4));  // no end line
  EXPECT_ERROR(HostJournal::Open(dir.path(), boot), kInternal, "HOST_JOURNAL_FAILED");
  dir.WriteFile("host-journal", "something else\n");
  EXPECT_ERROR(HostJournal::Open(dir.path(), boot), kInternal, "HOST_JOURNAL_FAILED");
}

TEST(HostJournalTest, FormatAndParseRoundTrip) {
  JournaledGroup binding = Claimed(3, "0000:01:01.0", "");
  binding.phase = JournaledGroup::Phase::kBinding;
  DriverBinding second;
  second.device = "0000:01:02.0";
  second.previous_driver = "vfio-pci";
  second.previous_override = "vfio-pci";
  second.changed = false;
  binding.bindings.push_back(second);
  std::string boot;
  std::map<int, JournaledGroup> parsed;
  ASSERT_OK(ParseHostJournal(FormatHostJournal("b", {{3, binding}}), &boot, &parsed));
  EXPECT_EQ(boot, "b");
  ASSERT_EQ(parsed.size(), 1u);
  EXPECT_EQ(parsed[3].phase, JournaledGroup::Phase::kBinding);
  ASSERT_EQ(parsed[3].bindings.size(), 2u);
  EXPECT_EQ(parsed[3].bindings[1].previous_override, "vfio-pci");
  EXPECT_FALSE(parsed[3].bindings[1].changed);
}

// A group whose devices are no longer on vfio-pci (no /dev/vfio/N): the override iommud set is
// put back and the outcome says so; nothing is reported held.
TEST(HostRecoveryTest, AGroupNoLongerOnVfioPciIsGoneAndItsOverrideIsPutBack) {
  FakeSysfs sysfs;
  sysfs.AddGroup(1, "DMA", "");
  sysfs.AddDriver("vfio-pci");
  FakePciDevice device;
  device.path = "pci0000:00/0000:00:02.0";
  device.group = 1;
  sysfs.AddPciDevice(device);
  ASSERT_OK(sysfs.Write(sysfs.root() + "/bus/pci/devices/0000:00:02.0/driver_override", "vfio-pci"));
  PciDriverBinder binder(sysfs.root(), [&sysfs](const std::string& path, absl::string_view value) {
    return sysfs.Write(path, value);
  });
  ::iommud::test::TempDir vfio;  // empty: no group node
  const RecoveredGroup outcome =
      RecoverJournaledGroup(Claimed(1, "0000:00:02.0", ""), binder, vfio.path());
  EXPECT_EQ(outcome.outcome, RecoveredGroup::Outcome::kGone) << outcome.detail;
  EXPECT_EQ(RecoveryOutcomeName(outcome.outcome), "gone");
  EXPECT_EQ(sysfs.OverrideOf("0000:00:02.0"), "(null)");
  EXPECT_EQ(sysfs.DriverOf("0000:00:02.0"), "");
}

}  // namespace
}  // namespace test
}  // namespace host
}  // namespace iommud

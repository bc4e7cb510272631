#include "core/host/sysfs_inventory.h"

#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/host/fake_sysfs.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace host {
namespace test {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kRegions[] =
    "0x0000000000000000 0x0000000000ffffff direct-relaxable\n"
    "0x00000000fee00000 0x00000000feefffff msi\n";

// The VM harness's topology in miniature: an endpoint alone, a conventional bridge with two
// endpoints, a PCIe root port with one, a PCIe-to-PCI bridge with one.
class SysfsInventoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sysfs_.AddIommu("dmar0");
    sysfs_.AddGroup(1, "DMA", "0x00000000fee00000 0x00000000feefffff msi\n");
    sysfs_.AddGroup(2, "DMA", kRegions);
    sysfs_.AddGroup(10, "DMA-FQ", "");
    sysfs_.AddGroup(11, "identity", "");
    sysfs_.AddGroup(12, "DMA", "");
    sysfs_.AddDriver("pcieport");
    sysfs_.AddDriver("e1000e");
    Add("pci0000:00/0000:00:02.0", 1, "0x00ff00", FakeSysfs::ConventionalConfig(), "e1000e");
    Add("pci0000:00/0000:00:03.0", 2, "0x060400", FakeSysfs::ConventionalConfig());
    Add("pci0000:00/0000:00:03.0/0000:01:01.0", 2);
    Add("pci0000:00/0000:00:03.0/0000:01:02.0", 2);
    Add("pci0000:00/0000:00:04.0", 10, "0x060400", FakeSysfs::PcieConfig(4), "pcieport");
    Add("pci0000:00/0000:00:04.0/0000:02:00.0", 11);
    Add("pci0000:00/0000:00:05.0", 12, "0x060400", FakeSysfs::PcieConfig(7));
    Add("pci0000:00/0000:00:05.0/0000:03:04.0", 12);
  }

  void Add(const std::string& path, std::optional<int> group,
           const std::string& pci_class = "0x00ff00", const std::string& config = "",
           const std::string& driver = "") {
    FakePciDevice device;
    device.path = path;
    device.group = group;
    device.iommu = group.has_value() ? "dmar0" : "";
    device.pci_class = pci_class;
    device.config = config;
    device.driver = driver;
    sysfs_.AddPciDevice(device);
  }

  FakeSysfs sysfs_;
};

TEST_F(SysfsInventoryTest, IommuUnitsAndTheirDevices) {
  SysfsInventory inventory(sysfs_.root());
  ASSERT_OK_AND_ASSIGN(const std::vector<IommuUnit> units, inventory.IommuUnits());
  ASSERT_EQ(units.size(), 1u);
  EXPECT_EQ(units[0].name, "dmar0");
  EXPECT_EQ(units[0].devices.size(), 8u);
  EXPECT_EQ(units[0].devices.front(), "0000:00:02.0");
}

TEST(SysfsInventoryEmptyTest, NoIommuNoGroupsNoDevices) {
  FakeSysfs sysfs;
  SysfsInventory inventory(sysfs.root());
  ASSERT_OK_AND_ASSIGN(const std::vector<IommuUnit> units, inventory.IommuUnits());
  EXPECT_THAT(units, IsEmpty());
  ASSERT_OK_AND_ASSIGN(const std::vector<int> groups, inventory.GroupIds());
  EXPECT_THAT(groups, IsEmpty());
  ASSERT_OK_AND_ASSIGN(const std::vector<PciDeviceInfo> devices, inventory.PciDevices());
  EXPECT_THAT(devices, IsEmpty());
}

TEST_F(SysfsInventoryTest, GroupsAreNumberedNumerically) {
  SysfsInventory inventory(sysfs_.root());
  ASSERT_OK_AND_ASSIGN(const std::vector<int> ids, inventory.GroupIds());
  EXPECT_THAT(ids, ElementsAre(1, 2, 10, 11, 12));
}

TEST_F(SysfsInventoryTest, GroupDevicesTypeAndReservedRegions) {
  SysfsInventory inventory(sysfs_.root());
  ASSERT_OK_AND_ASSIGN(const IommuGroupInfo group, inventory.Group(2));
  EXPECT_EQ(group.id, 2);
  EXPECT_EQ(group.type, "DMA");
  EXPECT_THAT(group.devices, ElementsAre("0000:00:03.0", "0000:01:01.0", "0000:01:02.0"));
  EXPECT_THAT(group.reserved_regions,
              ElementsAre(ReservedRegion{0x0, 0xffffff, "direct-relaxable"},
                          ReservedRegion{0xfee00000, 0xfeefffff, "msi"}));
  ASSERT_OK_AND_ASSIGN(const IommuGroupInfo fq, inventory.Group(10));
  EXPECT_EQ(fq.type, "DMA-FQ");
  EXPECT_THAT(fq.reserved_regions, IsEmpty());
}

TEST_F(SysfsInventoryTest, UnknownGroupIsNotFound) {
  SysfsInventory inventory(sysfs_.root());
  EXPECT_ERROR(inventory.Group(3), kNotFound, "GROUP_NOT_FOUND");
  EXPECT_ERROR(inventory.Group(-1), kNotFound, "GROUP_NOT_FOUND");
}

TEST(ReservedRegionsTest, ParsesTheKernelFormat) {
  ASSERT_OK_AND_ASSIGN(const std::vector<ReservedRegion> regions,
                       SysfsInventory::ParseReservedRegions(kRegions));
  EXPECT_THAT(regions, ElementsAre(ReservedRegion{0x0, 0xffffff, "direct-relaxable"},
                                   ReservedRegion{0xfee00000, 0xfeefffff, "msi"}));
  ASSERT_OK_AND_ASSIGN(const std::vector<ReservedRegion> none,
                       SysfsInventory::ParseReservedRegions(""));
  EXPECT_THAT(none, IsEmpty());
}

TEST(ReservedRegionsTest, MalformedLinesAreRefused) {
  EXPECT_ERROR(SysfsInventory::ParseReservedRegions("0xfee00000 msi\n"), kDataLoss,
               "SYSFS_PARSE_FAILED");
  EXPECT_ERROR(SysfsInventory::ParseReservedRegions("0xfee00000 0xzz msi\n"), kDataLoss,
               "SYSFS_PARSE_FAILED");
  EXPECT_ERROR(SysfsInventory::ParseReservedRegions("0x2000 0x1000 msi\n"), kDataLoss,
               "SYSFS_PARSE_FAILED");
}

TEST_F(SysfsInventoryTest, PciDeviceAttributes) {
  SysfsInventory inventory(sysfs_.root());
  ASSERT_OK_AND_ASSIGN(const PciDeviceInfo edu, inventory.PciDevice("0000:00:02.0"));
  EXPECT_EQ(edu.name, "0000:00:02.0");
  EXPECT_EQ(edu.address.device, 2);
  EXPECT_EQ(edu.vendor, 0x1234);
  EXPECT_EQ(edu.device, 0x11e8);
  EXPECT_EQ(edu.class_code, 0x00ff00u);
  EXPECT_EQ(edu.driver, "e1000e");
  EXPECT_EQ(edu.driver_override, "");  // "(null)" in sysfs
  EXPECT_EQ(edu.iommu_group, std::optional<int>(1));
  EXPECT_EQ(edu.iommu, "dmar0");
  EXPECT_FALSE(edu.IsBridge());

  ASSERT_OK_AND_ASSIGN(const PciDeviceInfo bridge, inventory.PciDevice("0000:00:03.0"));
  EXPECT_TRUE(bridge.IsBridge());
  EXPECT_EQ(bridge.driver, "");
}

TEST_F(SysfsInventoryTest, DeviceWithoutIommuHasNoGroup) {
  Add("pci0000:00/0000:00:06.0", std::nullopt);
  SysfsInventory inventory(sysfs_.root());
  ASSERT_OK_AND_ASSIGN(const PciDeviceInfo device, inventory.PciDevice("0000:00:06.0"));
  EXPECT_EQ(device.iommu_group, std::nullopt);
  EXPECT_EQ(device.iommu, "");
}

TEST_F(SysfsInventoryTest, AllDevicesSortedByAddress) {
  SysfsInventory inventory(sysfs_.root());
  ASSERT_OK_AND_ASSIGN(const std::vector<PciDeviceInfo> devices, inventory.PciDevices());
  std::vector<std::string> names;
  for (const PciDeviceInfo& d : devices) names.push_back(d.name);
  EXPECT_THAT(names, ElementsAre("0000:00:02.0", "0000:00:03.0", "0000:00:04.0", "0000:00:05.0",
                                 "0000:01:01.0", "0000:01:02.0", "0000:02:00.0", "0000:03:04.0"));
}

TEST_F(SysfsInventoryTest, UnknownOrMalformedDeviceIsNotFound) {
  SysfsInventory inventory(sysfs_.root());
  EXPECT_ERROR(inventory.PciDevice("0000:00:1f.7"), kNotFound, "DEVICE_NOT_FOUND");
  EXPECT_ERROR(inventory.PciDevice("00:02.0"), kNotFound, "DEVICE_NOT_FOUND");
  EXPECT_ERROR(inventory.PciDevice("../../etc"), kNotFound, "DEVICE_NOT_FOUND");
}

TEST_F(SysfsInventoryTest, DmaRequesterIdsFollowTheTopology) {
  SysfsInventory inventory(sysfs_.root());
  auto rid = [&inventory](const char* name) {
    absl::StatusOr<PciDeviceInfo> device = inventory.PciDevice(name);
    EXPECT_OK(device);
    return device.ok() ? device->dma_requester_id : std::nullopt;
  };
  // On the root bus: its own id.
  EXPECT_EQ(rid("0000:00:02.0"), std::optional<uint16_t>(0x0010));
  // Behind a conventional bridge: the bridge's id (00:03.0).
  EXPECT_EQ(rid("0000:01:01.0"), std::optional<uint16_t>(0x0018));
  EXPECT_EQ(rid("0000:01:02.0"), std::optional<uint16_t>(0x0018));
  // Behind a PCIe root port: its own id.
  EXPECT_EQ(rid("0000:02:00.0"), std::optional<uint16_t>(0x0200));
  // Behind a PCIe-to-PCI bridge: (secondary bus, 00.0).
  EXPECT_EQ(rid("0000:03:04.0"), std::optional<uint16_t>(0x0300));
}

TEST_F(SysfsInventoryTest, RequesterIdUnknownWhenABridgeCapabilityIsUnreadable) {
  sysfs_.AddGroup(13, "DMA", "");
  Add("pci0000:00/0000:00:07.0", 13, "0x060400", FakeSysfs::PcieConfig(4, false));
  Add("pci0000:00/0000:00:07.0/0000:05:00.0", 13);
  SysfsInventory inventory(sysfs_.root());
  ASSERT_OK_AND_ASSIGN(const PciDeviceInfo device, inventory.PciDevice("0000:05:00.0"));
  EXPECT_EQ(device.dma_requester_id, std::nullopt);
}

}  // namespace
}  // namespace test
}  // namespace host
}  // namespace iommud

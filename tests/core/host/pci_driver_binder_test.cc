#include "core/host/pci_driver_binder.h"

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

using ::testing::IsEmpty;

constexpr char kAlone[] = "0000:00:02.0";
constexpr char kBridge[] = "0000:00:03.0";
constexpr char kBehindA[] = "0000:01:01.0";
constexpr char kBehindB[] = "0000:01:02.0";

class PciDriverBinderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sysfs_.AddGroup(1, "DMA", "");
    sysfs_.AddGroup(2, "DMA", "");
    sysfs_.AddDriver("vfio-pci");
    sysfs_.AddDriver("e1000e");
    Add("pci0000:00/0000:00:02.0", 1, "0x020000");
    Add("pci0000:00/0000:00:03.0", 2, "0x060400");
    Add("pci0000:00/0000:00:03.0/0000:01:01.0", 2, "0x00ff00");
    Add("pci0000:00/0000:00:03.0/0000:01:02.0", 2, "0x00ff00");
  }

  void Add(const std::string& path, int group, const std::string& pci_class) {
    FakePciDevice device;
    device.path = path;
    device.group = group;
    device.pci_class = pci_class;
    sysfs_.AddPciDevice(device);
  }

  // Puts `bdf` on `driver` as if the kernel had bound it at boot.
  void BindAtBoot(const std::string& bdf, const std::string& driver) {
    ASSERT_OK(sysfs_.Write(sysfs_.root() + "/bus/pci/drivers/" + driver + "/bind", bdf));
  }

  FakeSysfs sysfs_;
  PciDriverBinder binder_{sysfs_.root(), [this](const std::string& path, absl::string_view value) {
                            return sysfs_.Write(path, value);
                          }};
};

TEST_F(PciDriverBinderTest, BindsAnUnboundDeviceAndRestoresIt) {
  ASSERT_OK_AND_ASSIGN(const DriverBinding binding, binder_.BindToVfio(kAlone));
  EXPECT_TRUE(binding.changed);
  EXPECT_EQ(binding.device, kAlone);
  EXPECT_EQ(binding.previous_driver, "");
  EXPECT_EQ(binding.previous_override, "");
  EXPECT_EQ(sysfs_.DriverOf(kAlone), "vfio-pci");
  EXPECT_EQ(sysfs_.OverrideOf(kAlone), "vfio-pci");

  ASSERT_OK(binder_.Restore(binding));
  EXPECT_EQ(sysfs_.DriverOf(kAlone), "");
  EXPECT_EQ(sysfs_.OverrideOf(kAlone), "(null)");
}

TEST_F(PciDriverBinderTest, TakesOnlyReplaceableDriversAndGivesThemBack) {
  BindAtBoot(kAlone, "e1000e");
  sysfs_.writes.clear();
  EXPECT_ERROR(binder_.BindToVfio(kAlone), kFailedPrecondition, "DRIVER_UNSAFE");
  EXPECT_THAT(sysfs_.writes, IsEmpty());
  EXPECT_EQ(sysfs_.DriverOf(kAlone), "e1000e");

  BindOptions options;
  options.replaceable_drivers = {"e1000e"};
  ASSERT_OK_AND_ASSIGN(const DriverBinding binding, binder_.BindToVfio(kAlone, options));
  EXPECT_EQ(binding.previous_driver, "e1000e");
  EXPECT_EQ(sysfs_.DriverOf(kAlone), "vfio-pci");

  ASSERT_OK(binder_.Restore(binding));
  EXPECT_EQ(sysfs_.DriverOf(kAlone), "e1000e");
  EXPECT_EQ(sysfs_.OverrideOf(kAlone), "(null)");
}

TEST_F(PciDriverBinderTest, AlreadyOnVfioIsANoOp) {
  ASSERT_OK(sysfs_.Write(sysfs_.root() + "/bus/pci/devices/0000:00:02.0/driver_override",
                         "vfio-pci"));
  BindAtBoot(kAlone, "vfio-pci");
  sysfs_.writes.clear();
  ASSERT_OK_AND_ASSIGN(const DriverBinding binding, binder_.BindToVfio(kAlone));
  EXPECT_FALSE(binding.changed);
  ASSERT_OK(binder_.Restore(binding));
  EXPECT_THAT(sysfs_.writes, IsEmpty());
  EXPECT_EQ(sysfs_.DriverOf(kAlone), "vfio-pci");
}

TEST_F(PciDriverBinderTest, RefusesWhatItCannotBind) {
  EXPECT_ERROR(binder_.BindToVfio("0000:00:1f.7"), kNotFound, "DEVICE_NOT_FOUND");
  EXPECT_ERROR(binder_.BindToVfio(kBridge), kFailedPrecondition, "DEVICE_NOT_BINDABLE");
  EXPECT_ERROR(binder_.BindGroupToVfio(9), kNotFound, "GROUP_NOT_FOUND");
}

TEST(PciDriverBinderNoVfioTest, VfioPciNotLoaded) {
  FakeSysfs sysfs;
  sysfs.AddGroup(1, "DMA", "");
  FakePciDevice device;
  device.path = "pci0000:00/0000:00:02.0";
  device.group = 1;
  sysfs.AddPciDevice(device);
  PciDriverBinder binder(sysfs.root(), [&sysfs](const std::string& path, absl::string_view value) {
    return sysfs.Write(path, value);
  });
  EXPECT_ERROR(binder.BindToVfio("0000:00:02.0"), kFailedPrecondition, "DRIVER_NOT_LOADED");
  EXPECT_THAT(sysfs.writes, IsEmpty());
}

TEST_F(PciDriverBinderTest, FailedBindPutsTheDeviceBack) {
  BindAtBoot(kAlone, "e1000e");
  sysfs_.refusing_drivers = {"vfio-pci"};
  BindOptions options;
  options.replaceable_drivers = {"e1000e"};
  EXPECT_ERROR(binder_.BindToVfio(kAlone, options), kInternal, "DRIVER_BIND_FAILED");
  EXPECT_EQ(sysfs_.DriverOf(kAlone), "e1000e");
  EXPECT_EQ(sysfs_.OverrideOf(kAlone), "(null)");
}

TEST_F(PciDriverBinderTest, GroupBindsEveryEndpointAndLeavesTheBridge) {
  ASSERT_OK_AND_ASSIGN(const std::vector<DriverBinding> bindings, binder_.BindGroupToVfio(2));
  ASSERT_EQ(bindings.size(), 2u);
  EXPECT_EQ(bindings[0].device, kBehindA);
  EXPECT_EQ(bindings[1].device, kBehindB);
  EXPECT_EQ(sysfs_.DriverOf(kBehindA), "vfio-pci");
  EXPECT_EQ(sysfs_.DriverOf(kBehindB), "vfio-pci");
  EXPECT_EQ(sysfs_.DriverOf(kBridge), "");
  EXPECT_EQ(sysfs_.OverrideOf(kBridge), "(null)");

  ASSERT_OK(binder_.RestoreAll(bindings));
  EXPECT_EQ(sysfs_.DriverOf(kBehindA), "");
  EXPECT_EQ(sysfs_.DriverOf(kBehindB), "");
  EXPECT_EQ(sysfs_.OverrideOf(kBehindA), "(null)");
  EXPECT_EQ(sysfs_.OverrideOf(kBehindB), "(null)");
}

TEST_F(PciDriverBinderTest, GroupWithAnUnsafeDeviceIsNotTouched) {
  BindAtBoot(kBehindB, "e1000e");
  sysfs_.writes.clear();
  EXPECT_ERROR(binder_.BindGroupToVfio(2), kFailedPrecondition, "DRIVER_UNSAFE");
  EXPECT_THAT(sysfs_.writes, IsEmpty());
  EXPECT_EQ(sysfs_.DriverOf(kBehindA), "");
}

TEST_F(PciDriverBinderTest, GroupBindFailureRestoresTheDevicesAlreadyBound) {
  // The second endpoint's bind fails (e1000e is replaceable, vfio-pci's probe of it fails): the
  // first, already on vfio-pci, goes back to no driver and the second back to e1000e.
  BindAtBoot(kBehindB, "e1000e");
  BindOptions options;
  options.replaceable_drivers = {"e1000e"};
  int probes = 0;
  PciDriverBinder binder(sysfs_.root(), [&](const std::string& path, absl::string_view value) {
    if (path == sysfs_.root() + "/bus/pci/drivers_probe" && ++probes == 2) {
      sysfs_.refusing_drivers = {"vfio-pci"};
    }
    absl::Status status = sysfs_.Write(path, value);
    sysfs_.refusing_drivers.clear();
    return status;
  });
  EXPECT_ERROR(binder.BindGroupToVfio(2, options), kInternal, "DRIVER_BIND_FAILED");
  EXPECT_EQ(probes, 2);
  EXPECT_EQ(sysfs_.DriverOf(kBehindA), "");
  EXPECT_EQ(sysfs_.OverrideOf(kBehindA), "(null)");
  EXPECT_EQ(sysfs_.DriverOf(kBehindB), "e1000e");
  EXPECT_EQ(sysfs_.OverrideOf(kBehindB), "(null)");
}

TEST_F(PciDriverBinderTest, RestoreReportsADriverThatWillNotTakeTheDeviceBack) {
  BindAtBoot(kAlone, "e1000e");
  BindOptions options;
  options.replaceable_drivers = {"e1000e"};
  ASSERT_OK_AND_ASSIGN(const DriverBinding binding, binder_.BindToVfio(kAlone, options));
  sysfs_.refusing_drivers = {"e1000e"};
  EXPECT_ERROR(binder_.Restore(binding), kInternal, "DRIVER_RESTORE_FAILED");
  EXPECT_EQ(sysfs_.DriverOf(kAlone), "");
}

}  // namespace
}  // namespace test
}  // namespace host
}  // namespace iommud

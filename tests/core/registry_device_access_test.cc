// Registry::WithOwnedDevice: who may reach a device itself (its VFIO device fd), and that the
// callback runs under the group's mutex.
#include <atomic>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/registry.h"
#include "gtest/gtest.h"
#include "tests/core/testing/registry_fixture.h"

namespace iommud {
namespace test {
namespace {

class RegistryDeviceAccessTest : public RegistryTest {
 protected:
  void SetUp() override {
    RegistryTest::SetUp();
    group_ = Probe("a", 0x100).group;
    Probe("b", 0x100);
    Probe("c", 0x200);
  }

  // WithOwnedDevice with a callback that counts its calls and returns `result`.
  absl::Status Access(const std::string& device, const std::string& owner,
                      absl::Status result = absl::OkStatus()) {
    return registry_->WithOwnedDevice(device, owner, [&] {
      ++calls_;
      return result;
    });
  }

  GroupId group_ = 0;
  int calls_ = 0;
};

TEST_P(RegistryDeviceAccessTest, TheOwnerOfAnAttachedGroupGetsEveryDeviceOfIt) {
  ClaimAndAttach("a");
  const std::string before = Snapshot();
  EXPECT_TRUE(Access("a", kOwner).ok());
  EXPECT_TRUE(Access("b", kOwner).ok());
  EXPECT_EQ(calls_, 2);
  EXPECT_EQ(Snapshot(), before);
}

TEST_P(RegistryDeviceAccessTest, ReturnsTheCallbacksError) {
  ClaimAndAttach("a");
  EXPECT_ERROR(Access("a", kOwner, Error(absl::StatusCode::kInternal, reason::kDeviceFdFailed, "x")),
               kInternal, "DEVICE_FD_FAILED");
  EXPECT_EQ(calls_, 1);
}

TEST_P(RegistryDeviceAccessTest, RefusesAnUnknownDevice) {
  EXPECT_ERROR(Access("nope", kOwner), kNotFound, "DEVICE_NOT_FOUND");
  EXPECT_EQ(calls_, 0);
}

TEST_P(RegistryDeviceAccessTest, RefusesAnUnownedGroup) {
  absl::Status status = Access("a", kOwner);
  EXPECT_ERROR(status, kFailedPrecondition, "GROUP_NOT_OWNED");
  EXPECT_EQ(GetErrorMetadata(status)["device"], "a");
  // A kernel driver's use of the default domain is no ownership either.
  ASSERT_TRUE(registry_->UseDefaultDomain("c").ok());
  EXPECT_ERROR(Access("c", kOwner), kFailedPrecondition, "GROUP_NOT_OWNED");
  EXPECT_EQ(calls_, 0);
}

TEST_P(RegistryDeviceAccessTest, RefusesAnotherOwner) {
  ClaimAndAttach("a");
  EXPECT_ERROR(Access("a", kOther), kPermissionDenied, "NOT_OWNER");
  EXPECT_ERROR(Access("b", ""), kPermissionDenied, "NOT_OWNER");
  EXPECT_EQ(calls_, 0);
}

TEST_P(RegistryDeviceAccessTest, RefusesAnOwnedGroupOnItsBlockingOrDefaultDomain) {
  ASSERT_TRUE(registry_->ClaimOwnership(group_, kOwner).ok());  // on its blocking domain
  absl::Status status = Access("a", kOwner);
  EXPECT_ERROR(status, kFailedPrecondition, "GROUP_NOT_ATTACHED");
  EXPECT_EQ(GetErrorMetadata(status)["group_id"], std::to_string(group_));
  // Attached, then detached: back on the blocking domain.
  ASSERT_OK_AND_ASSIGN(DomainInfo domain,
                       registry_->AllocDomain("u0", DomainType::kUnmanaged, kOwner));
  ASSERT_TRUE(registry_->AttachGroup(group_, domain.id, kOwner).ok());
  EXPECT_TRUE(Access("a", kOwner).ok());
  ASSERT_TRUE(registry_->DetachGroup(group_, domain.id, kOwner).ok());
  EXPECT_ERROR(Access("a", kOwner), kFailedPrecondition, "GROUP_NOT_ATTACHED");
  EXPECT_EQ(calls_, 1);
}

TEST_P(RegistryDeviceAccessTest, RefusesAReleasedDevice) {
  ClaimAndAttach("c");
  ASSERT_TRUE(registry_->ReleaseDevice("c").ok());
  EXPECT_ERROR(Access("c", kOwner), kNotFound, "DEVICE_NOT_FOUND");
  EXPECT_EQ(calls_, 0);
}

TEST_P(RegistryDeviceAccessTest, TheCallbackHoldsOffOtherOperationsOnTheGroup) {
  ClaimAndAttach("a");
  std::atomic<bool> released{false};
  std::thread releaser;
  absl::Notification started;
  ASSERT_TRUE(registry_
                  ->WithOwnedDevice("a", kOwner,
                                    [&] {
                                      releaser = std::thread([&] {
                                        started.Notify();
                                        EXPECT_TRUE(
                                            registry_->ReleaseOwnership(group_, kOwner).ok());
                                        released = true;
                                      });
                                      started.WaitForNotification();
                                      absl::SleepFor(absl::Milliseconds(200));
                                      EXPECT_FALSE(released.load());  // waits for the group mutex
                                      return absl::OkStatus();
                                    })
                  .ok());
  releaser.join();
  EXPECT_TRUE(released.load());
  EXPECT_TRUE(Group(group_).owner.empty());
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(RegistryDeviceAccessTest);
INSTANTIATE_TEST_SUITE_P(Backends, RegistryDeviceAccessTest,
                         ::testing::ValuesIn(BackendsUnderTest()));

}  // namespace
}  // namespace test
}  // namespace iommud

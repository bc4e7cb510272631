// The release-request bookkeeping (ReleaseRequestTracker) and the arming of device fds, on fakes:
// a pipe is not a VFIO device, so arming it fails (ENOTTY) and the provider refuses to hand it out.
#include "core/host/device_release_requests.h"

#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "gtest/gtest.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace host {
namespace {

using State = ReleaseRequestTracker::State;

TEST(ReleaseRequestTrackerTest, AWaitEndsByRemovalOrByItsDeadline) {
  ReleaseRequestTracker tracker(absl::Seconds(2));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  EXPECT_FALSE(tracker.NextDeadline().has_value());
  EXPECT_TRUE(tracker.Requested("a", t0));
  EXPECT_FALSE(tracker.Requested("a", t0 + absl::Seconds(1)));  // the kernel's repeat
  EXPECT_TRUE(tracker.Requested("b", t0 + absl::Seconds(1)));
  EXPECT_EQ(tracker.NextDeadline(), t0 + absl::Seconds(2));
  EXPECT_TRUE(tracker.Expire(t0 + absl::Seconds(1)).empty());
  EXPECT_EQ(tracker.Expire(t0 + absl::Seconds(2)), std::vector<std::string>{"a"});
  EXPECT_EQ(tracker.StateOf("a"), State::kRevoked);
  EXPECT_FALSE(tracker.Requested("a", t0 + absl::Seconds(12)));  // revoked: repeats ignored
  EXPECT_EQ(tracker.NextDeadline(), t0 + absl::Seconds(3));
  EXPECT_EQ(tracker.Removed("b"), State::kWaiting);  // in time: released
  EXPECT_EQ(tracker.Removed("a"), State::kRevoked);
  EXPECT_EQ(tracker.Removed("a"), State::kNone);
  EXPECT_FALSE(tracker.NextDeadline().has_value());
  EXPECT_TRUE(tracker.Requested("a", t0 + absl::Seconds(20)));  // a new device, a new wait
}

TEST(ArmReleaseRequestTest, ANonVfioFdIsRefused) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd read_end(p[0]), write_end(p[1]);
  EXPECT_ERROR(ArmReleaseRequest(read_end.get(), "0000:00:02.0").status(), kInternal,
               "RELEASE_REQUEST_ARM_FAILED");
}

class PipeFds : public DeviceFdProvider {
 public:
  absl::StatusOr<UniqueFd> DeviceFd(absl::string_view device) override {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return absl::InternalError("pipe");
    read_end = UniqueFd(p[0]);
    write_fd = p[1];
    return UniqueFd(p[1]);
  }
  UniqueFd read_end;
  int write_fd = -1;
};

class RecordingSink : public ReleaseRequestSink {
 public:
  void WatchReleaseRequests(const std::string& device, UniqueFd eventfd) override {
    devices.push_back(device);
  }
  std::vector<std::string> devices;
};

TEST(ReleaseRequestingFdProviderTest, AFdThatCannotBeArmedIsClosedAndRefused) {
  PipeFds inner;
  RecordingSink sink;
  ReleaseRequestingFdProvider provider(&inner, &sink);
  EXPECT_ERROR(provider.DeviceFd("0000:00:02.0").status(), kInternal,
               "RELEASE_REQUEST_ARM_FAILED");
  EXPECT_TRUE(sink.devices.empty());
  EXPECT_EQ(fcntl(inner.write_fd, F_GETFD), -1) << "the refused device fd must be closed";
}

}  // namespace
}  // namespace host
}  // namespace iommud

// Test support for KeepLease streams against an in-process daemon (server/daemon.h) over its unix
// socket: the daemon's options, a client, a leased claim and one stream. Shared by the admission
// and bound-lease tests; every call is synchronous and the stream ends within its deadline.
#ifndef IOMMUD_TESTS_SERVER_API_KEEP_LEASE_STREAM_H_
#define IOMMUD_TESTS_SERVER_API_KEEP_LEASE_STREAM_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clients/cpp/iommud_client.h"
#include "iommu/v1/iommu.pb.h"
#include "server/daemon.h"
#include "server/security/limits.h"
#include "tests/testing/temp_dir.h"

namespace iommud {
namespace test {

// kTestTopology's device alone in its group (daemon_fixture.h); the owner the helpers claim for.
inline constexpr char kLeasedDevice[] = "0000:01:00.0";
inline constexpr char kLeaseOwner[] = "vm-1";

// An in-process daemon's options in `dir`: kTestTopology, no metrics listener, no auditor,
// `limits`. Callers are this test's uid: admin under the default policy.
DaemonOptions InProcessDaemonOptions(const TempDir& dir, const Limits& limits = Limits());

// A client of `target` with the client's default options.
absl::StatusOr<std::unique_ptr<IommuClient>> ConnectTo(const std::string& target);

// Claims kLeasedDevice's group for kLeaseOwner with a lease of `ttl_millis`; the claimed group.
absl::StatusOr<iommu::v1::Group> ClaimLeased(IommuClient& client, uint64_t ttl_millis);

// One KeepLease stream of `client` for `group`, owner kLeaseOwner, ending at `deadline` at the
// latest. Not thread-safe: one test thread drives it.
class KeepLeaseStream {
 public:
  KeepLeaseStream(IommuClient& client, uint64_t group, absl::Duration deadline = absl::Seconds(60));

  // Sends one renewal (binding the ownership to this stream if `bind`) and reads its answer: the
  // group, or the stream's final status once the daemon ended it.
  absl::StatusOr<iommu::v1::Group> Send(bool bind = false);
  // Half-closes, drains and returns the final status.
  absl::Status Close();
  // Cancels the call from the client's side.
  void Cancel() { context_.TryCancel(); }

 private:
  const uint64_t group_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<iommu::v1::KeepLeaseRequest, iommu::v1::Group>> stream_;
};

}  // namespace test
}  // namespace iommud

#endif  // IOMMUD_TESTS_SERVER_API_KEEP_LEASE_STREAM_H_

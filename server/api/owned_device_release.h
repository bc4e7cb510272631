// OwnedDeviceRelease: ReleaseDevice (the API call) of a device whose group is owned follows VFIO's
// vfio_unregister_group_dev (docs/semantics.md "Unplug of an owned device", "ReleaseDevice of an
// owned device"): the owner is asked (RELEASE_REQUESTED), the call waits a bounded time for it to
// let go of the device (its ownership released in any way: ReleaseOwnership,
// ReleaseDeviceOwnership, lease expiry, the bound stream's end, ...), and only then releases the
// device. If the owner does not let go in time the call is refused (FAILED_PRECONDITION
// DEVICE_IN_USE, nothing changed) unless it asked to force, which its caller (IommuService) allows
// admins only: then the owner's mappings are revoked and the device released as before (the leak
// recorded by the registry). The announcement, the revocation and the resolution (RELEASE_RESOLVED,
// iommud_release_requests_total{outcome}) are ReleaseRequests' (server/host/release_request.h),
// shared with the kernel's removal path.
//
// WaitForOwner blocks its thread (it polls the registry): call it on an executor thread, never on a gRPC
// callback thread (IommuService runs ReleaseDevice on an executor of its own). Thread-safe.
#ifndef IOMMUD_SERVER_API_OWNED_DEVICE_RELEASE_H_
#define IOMMUD_SERVER_API_OWNED_DEVICE_RELEASE_H_

#include <atomic>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/registry.h"
#include "server/host/release_request.h"

namespace iommud {

// The longest a ReleaseDevice waits for an owner; a longer request is cut to it.
inline constexpr absl::Duration kMaxReleaseWait = absl::Seconds(60);

class OwnedDeviceRelease {
 public:
  // `requests` is not owned and must outlive this. `default_wait`: the wait of a request that sets
  // none (the daemon's --release_request_timeout).
  explicit OwnedDeviceRelease(const ReleaseRequests* requests,
                              absl::Duration default_wait = absl::Seconds(10),
                              absl::Duration poll = absl::Milliseconds(10));

  void set_default_wait(absl::Duration wait);
  // The wait a request gets: `requested` (default_wait when unset), at most kMaxReleaseWait.
  absl::Duration WaitFor(std::optional<absl::Duration> requested) const;

  // What WaitForOwner decided; Finish needs it.
  struct Plan {
    bool requested = false;  // RELEASE_REQUESTED was emitted: Finish resolves it
    std::string owner;
    GroupId group = 0;
    std::string outcome;     // kReleaseOutcome*: what happened if the release then succeeds
    std::string why;         // revoke_failed's reason
  };
  // Whether `device` is in use by an owner: its binding is USER_OWNED (a group claim, a device
  // claim of it, or a hand-over). Unknown devices are not.
  bool InUse(const std::string& device, std::string* owner, GroupId* group) const;

  // Blocks until `device` may be released: at once when it is unknown or not in use (empty Plan);
  // else after RELEASE_REQUESTED, when the owner has let go (outcome released), or, after `wait`,
  // if `force`: its owner's mappings revoked (revoked / revoke_failed). Otherwise, after `wait`:
  // RELEASE_RESOLVED refused and FAILED_PRECONDITION DEVICE_IN_USE (metadata device, group_id,
  // owner, waited_millis). `stop` is polled while waiting: its error (cancelled, deadline,
  // shutdown) resolves the request as cancelled and is returned. Never changes the registry except
  // for a forced revocation.
  absl::StatusOr<Plan> WaitForOwner(const std::string& device, absl::Duration wait, bool force,
                             const std::function<absl::Status()>& stop) const;
  // After the release itself: resolves a requested release with the plan's outcome, or refused
  // with `released`'s message if the release failed.
  void Finish(const std::string& device, const Plan& plan, const absl::Status& released) const;

 private:
  const ReleaseRequests* const requests_;
  std::atomic<int64_t> default_wait_nanos_;
  const absl::Duration poll_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_API_OWNED_DEVICE_RELEASE_H_

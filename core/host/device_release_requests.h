// The kernel's requests for an owned device back, and the bounded wait for its owner.
//
// Removing a device bound to vfio-pci (hot-unplug, `echo 1 > .../remove`, driver unbind) blocks in
// vfio_unregister_group_dev() until every fd of the device is closed; meanwhile the kernel calls
// vfio-pci's request op, which signals the eventfd userspace registered on
// VFIO_PCI_REQ_IRQ_INDEX (or, with none, logs "No device request channel registered, blocked until
// released by user"), and repeats that every 10 s. iommud hands device fds to owners, so it
// registers its own eventfd on every device fd it hands out (ArmReleaseRequest; the kernel keeps one
// trigger per device, dropped when the device's last fd closes; an owner that registers its own
// replaces iommud's) and answers with a bounded wait (ReleaseRequestTracker).
//
// Errors: RELEASE_REQUEST_ARM_FAILED (eventfd or VFIO_DEVICE_SET_IRQS failed, with the errno).
#ifndef IOMMUD_CORE_HOST_DEVICE_RELEASE_REQUESTS_H_
#define IOMMUD_CORE_HOST_DEVICE_RELEASE_REQUESTS_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/host/device_fd_provider.h"
#include "core/host/unique_fd.h"

namespace iommud {
namespace host {

// A new eventfd (non-blocking, close-on-exec), registered as `device_fd`'s request trigger
// (VFIO_DEVICE_SET_IRQS, VFIO_PCI_REQ_IRQ_INDEX, DATA_EVENTFD | ACTION_TRIGGER). It becomes
// readable each time the kernel asks for the device back. `device` only labels errors.
absl::StatusOr<UniqueFd> ArmReleaseRequest(int device_fd, absl::string_view device);

// Receives the armed eventfds (the daemon's release-request watcher).
class ReleaseRequestSink {
 public:
  virtual ~ReleaseRequestSink() = default;
  // `eventfd` signals requests for `device`; it replaces the one watched for `device` before.
  virtual void WatchReleaseRequests(const std::string& device, UniqueFd eventfd) = 0;
};

// A DeviceFdProvider that arms every fd it hands out (ArmReleaseRequest) and gives the eventfd to
// `sink`. A fd that cannot be armed is refused (and closed): an owner must never hold a device whose
// removal iommud cannot hear about. Thread-safe if `inner` and `sink` are.
class ReleaseRequestingFdProvider final : public DeviceFdProvider {
 public:
  ReleaseRequestingFdProvider(DeviceFdProvider* inner, ReleaseRequestSink* sink)
      : inner_(inner), sink_(sink) {}
  absl::StatusOr<UniqueFd> DeviceFd(absl::string_view device) override;

 private:
  DeviceFdProvider* const inner_;
  ReleaseRequestSink* const sink_;
};

// The bounded wait for the owners of requested devices. Pure bookkeeping (time is passed in);
// not synchronized: its user serializes calls.
class ReleaseRequestTracker {
 public:
  enum class State { kNone, kWaiting, kRevoked };

  explicit ReleaseRequestTracker(absl::Duration timeout) : timeout_(timeout) {}

  // The kernel asked for `device` at `now`. True when this starts a wait (the kernel's repeats
  // while waiting, or after the wait ended in a revocation, return false).
  bool Requested(const std::string& device, absl::Time now);
  // The kernel removed `device`: returns the state it was in, and forgets it.
  State Removed(const std::string& device);
  // The waits that ran out by `now` (in device order); they are kRevoked from now on.
  std::vector<std::string> Expire(absl::Time now);
  // The earliest deadline of a wait, if any.
  std::optional<absl::Time> NextDeadline() const;
  State StateOf(const std::string& device) const;

 private:
  struct Entry {
    State state = State::kNone;
    absl::Time deadline;
  };
  const absl::Duration timeout_;
  std::map<std::string, Entry> entries_;
};

}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_CORE_HOST_DEVICE_RELEASE_REQUESTS_H_

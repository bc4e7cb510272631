// HostEventWatcher: the daemon's two threads that hear the kernel for --backend=linux and hand what
// they hear to a DeviceRemovalCoordinator:
//   - the uevent thread reads the kernel's uevents (a UeventSource: the netlink socket, or a test's
//     script) and passes each on (OnUevent);
//   - the request thread polls the release-request eventfds of the device fds handed out
//     (WatchReleaseRequests, fed by host::ReleaseRequestingFdProvider) and the coordinator's
//     deadlines (OnReleaseRequested, Tick).
// A device's eventfd is dropped when the kernel removes the device, a new fd of it is armed, or
// (checked every `poll_interval`) no fd of it can be open any more (MayHaveDeviceFds). No request
// is lost to a re-arming: an eventfd replaced while signalled (the kernel's request came before the
// request thread polled it) counts as a request. Eventfds are level-triggered, so a request that
// comes before the request thread polls a newly armed eventfd is heard at its first poll.
// (A request the kernel makes before the device fd is armed at all, i.e. a removal that started
// while iommud was opening the fd, reaches no eventfd: the kernel repeats it every 10 s.)
// Neither thread ever blocks on the kernel's removal: they wait only in poll / the source's Next,
// with a bounded timeout, so Stop() returns within about `poll_interval`.
// Thread-safe.
#ifndef IOMMUD_SERVER_HOST_HOST_EVENT_WATCHER_H_
#define IOMMUD_SERVER_HOST_HOST_EVENT_WATCHER_H_

#include <cstdint>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/host/device_release_requests.h"
#include "core/host/uevent_monitor.h"
#include "core/host/unique_fd.h"
#include "server/host/device_removal.h"

namespace iommud {

class HostEventWatcher final : public host::ReleaseRequestSink {
 public:
  // `coordinator` is not owned and must outlive the watcher. `uevents` may be null (no uevent
  // thread).
  HostEventWatcher(DeviceRemovalCoordinator* coordinator,
                   std::unique_ptr<host::UeventSource> uevents,
                   absl::Duration poll_interval = absl::Milliseconds(200));
  ~HostEventWatcher() override;  // Stop()

  void Start();
  void Stop();  // idempotent

  // host::ReleaseRequestSink.
  void WatchReleaseRequests(const std::string& device, host::UniqueFd eventfd) override;

  size_t watched() const;  // eventfds currently watched

 private:
  void UeventLoop();
  void RequestLoop();
  // Drops `device`'s eventfd (only the arming `generation`, if given).
  void Drop(const std::string& device, std::optional<uint64_t> generation = std::nullopt);
  // Drops the eventfds of devices no fd of which can be open any more.
  void DropUnused();
  void Wake();

  DeviceRemovalCoordinator* const coordinator_;
  const std::unique_ptr<host::UeventSource> uevents_;
  const absl::Duration poll_interval_;
  host::UniqueFd wake_;  // eventfd: the watched set changed, or Stop()

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  struct Watched {
    host::UniqueFd fd;
    uint64_t generation = 0;  // which arming it is (a sweep drops only the one it checked)
  };
  std::map<std::string, Watched> eventfds_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  // Replaced or dropped eventfds, closed by the request thread between polls (so a descriptor it
  // polls is never closed and reused under it).
  std::vector<host::UniqueFd> retired_ ABSL_GUARDED_BY(mu_);
  // Devices whose replaced eventfd had been signalled before it was replaced: the request thread
  // passes them on (OnReleaseRequested) before its next poll.
  std::vector<std::string> requested_ ABSL_GUARDED_BY(mu_);
  std::thread uevent_thread_;
  std::thread request_thread_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_HOST_HOST_EVENT_WATCHER_H_

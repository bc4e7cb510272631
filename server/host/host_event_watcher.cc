#include "core/sync.h"
#include "server/host/host_event_watcher.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <utility>

namespace iommud {
namespace {

void DrainEventfd(int fd) {
  uint64_t count = 0;
  while (::read(fd, &count, sizeof(count)) == sizeof(count)) {
  }
}

// Whether `fd` (an eventfd) has been signalled and not drained yet; drains it if so. Never blocks
// (also on an eventfd opened without EFD_NONBLOCK).
bool TakeSignal(int fd) {
  pollfd ready = {fd, POLLIN, 0};
  if (::poll(&ready, 1, 0) != 1 || (ready.revents & POLLIN) == 0) return false;
  uint64_t count = 0;
  return ::read(fd, &count, sizeof(count)) == sizeof(count) && count != 0;
}

}  // namespace

HostEventWatcher::HostEventWatcher(DeviceRemovalCoordinator* coordinator,
                                   std::unique_ptr<host::UeventSource> uevents,
                                   absl::Duration poll_interval)
    : coordinator_(coordinator),
      uevents_(std::move(uevents)),
      poll_interval_(poll_interval),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

HostEventWatcher::~HostEventWatcher() { Stop(); }

void HostEventWatcher::Start() {
  if (uevents_ != nullptr) uevent_thread_ = std::thread([this] { UeventLoop(); });
  request_thread_ = std::thread([this] { RequestLoop(); });
}

void HostEventWatcher::Stop() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  Wake();
  if (uevent_thread_.joinable()) uevent_thread_.join();
  if (request_thread_.joinable()) request_thread_.join();
}

void HostEventWatcher::Wake() {
  const uint64_t one = 1;
  if (wake_.valid()) (void)!::write(wake_.get(), &one, sizeof(one));
}

void HostEventWatcher::WatchReleaseRequests(const std::string& device, host::UniqueFd eventfd) {
  {
    MutexLock lock(&mu_);
    Watched& slot = eventfds_[device];
    if (slot.fd.valid()) {
      // The kernel may have signalled the eventfd being replaced (its removal of the device
      // started) before the request thread polled it: that request is kept, not retired with it
      // (the kernel repeats a request only every 10 s, to the new eventfd).
      if (TakeSignal(slot.fd.get())) requested_.push_back(device);
      retired_.push_back(std::move(slot.fd));
    }
    slot.fd = std::move(eventfd);
    slot.generation = ++generation_;
  }
  Wake();
}

void HostEventWatcher::Drop(const std::string& device, std::optional<uint64_t> generation) {
  {
    MutexLock lock(&mu_);
    auto it = eventfds_.find(device);
    if (it == eventfds_.end()) return;
    if (generation.has_value() && it->second.generation != *generation) return;  // re-armed
    retired_.push_back(std::move(it->second.fd));
    eventfds_.erase(it);
  }
  Wake();
}

size_t HostEventWatcher::watched() const {
  MutexLock lock(&mu_);
  return eventfds_.size();
}

void HostEventWatcher::UeventLoop() {
  while (true) {
    {
      MutexLock lock(&mu_);
      if (stopping_) return;
    }
    absl::StatusOr<std::optional<host::Uevent>> next = uevents_->Next(poll_interval_);
    if (!next.ok()) {  // a broken socket: do not spin on it
      absl::SleepFor(poll_interval_);
      continue;
    }
    if (!next->has_value()) continue;
    const host::Uevent& event = **next;
    coordinator_->OnUevent(event, absl::Now());
    if (event.action == "remove" && !event.PciDevice().empty()) Drop(event.PciDevice());
  }
}

void HostEventWatcher::RequestLoop() {
  absl::Time next_sweep = absl::Now() + poll_interval_;
  while (true) {
    std::vector<pollfd> fds;
    std::vector<std::string> devices;
    std::vector<std::string> requested;
    {
      MutexLock lock(&mu_);
      if (stopping_) return;
      retired_.clear();  // nothing polls them any more
      requested.swap(requested_);
      fds.push_back({wake_.get(), POLLIN, 0});
      for (const auto& [device, watched] : eventfds_) {
        fds.push_back({watched.fd.get(), POLLIN, 0});
        devices.push_back(device);
      }
    }
    for (const std::string& device : requested) {
      coordinator_->OnReleaseRequested(device, absl::Now());
    }
    absl::Duration wait = poll_interval_;
    if (std::optional<absl::Time> deadline = coordinator_->NextDeadline()) {
      wait = std::min(wait, std::max(absl::ZeroDuration(), *deadline - absl::Now()));
    }
    const int ready = ::poll(fds.data(), fds.size(),
                             static_cast<int>(absl::ToInt64Milliseconds(wait)) + 1);
    if (ready > 0) {
      if ((fds[0].revents & POLLIN) != 0) DrainEventfd(fds[0].fd);
      for (size_t i = 1; i < fds.size(); ++i) {
        if ((fds[i].revents & POLLIN) == 0) continue;
        DrainEventfd(fds[i].fd);
        coordinator_->OnReleaseRequested(devices[i - 1], absl::Now());
      }
    }
    coordinator_->Tick(absl::Now());
    if (absl::Now() >= next_sweep) {
      DropUnused();
      next_sweep = absl::Now() + poll_interval_;
    }
  }
}

void HostEventWatcher::DropUnused() {
  std::vector<std::pair<std::string, uint64_t>> devices;
  {
    MutexLock lock(&mu_);
    for (const auto& [device, watched] : eventfds_) devices.emplace_back(device, watched.generation);
  }
  for (const auto& [device, generation] : devices) {
    if (!coordinator_->MayHaveDeviceFds(device)) Drop(device, generation);
  }
}

}  // namespace iommud

#include "core/host/device_release_requests.h"

#include <linux/vfio.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/error_reasons.h"
#include "core/host/errno_error.h"

namespace iommud {
namespace host {

absl::StatusOr<UniqueFd> ArmReleaseRequest(int device_fd, absl::string_view device) {
  UniqueFd eventfd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!eventfd.valid()) {
    const int err = errno;
    return ErrnoError(CodeForErrno(err), reason::kReleaseRequestArmFailed,
                      absl::StrCat("eventfd for the release requests of ", device), err,
                      {{"device", std::string(device)}});
  }
  alignas(vfio_irq_set) char buffer[sizeof(vfio_irq_set) + sizeof(int32_t)] = {};
  auto* irq_set = reinterpret_cast<vfio_irq_set*>(buffer);
  irq_set->argsz = sizeof(buffer);
  irq_set->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
  irq_set->index = VFIO_PCI_REQ_IRQ_INDEX;
  irq_set->start = 0;
  irq_set->count = 1;
  const int32_t fd = eventfd.get();
  std::memcpy(irq_set->data, &fd, sizeof(fd));
  if (::ioctl(device_fd, VFIO_DEVICE_SET_IRQS, irq_set) != 0) {
    const int err = errno;
    return ErrnoError(CodeForErrno(err), reason::kReleaseRequestArmFailed,
                      absl::StrCat("VFIO_DEVICE_SET_IRQS (request eventfd) of ", device), err,
                      {{"device", std::string(device)}});
  }
  return eventfd;
}

absl::StatusOr<UniqueFd> ReleaseRequestingFdProvider::DeviceFd(absl::string_view device) {
  absl::StatusOr<UniqueFd> fd = inner_->DeviceFd(device);
  if (!fd.ok()) return fd;
  absl::StatusOr<UniqueFd> armed = ArmReleaseRequest(fd->get(), device);
  if (!armed.ok()) return armed.status();  // `fd` closes here
  sink_->WatchReleaseRequests(std::string(device), *std::move(armed));
  return fd;
}

bool ReleaseRequestTracker::Requested(const std::string& device, absl::Time now) {
  Entry& entry = entries_[device];
  if (entry.state != State::kNone) return false;
  entry.state = State::kWaiting;
  entry.deadline = now + timeout_;
  return true;
}

ReleaseRequestTracker::State ReleaseRequestTracker::Removed(const std::string& device) {
  auto it = entries_.find(device);
  if (it == entries_.end()) return State::kNone;
  const State state = it->second.state;
  entries_.erase(it);
  return state;
}

std::vector<std::string> ReleaseRequestTracker::Expire(absl::Time now) {
  std::vector<std::string> expired;
  for (auto& [device, entry] : entries_) {
    if (entry.state == State::kWaiting && entry.deadline <= now) {
      entry.state = State::kRevoked;
      expired.push_back(device);
    }
  }
  return expired;
}

std::optional<absl::Time> ReleaseRequestTracker::NextDeadline() const {
  std::optional<absl::Time> next;
  for (const auto& [device, entry] : entries_) {
    if (entry.state != State::kWaiting) continue;
    if (!next.has_value() || entry.deadline < *next) next = entry.deadline;
  }
  return next;
}

ReleaseRequestTracker::State ReleaseRequestTracker::StateOf(const std::string& device) const {
  auto it = entries_.find(device);
  return it == entries_.end() ? State::kNone : it->second.state;
}

}  // namespace host
}  // namespace iommud

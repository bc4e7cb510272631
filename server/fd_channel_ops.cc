#include "server/fd_channel_ops.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"

namespace iommud {

absl::StatusOr<RegisteredRegion> RegistryFdChannelOps::RegisterMemory(
    absl::string_view owner, uint64_t size, std::unique_ptr<ProcessMemory> memory) {
  // No reason of its own: on the wire the reason is the code's name, UNIMPLEMENTED, as for any
  // feature a server lacks (docs/errors.md "Statuses without a reason of their own").
  return absl::UnimplementedError(
      absl::StrCat("this iommud does not register memory regions yet (owner '", owner, "', ",
                   size, " bytes)"));
}

absl::StatusOr<host::UniqueFd> RegistryFdChannelOps::OpenDevice(absl::string_view device,
                                                                absl::string_view owner) {
  host::UniqueFd fd;
  absl::Status status = registry_->WithOwnedDevice(device, owner, [&]() -> absl::Status {
    if (device_fds_ == nullptr) {
      return Error(absl::StatusCode::kFailedPrecondition, reason::kNoDeviceFds,
                   "the backend does not drive VFIO devices, so it has no device fds",
                   {{"device", std::string(device)}});
    }
    absl::StatusOr<host::UniqueFd> opened = device_fds_->DeviceFd(device);
    if (!opened.ok()) return opened.status();
    fd = std::move(*opened);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return fd;
}

}  // namespace iommud

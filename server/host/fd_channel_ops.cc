#include "server/host/fd_channel_ops.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "server/host/kept_memory.h"

namespace iommud {

absl::StatusOr<RegisteredRegion> RegistryFdChannelOps::RegisterMemory(
    absl::string_view owner, uint64_t size, std::unique_ptr<ProcessMemory> memory,
    host::UniqueFd file) {
  std::shared_ptr<KeptMemoryHandle> kept;
  if (keeper_ != nullptr) {
    kept = std::make_shared<KeptMemoryHandle>(keeper_, std::move(file));
    memory = std::make_unique<KeptMemory>(std::move(memory), kept);
  }
  absl::StatusOr<MemoryRegionInfo> region =
      registry_->RegisterMemory(owner, size, std::move(memory));
  if (!region.ok()) return region.status();
  if (kept != nullptr) {
    absl::Status stored =
        kept->KeepAs(host::MemoryFdName({region->id, region->base, region->size, region->owner}));
    if (!stored.ok()) {
      (void)registry_->UnregisterMemory(region->id, region->owner);
      return stored;
    }
  }
  return RegisteredRegion{region->id, region->base, region->size};
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

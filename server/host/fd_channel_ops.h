// FdChannelOps: what the fd side channel (server/host/fd_channel.h) asks of the daemon once a
// request is parsed, authorized and its owner rewritten; and RegistryFdChannelOps, the daemon's
// implementation over the Registry and the backend's VFIO device fds.
//
// Thread safety: the channel calls one method at a time from its serving thread; implementations
// must still be thread-safe against the rest of the daemon (the registry is).
#ifndef IOMMUD_SERVER_HOST_FD_CHANNEL_OPS_H_
#define IOMMUD_SERVER_HOST_FD_CHANNEL_OPS_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/host/device_fd_provider.h"
#include "core/host/fd_keeper.h"
#include "core/host/unique_fd.h"
#include "core/memory_resolver.h"
#include "core/registry.h"

namespace iommud {

// A registered memory region, as FdResponse.region reports it.
struct RegisteredRegion {
  uint64_t id = 0;
  uint64_t base = 0;  // start in the registry's region address space
  uint64_t size = 0;
};

class FdChannelOps {
 public:
  virtual ~FdChannelOps() = default;

  // Registers `memory` (`size` bytes, already mapped from `file`: core/host/mapped_file.h) as a
  // region of `owner`, which keeps it until the region is unregistered. `file` is the client's fd
  // (the implementation may keep a copy, e.g. in the fd store). A failure changes nothing (and
  // `memory` is unmapped when it goes away).
  virtual absl::StatusOr<RegisteredRegion> RegisterMemory(absl::string_view owner, uint64_t size,
                                                          std::unique_ptr<ProcessMemory> memory,
                                                          host::UniqueFd file) = 0;

  // A new VFIO device fd of `device` for `owner`, which must own the device's group and have
  // attached it to one of its domains.
  virtual absl::StatusOr<host::UniqueFd> OpenDevice(absl::string_view device,
                                                    absl::string_view owner) = 0;
};

// The daemon's FdChannelOps. Neither pointer is owned; both must outlive this object.
class RegistryFdChannelOps : public FdChannelOps {
 public:
  // `device_fds` null: the backend drives no VFIO devices (software, emulated).
  // `keeper` (may be null; not owned): where registered memory files are kept across a restart.
  RegistryFdChannelOps(Registry* registry, host::DeviceFdProvider* device_fds,
                       host::FdKeeper* keeper = nullptr)
      : registry_(registry), device_fds_(device_fds), keeper_(keeper) {}

  // Registry::RegisterMemory(owner, size, memory): a process-memory region (its errors:
  // INVALID_REGION_SIZE, REGION_SPACE_EXHAUSTED, ...). A failure registers nothing and `memory` is
  // unmapped. With a keeper, `file` is kept under host::MemoryFdName (server/host/kept_memory.h)
  // once registered; if the keeper refuses it, the region is unregistered again and its error
  // returned.
  absl::StatusOr<RegisteredRegion> RegisterMemory(absl::string_view owner, uint64_t size,
                                                  std::unique_ptr<ProcessMemory> memory,
                                                  host::UniqueFd file) override;

  // Registry::WithOwnedDevice(device, owner, DeviceFd(device)): the fd is made under the group's
  // mutex, so the group cannot change hands or domains meanwhile. Errors: those of
  // WithOwnedDevice (DEVICE_NOT_FOUND, GROUP_NOT_OWNED, NOT_OWNER, GROUP_NOT_ATTACHED), the
  // provider's (GROUP_NOT_ATTACHED, DEVICE_FD_FAILED, ...), and FAILED_PRECONDITION
  // (NO_DEVICE_FDS) without a provider, checked after the registry's rules.
  absl::StatusOr<host::UniqueFd> OpenDevice(absl::string_view device,
                                            absl::string_view owner) override;

 private:
  Registry* const registry_;
  host::DeviceFdProvider* const device_fds_;
  host::FdKeeper* const keeper_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_HOST_FD_CHANNEL_OPS_H_

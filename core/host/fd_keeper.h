// FdKeeper: somewhere outside this process that keeps copies of file descriptors across a restart
// (systemd's fd store: server/host/fd_store.h implements it), as the linux backend and the fd
// channel see it. core/ does not depend on libsystemd; the daemon hands the backend one of these.
//
// What is kept, under which name (names are stable, so that FDSTOREREMOVE finds them):
//   group-<kernel group>                 an open /dev/vfio/<group> (the DMA ownership), kept from
//                                        the claim until the group is given back;
//   container-<unit>-<domain id>         the VFIO container of a user (UNMANAGED) domain, kept from
//                                        AllocDomain until FreeDomain (its mappings live in it);
//   memory-<id>-<base>-<size>-<owner>    a registered memory region's memfd (hex base and size, the
//                                        owner %-escaped), kept until the region is unregistered.
// A restarted daemon takes them back (TakeBack) and adopts them instead of re-creating the kernel
// objects (docs/semantics.md "Crash and restart on a real host").
//
// Thread safety: implementations are thread-safe.
// Errors: the implementation's (server/host/fd_store.h: FD_STORE_UNAVAILABLE, FD_STORE_FAILED,
// INVALID_ARGUMENT for a name it refuses).
#ifndef IOMMUD_CORE_HOST_FD_KEEPER_H_
#define IOMMUD_CORE_HOST_FD_KEEPER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/host/unique_fd.h"
#include "core/types.h"

namespace iommud {
namespace host {

class FdKeeper {
 public:
  virtual ~FdKeeper() = default;
  // Keeps a copy of `fd` under `name` (the caller keeps `fd`).
  virtual absl::Status Keep(absl::string_view name, int fd) = 0;
  // Forgets every copy kept under `name`.
  virtual absl::Status Drop(absl::string_view name) = 0;
  // The fd a previous process kept under `name`, now the caller's; invalid if there is none.
  virtual UniqueFd TakeBack(absl::string_view name) = 0;
  // The names of the handed-back fds nobody took yet.
  virtual std::vector<std::string> Untaken() const = 0;
};

std::string GroupFdName(int group);
std::string ContainerFdName(absl::string_view unit, DomainId domain);
// Parses a ContainerFdName; nullopt for another name.
struct ContainerName {
  std::string unit;
  DomainId domain = 0;
};
std::optional<ContainerName> ParseContainerFdName(absl::string_view name);

struct MemoryFdInfo {
  uint64_t id = 0;
  uint64_t base = 0;
  uint64_t size = 0;
  std::string owner;
};
std::string MemoryFdName(const MemoryFdInfo& region);
std::optional<MemoryFdInfo> ParseMemoryFdName(absl::string_view name);

}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_CORE_HOST_FD_KEEPER_H_

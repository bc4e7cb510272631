// Backends by name: `--backend=software|emulated|linux` picks one.
#ifndef IOMMUD_CORE_BACKEND_BACKEND_FACTORY_H_
#define IOMMUD_CORE_BACKEND_BACKEND_FACTORY_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/backend/iommu_backend.h"
#include "core/crash_points.h"
#include "core/fault_injector.h"
#include "core/memory_resolver.h"

namespace iommud {

namespace host {
class FdKeeper;  // core/host/fd_keeper.h
}  // namespace host

// Backend-specific settings, e.g. {"memory_file": "/var/lib/iommud/hw.mem"} for the emulated one.
// A backend rejects keys it does not know with INVALID_ARGUMENT.
using BackendOptions = std::map<std::string, std::string>;

// What the daemon hands a backend besides its options. Every member is optional.
struct BackendHooks {
  // Called before every write the backend makes to state that outlives the process (the emulated
  // backend's memory file); a backend with no such state never calls it. See core/crash_points.h.
  DurableStepHook before_durable_write;
  // Where registered memory lives in this process (not owned; outlives the backend). Backends that
  // map process memory (linux) need it and refuse to start without it; the others ignore it.
  const MemoryResolver* memory = nullptr;
  // Scripted faults at the backend's own steps (not owned; null: none; the injector of the daemon
  // or test that creates the backend, never a process-wide one): pgtable.alloc (software,
  // emulated), cmdq.sync_timeout (emulated), host.* (linux). These points carry no fault scope
  // (FaultInjector::Add refuses group/device scopes on them).
  FaultInjector* faults = nullptr;
  // Where the linux backend keeps its kernel objects' fds across a restart and takes them back
  // from (core/host/fd_keeper.h; not owned; outlives the backend; null: none).
  host::FdKeeper* fd_keeper = nullptr;
};

using BackendFactory = std::function<absl::StatusOr<std::unique_ptr<IommuBackend>>(
    const BackendOptions&, const BackendHooks&)>;

// Registers `factory` under `name`. ALREADY_EXISTS if the name is taken. Thread-safe.
absl::Status RegisterBackend(absl::string_view name, BackendFactory factory);

// Creates the backend registered as `name` (the built-in ones are always registered).
// NOT_FOUND (reason UNKNOWN_BACKEND) for an unknown name.
absl::StatusOr<std::unique_ptr<IommuBackend>> CreateBackend(absl::string_view name,
                                                            const BackendOptions& options = {},
                                                            const BackendHooks& hooks = {});

// Registered names, sorted.
std::vector<std::string> BackendNames();

}  // namespace iommud

#endif  // IOMMUD_CORE_BACKEND_BACKEND_FACTORY_H_

// Helpers turning iommud's command-line flags into DaemonOptions (the flags themselves are defined
// in main.cc). Errors are INVALID_ARGUMENT (INVALID_FLAG) naming the flag.
#ifndef IOMMUD_SERVER_DAEMON_FLAGS_H_
#define IOMMUD_SERVER_DAEMON_FLAGS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/backend/backend_factory.h"
#include "core/types.h"

namespace iommud {

// --fd_store: whether the linux backend keeps its kernel objects' fds (and the fd channel its
// memory files) in systemd's fd store (server/host/fd_store.h), so that a restart adopts them.
enum class FdStoreMode {
  kAuto,      // iff NOTIFY_SOCKET names a service manager and the backend is linux
  kOff,       // never
  kRequired,  // the backend must be linux and NOTIFY_SOCKET set (FD_STORE_UNAVAILABLE otherwise)
};

// "key=value" entries (--backend_opt) -> BackendOptions. An entry without '=' or with an empty key,
// or a key given twice, is an error. The value may contain '='.
absl::StatusOr<BackendOptions> ParseBackendOptions(const std::vector<std::string>& entries);

// --default_domain_type: "DMA", "DMA_FQ" or "IDENTITY" (any case).
absl::StatusOr<DomainType> ParseDefaultDomainType(absl::string_view value);

// --fd_store: "auto", "off" or "required" (INVALID_ARGUMENT INVALID_FLAG otherwise).
absl::StatusOr<FdStoreMode> ParseFdStoreMode(absl::string_view value);

// Lets every flag be spelled with dashes as well as underscores (--insecure-tcp = --insecure_tcp,
// --state-dir = --state_dir): rewrites, in place, '-' to '_' in the name part (up to '=') of each
// argument that starts with "--" and a letter, before absl parses argv. Values given as separate
// arguments, and everything after "--", are left alone.
void NormalizeFlagNames(int argc, char** argv);

// Absl flags keep only the last value of a flag given several times. This removes every occurrence
// of `--name=VALUE`, `--name VALUE` (and the single-dash forms) from argv, before absl parses it,
// and returns the values in order. `argc`/`argv` are updated in place; a trailing `--name` without
// a value is left for absl to report. Stops at "--".
std::vector<std::string> ExtractRepeatedFlag(absl::string_view name, int* argc, char** argv);

}  // namespace iommud

#endif  // IOMMUD_SERVER_DAEMON_FLAGS_H_

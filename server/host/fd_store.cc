#include "server/host/fd_store.h"

#include <fcntl.h>
#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/sync.h"

namespace iommud {
namespace {

absl::Status Send(const std::string& state, const int* fds, unsigned n_fds, absl::string_view name) {
  const int sent = sd_pid_notify_with_fds(0, 0, state.c_str(), fds, n_fds);
  if (sent > 0) return absl::OkStatus();
  if (sent == 0) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kFdStoreUnavailable,
                 "no service manager to keep file descriptors (NOTIFY_SOCKET is not set)",
                 {{"name", std::string(name)}});
  }
  return Error(absl::StatusCode::kInternal, reason::kFdStoreFailed,
               absl::StrCat("sending to the service manager's fd store failed: ",
                            std::strerror(-sent)),
               {{"name", std::string(name)}});
}

}  // namespace

bool ValidFdStoreName(absl::string_view name) {
  if (name.empty() || name.size() > 255) return false;
  for (char c : name) {
    if (c < 0x21 || c > 0x7e || c == ':') return false;
  }
  return true;
}

std::unique_ptr<FdStore> FdStore::FromEnvironment() {
  const char* notify = std::getenv("NOTIFY_SOCKET");
  std::unique_ptr<FdStore> store(new FdStore(notify != nullptr && notify[0] != '\0'));
  char** names = nullptr;
  const int n = sd_listen_fds_with_names(/*unset_environment=*/1, &names);
  MutexLock lock(&store->mu_);
  for (int i = 0; i < n; ++i) {
    const int fd = SD_LISTEN_FDS_START + i;
    (void)::fcntl(fd, F_SETFD, FD_CLOEXEC);
    const std::string name = names != nullptr && names[i] != nullptr ? names[i] : "unknown";
    store->adopted_.emplace(name, host::UniqueFd(fd));
  }
  if (names != nullptr) {
    for (int i = 0; i < n; ++i) std::free(names[i]);
    std::free(names);
  }
  return store;
}

absl::Status FdStore::Store(absl::string_view name, int fd) {
  if (!ValidFdStoreName(name)) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidArgument,
                 absl::StrCat("'", name, "' is not a valid FDNAME (1-255 printable characters, "
                              "no ':')"),
                 {{"name", std::string(name)}});
  }
  return Send(absl::StrCat("FDSTORE=1\nFDNAME=", name), &fd, 1, name);
}

absl::Status FdStore::Remove(absl::string_view name) {
  if (!ValidFdStoreName(name)) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidArgument,
                 absl::StrCat("'", name, "' is not a valid FDNAME"), {{"name", std::string(name)}});
  }
  return Send(absl::StrCat("FDSTOREREMOVE=1\nFDNAME=", name), nullptr, 0, name);
}

host::UniqueFd FdStore::Take(absl::string_view name) {
  MutexLock lock(&mu_);
  auto it = adopted_.find(std::string(name));
  if (it == adopted_.end()) return host::UniqueFd();
  host::UniqueFd fd = std::move(it->second);
  adopted_.erase(it);
  return fd;
}

std::vector<std::string> FdStore::Untaken() const {
  MutexLock lock(&mu_);
  std::vector<std::string> names;
  for (const auto& entry : adopted_) names.push_back(entry.first);
  return names;
}

}  // namespace iommud

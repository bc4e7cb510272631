#include "server/security/tls_file_stager.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/status_macros.h"
#include "core/sync.h"
#include "server/observability/log.h"

namespace iommud {
namespace {

absl::Status StagingError(const std::string& path, absl::string_view what) {
  return Error(absl::StatusCode::kFailedPrecondition, reason::kTlsStagingFailed,
               absl::StrCat("cannot ", what, " ", path, ": ", std::strerror(errno)),
               {{"path", path}});
}

// Writes `content` to `path` (mode 0600) through a temporary file renamed over it.
absl::Status WritePrivateFile(const std::string& path, const std::string& content) {
  const std::string temporary = path + ".tmp";
  const int fd = open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return StagingError(temporary, "create");
  size_t written = 0;
  while (written < content.size()) {
    const ssize_t n = write(fd, content.data() + written, content.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      absl::Status error = StagingError(temporary, "write");
      close(fd);
      unlink(temporary.c_str());
      return error;
    }
    written += static_cast<size_t>(n);
  }
  if (close(fd) != 0 || rename(temporary.c_str(), path.c_str()) != 0) {
    absl::Status error = StagingError(path, "write");
    unlink(temporary.c_str());
    return error;
  }
  return absl::OkStatus();
}

bool SameContents(const TlsFileContents& a, const TlsFileContents& b) {
  return a.cert == b.cert && a.key == b.key && a.client_ca == b.client_ca;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TlsFileStager>> TlsFileStager::Start(
    const TcpSecurityOptions& options, const std::string& dir) {
  ASSIGN_OR_RETURN(const TlsFileContents contents, ReadTlsFiles(options));
  RETURN_IF_ERROR(CheckTlsContents(options, contents));
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return StagingError(dir, "create");
  if (chmod(dir.c_str(), 0700) != 0) return StagingError(dir, "chmod");
  std::unique_ptr<TlsFileStager> stager(new TlsFileStager(options, dir));
  {
    MutexLock lock(&stager->poll_mu_);
    RETURN_IF_ERROR(stager->Stage(contents));
    stager->staged_versions_ = 0;  // the first does not count
  }
  if (options.tls_refresh_interval != absl::InfiniteDuration()) {
    stager->thread_ = std::thread([s = stager.get()] { s->Loop(); });
  }
  return stager;
}

TlsFileStager::~TlsFileStager() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
    stop_changed_.SignalAll();
  }
  if (thread_.joinable()) thread_.join();
  unlink(identity_path().c_str());
  unlink(client_ca_path().c_str());
  rmdir(dir_.c_str());  // fails harmlessly if something else is in it
}

absl::Status TlsFileStager::Stage(const TlsFileContents& contents) {
  // Key first: gRPC reads the key and then the chain from this one file.
  RETURN_IF_ERROR(WritePrivateFile(identity_path(), contents.key + "\n" + contents.cert));
  RETURN_IF_ERROR(WritePrivateFile(client_ca_path(), contents.client_ca));
  staged_ = contents;
  ++staged_versions_;
  return absl::OkStatus();
}

absl::Status TlsFileStager::PollOnce() {
  MutexLock lock(&poll_mu_);
  absl::StatusOr<TlsFileContents> contents = ReadTlsFiles(options_);
  absl::Status status = contents.status();
  if (status.ok()) {
    if (SameContents(*contents, staged_)) {
      last_refused_.clear();
      return absl::OkStatus();
    }
    status = CheckTlsContents(options_, *contents);
    if (status.ok()) status = Stage(*contents);
    if (status.ok()) {
      last_refused_.clear();
      LogToStderr(LogLevel::kInfo, "tls: serving the replaced certificate files");
      return absl::OkStatus();
    }
  }
  const std::string message(status.message());
  if (message != last_refused_) {  // once per refused version
    last_refused_ = message;
    ++rejected_versions_;
    LogToStderr(LogLevel::kWarning,
                absl::StrCat("tls: ignoring the replaced files, still serving the last good ones: ",
                             message, " (", ErrorReason(status), ")"));
  }
  return status;
}

int64_t TlsFileStager::staged_versions() const {
  MutexLock lock(&poll_mu_);
  return staged_versions_;
}

int64_t TlsFileStager::rejected_versions() const {
  MutexLock lock(&poll_mu_);
  return rejected_versions_;
}

void TlsFileStager::Loop() {
  for (;;) {
    {
      MutexLock lock(&mu_);
      const absl::Time next = absl::Now() + options_.tls_refresh_interval;
      while (!stop_ && !WaitWithDeadline(&stop_changed_, &mu_, next)) {
      }
      if (stop_) return;
    }
    (void)PollOnce();  // logs refusals itself
  }
}

}  // namespace iommud

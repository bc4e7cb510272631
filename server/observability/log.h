// iommud's log lines: "<time> <TAG> iommud: <message>" on stderr, e.g.
//   2026-12-06T21:40:46.123456Z INFO iommud: serving on unix:/run/iommud/iommud.sock
//   2026-12-06T21:41:02.000017Z AUDIT iommud: audit: denied Map to uid:1000 role viewer ...
// The time is UTC with microseconds; TAG is the level (ERROR, WARN, INFO, DEBUG), or AUDIT for
// authorization denials, which are always written and can be split off by their tag
// (`grep ' AUDIT '`; journald: `journalctl -u iommud | grep ' AUDIT '`). Lines below the
// Logger's level (--log_level, or --v) are dropped.
//
// Why not a library: Debian 12's Abseil (20220623) has no absl/log, and glog or spdlog would be a
// new dependency of both builds (CMake and the offline Bazel setup, third_party/bazel) and of the
// runtime package for a few dozen lines a day; one small module here does it (docs/building.md).
#ifndef IOMMUD_SERVER_OBSERVABILITY_LOG_H_
#define IOMMUD_SERVER_OBSERVABILITY_LOG_H_

#include <cstdio>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace iommud {

enum class LogLevel { kError = 0, kWarning = 1, kInfo = 2, kDebug = 3 };

// "error", "warning" (or "warn"), "info", "debug" (any case), or the number 0..3 (--v);
// INVALID_ARGUMENT (INVALID_FLAG) otherwise.
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view text);
// ERROR, WARN, INFO, DEBUG.
absl::string_view LogLevelTag(LogLevel level);

// One line, without its newline: "<time> <tag> iommud: <message>".
std::string FormatLogLine(absl::Time time, absl::string_view tag, absl::string_view message);

// Writes one line "<now> <tag of level> iommud: <message>" to stderr, whatever the level: for the
// few warnings of parts that are given no Logger (the lease reaper, request ids, the unix
// listener, TLS rotation), so that every line of the daemon has a time and a level.
void LogToStderr(LogLevel level, absl::string_view message);

// Writes log lines to a FILE (stderr), whole lines at a time, flushed. Thread-safe.
class Logger {
 public:
  // `out` is not owned and must outlive the Logger.
  explicit Logger(LogLevel level = LogLevel::kInfo, std::FILE* out = stderr);
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  LogLevel level() const { return level_; }
  bool Enabled(LogLevel level) const { return level <= level_; }
  void Log(LogLevel level, absl::string_view message) ABSL_LOCKS_EXCLUDED(mu_);
  void Error(absl::string_view message) { Log(LogLevel::kError, message); }
  void Warning(absl::string_view message) { Log(LogLevel::kWarning, message); }
  void Info(absl::string_view message) { Log(LogLevel::kInfo, message); }
  void Debug(absl::string_view message) { Log(LogLevel::kDebug, message); }
  // An audit line (authorization denials): tag AUDIT, message prefixed "audit: ", at every level.
  void Audit(absl::string_view message) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Write(absl::string_view tag, absl::string_view message) ABSL_LOCKS_EXCLUDED(mu_);

  const LogLevel level_;
  absl::Mutex mu_;
  std::FILE* const out_ ABSL_PT_GUARDED_BY(mu_);
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_OBSERVABILITY_LOG_H_

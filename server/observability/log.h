// iommud's log lines: "<time> <TAG> iommud: <message>" on stderr, e.g.
//   2026-12-06T21:40:46.123456Z INFO iommud: serving on unix:/run/iommud/iommud.sock
//   2026-12-06T21:41:02.000017Z AUDIT iommud: audit: denied Map to uid:1000 role viewer ...
// The time is UTC with microseconds; TAG is the level (ERROR, WARN, INFO, DEBUG), or AUDIT for
// authorization denials, which are always written and can be split off by their tag
// (`grep ' AUDIT '`; journald: `journalctl -u iommud | grep ' AUDIT '`). Lines below the
// Logger's level (--log_level, or --v) are dropped.
//
// The lines are formatted and written by spdlog (Debian's libspdlog: a pattern formatter with the
// tag as a custom flag, a sink per FILE that writes and flushes each line whole under spdlog's
// console mutex, so lines of different Loggers on stderr never interleave). The daemon logs to
// stderr only: systemd's journal (or the container runtime) stores, rotates and forwards it, so
// there is no log file to reopen on SIGHUP.
#ifndef IOMMUD_SERVER_OBSERVABILITY_LOG_H_
#define IOMMUD_SERVER_OBSERVABILITY_LOG_H_

#include <cstdio>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace spdlog {
class logger;
}  // namespace spdlog

namespace iommud {

enum class LogLevel { kError = 0, kWarning = 1, kInfo = 2, kDebug = 3 };

// "error", "warning" (or "warn"), "info", "debug" (any case), or the number 0..3 (--v);
// INVALID_ARGUMENT (INVALID_FLAG) otherwise.
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view text);
// ERROR, WARN, INFO, DEBUG.
absl::string_view LogLevelTag(LogLevel level);

// Writes one line "<now> <tag of level> iommud: <message>" to stderr, whatever the level: for the
// few warnings of parts that are given no Logger (the lease reaper, request ids, the unix
// listener, TLS rotation), so that every line of the daemon has a time and a level.
void LogToStderr(LogLevel level, absl::string_view message);
// Writes one audit line "<now> AUDIT iommud: audit: <message>" to stderr (an Authorizer given no
// Logger).
void AuditToStderr(absl::string_view message);

// Writes log lines to a FILE (stderr), whole lines at a time, each flushed. Thread-safe.
class Logger {
 public:
  // `out` is not owned and must outlive the Logger.
  explicit Logger(LogLevel level = LogLevel::kInfo, std::FILE* out = stderr);
  ~Logger();
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  LogLevel level() const { return level_; }
  bool Enabled(LogLevel level) const { return level <= level_; }
  void Log(LogLevel level, absl::string_view message);
  void Error(absl::string_view message) { Log(LogLevel::kError, message); }
  void Warning(absl::string_view message) { Log(LogLevel::kWarning, message); }
  void Info(absl::string_view message) { Log(LogLevel::kInfo, message); }
  void Debug(absl::string_view message) { Log(LogLevel::kDebug, message); }
  // An audit line (authorization denials): tag AUDIT, message prefixed "audit: ", at every level.
  void Audit(absl::string_view message);

 private:
  const LogLevel level_;
  const std::shared_ptr<spdlog::logger> logger_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_OBSERVABILITY_LOG_H_

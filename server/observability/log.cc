#include "server/observability/log.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/sync.h"

namespace iommud {

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "error") return LogLevel::kError;
  if (lower == "warning" || lower == "warn") return LogLevel::kWarning;
  if (lower == "info") return LogLevel::kInfo;
  if (lower == "debug") return LogLevel::kDebug;
  int number = -1;
  if (absl::SimpleAtoi(text, &number) && number >= 0 && number <= 3) {
    return static_cast<LogLevel>(number);
  }
  return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidFlag,
               absl::StrCat("--log_level takes error, warning, info or debug (or --v 0..3), not '",
                            text, "'"),
               {{"flag", "log_level"}});
}

absl::string_view LogLevelTag(LogLevel level) {
  switch (level) {
    case LogLevel::kError:
      return "ERROR";
    case LogLevel::kWarning:
      return "WARN";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kDebug:
      return "DEBUG";
  }
  return "INFO";
}

std::string FormatLogLine(absl::Time time, absl::string_view tag, absl::string_view message) {
  return absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", time, absl::UTCTimeZone()), " ",
                      tag, " iommud: ", message);
}

void LogToStderr(LogLevel level, absl::string_view message) {
  const std::string line = FormatLogLine(absl::Now(), LogLevelTag(level), message) + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

Logger::Logger(LogLevel level, std::FILE* out) : level_(level), out_(out) {}

void Logger::Log(LogLevel level, absl::string_view message) {
  if (Enabled(level)) Write(LogLevelTag(level), message);
}

void Logger::Audit(absl::string_view message) { Write("AUDIT", absl::StrCat("audit: ", message)); }

void Logger::Write(absl::string_view tag, absl::string_view message) {
  const std::string line = FormatLogLine(absl::Now(), tag, message) + "\n";
  MutexLock lock(&mu_);
  std::fwrite(line.data(), 1, line.size(), out_);
  std::fflush(out_);
}

}  // namespace iommud

#include "server/observability/log.h"

#include <ctime>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "spdlog/logger.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_sinks.h"

namespace iommud {
namespace {

// Audit lines are spdlog's `critical` level, which no threshold of ours drops; the tag flag
// prints them AUDIT.
constexpr spdlog::level::level_enum kAuditLevel = spdlog::level::critical;

spdlog::level::level_enum SpdlogLevel(LogLevel level) {
  switch (level) {
    case LogLevel::kError:
      return spdlog::level::err;
    case LogLevel::kWarning:
      return spdlog::level::warn;
    case LogLevel::kInfo:
      return spdlog::level::info;
    case LogLevel::kDebug:
      return spdlog::level::debug;
  }
  return spdlog::level::info;
}

// %* in the pattern: the line's tag (ERROR, WARN, INFO, DEBUG, AUDIT).
class TagFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm& /*time*/,
              spdlog::memory_buf_t& dest) override {
    absl::string_view tag = "AUDIT";
    switch (msg.level) {
      case spdlog::level::err:
        tag = LogLevelTag(LogLevel::kError);
        break;
      case spdlog::level::warn:
        tag = LogLevelTag(LogLevel::kWarning);
        break;
      case spdlog::level::info:
        tag = LogLevelTag(LogLevel::kInfo);
        break;
      case spdlog::level::debug:
        tag = LogLevelTag(LogLevel::kDebug);
        break;
      default:
        break;
    }
    dest.append(tag.data(), tag.data() + tag.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<TagFlag>();
  }
};

std::shared_ptr<spdlog::logger> MakeSpdlogLogger(LogLevel level, std::FILE* out) {
  // spdlog's console sink on any FILE: each line written with one fwrite and flushed, under the
  // process-wide console mutex shared by every such sink.
  auto sink =
      std::make_shared<spdlog::sinks::stdout_sink_base<spdlog::details::console_mutex>>(out);
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  formatter->add_flag<TagFlag>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %* iommud: %v");
  sink->set_formatter(std::move(formatter));
  // Not registered in spdlog's global registry: each Logger owns its own.
  auto logger = std::make_shared<spdlog::logger>("iommud", std::move(sink));
  logger->set_level(SpdlogLevel(level));
  logger->flush_on(spdlog::level::trace);
  return logger;
}

// For LogToStderr and AuditToStderr: every line, whatever its level. Never destroyed, so that a
// line written while the process exits still finds it.
Logger& StderrLogger() {
  static Logger* const logger = new Logger(LogLevel::kDebug, stderr);
  return *logger;
}

}  // namespace

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

void LogToStderr(LogLevel level, absl::string_view message) { StderrLogger().Log(level, message); }

void AuditToStderr(absl::string_view message) { StderrLogger().Audit(message); }

Logger::Logger(LogLevel level, std::FILE* out)
    : level_(level), logger_(MakeSpdlogLogger(level, out)) {}

Logger::~Logger() = default;

void Logger::Log(LogLevel level, absl::string_view message) {
  if (!Enabled(level)) return;
  logger_->log(SpdlogLevel(level), spdlog::string_view_t(message.data(), message.size()));
}

void Logger::Audit(absl::string_view message) {
  const std::string line = absl::StrCat("audit: ", message);
  logger_->log(kAuditLevel, spdlog::string_view_t(line.data(), line.size()));
}

}  // namespace iommud

// server/observability/log.h: levels, the line format (UTC time with microseconds, tag, "iommud:
// "), audit lines at every level; and the iommud binary's lines with --v / --log_level.
#include "server/observability/log.h"

#include <cstdio>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/daemon_fixture.h"

namespace iommud {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// What `write` logged into a temporary file.
template <typename Write>
std::string Captured(LogLevel level, Write write) {
  std::FILE* file = std::tmpfile();
  {
    Logger logger(level, file);
    write(logger);
  }
  std::rewind(file);
  std::string text;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) text.append(buffer, n);
  std::fclose(file);
  return text;
}

TEST(LogTest, ParsesLevelsByNameAndNumber) {
  EXPECT_EQ(ParseLogLevel("error").value(), LogLevel::kError);
  EXPECT_EQ(ParseLogLevel("WARN").value(), LogLevel::kWarning);
  EXPECT_EQ(ParseLogLevel("warning").value(), LogLevel::kWarning);
  EXPECT_EQ(ParseLogLevel("info").value(), LogLevel::kInfo);
  EXPECT_EQ(ParseLogLevel("Debug").value(), LogLevel::kDebug);
  EXPECT_EQ(ParseLogLevel("0").value(), LogLevel::kError);
  EXPECT_EQ(ParseLogLevel("3").value(), LogLevel::kDebug);
  for (const char* bad : {"", "4", "-1", "verbose"}) {
    absl::StatusOr<LogLevel> level = ParseLogLevel(bad);
    EXPECT_EQ(level.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(ErrorReason(level.status()), reason::kInvalidFlag) << bad;
  }
}

TEST(LogTest, LinesCarryTheUtcTimeWithMicrosecondsTheTagAndTheMessage) {
  const absl::Time before = absl::Now();
  const std::string text =
      Captured(LogLevel::kInfo, [](Logger& log) { log.Info("serving on unix:/x"); });
  const absl::Time after = absl::Now();
  ASSERT_EQ(text.size(), std::string("2026-12-06T21:40:46.123456Z").size() +
                             std::string(" INFO iommud: serving on unix:/x\n").size())
      << text;
  EXPECT_EQ(text.substr(27), " INFO iommud: serving on unix:/x\n");
  absl::Time time;
  std::string error;
  ASSERT_TRUE(absl::ParseTime("%Y-%m-%dT%H:%M:%E6SZ", text.substr(0, 27), absl::UTCTimeZone(),
                              &time, &error))
      << error << ": " << text;
  // Written between `before` and `after`, to the microsecond (UTC, not local time).
  EXPECT_GE(time, absl::FromUnixMicros(absl::ToUnixMicros(before)));
  EXPECT_LE(time, after);
}

TEST(LogTest, LinesOfManyThreadsNeverInterleave) {
  const std::string text = Captured(LogLevel::kInfo, [](Logger& log) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&log, t] {
        for (int i = 0; i < 200; ++i) log.Info(absl::StrCat("thread ", t, " line ", i));
      });
    }
    for (std::thread& thread : threads) thread.join();
  });
  const std::regex line(
      R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z INFO iommud: thread \d line \d+)");
  size_t lines = 0;
  for (size_t start = 0, end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    ASSERT_TRUE(std::regex_match(text.substr(start, end - start), line)) << text.substr(start, 200);
    ++lines;
  }
  EXPECT_EQ(lines, 800u);
}

TEST(LogTest, LinesBelowTheLevelAreDroppedAuditLinesNever) {
  const std::string text = Captured(LogLevel::kWarning, [](Logger& log) {
    log.Error("e");
    log.Warning("w");
    log.Info("i");
    log.Debug("d");
    log.Audit("denied Map to uid:1000");
  });
  EXPECT_THAT(text, HasSubstr(" ERROR iommud: e\n"));
  EXPECT_THAT(text, HasSubstr(" WARN iommud: w\n"));
  EXPECT_THAT(text, Not(HasSubstr("iommud: i\n")));
  EXPECT_THAT(text, Not(HasSubstr("iommud: d\n")));
  EXPECT_THAT(text, HasSubstr(" AUDIT iommud: audit: denied Map to uid:1000\n"));
  const std::regex line(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z (ERROR|WARN|INFO|DEBUG|AUDIT) iommud: .*)");
  size_t lines = 0;
  for (size_t start = 0, end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    EXPECT_TRUE(std::regex_match(text.substr(start, end - start), line)) << text;
    ++lines;
  }
  EXPECT_EQ(lines, 3u);
  EXPECT_THAT(Captured(LogLevel::kDebug, [](Logger& log) { log.Debug("d"); }),
              HasSubstr(" DEBUG iommud: d\n"));
}

TEST(LogTest, TheDaemonLogsWithTimesAndLevels) {
  test::TestDaemonOptions options;
  options.flags = {"--v=3"};
  absl::StatusOr<std::unique_ptr<test::TestDaemon>> daemon = test::TestDaemon::Start(options);
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  ASSERT_TRUE((*daemon)->Stop().ok());
  const std::string log = (*daemon)->Log();
  EXPECT_TRUE(std::regex_search(
      log, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z INFO iommud: serving on unix:)")))
      << log;
  EXPECT_THAT(log, HasSubstr(" DEBUG iommud: log level DEBUG"));
  EXPECT_THAT(log, HasSubstr(" INFO iommud: stopped"));

  options.flags = {"--log_level=loud"};
  test::TempDir dir;
  absl::StatusOr<std::unique_ptr<test::Subprocess>> bad =
      test::SpawnDaemon(options, dir.File("state"), dir.path(), "bad.log");
  ASSERT_TRUE(bad.ok()) << bad.status();
  EXPECT_EQ((*bad)->WaitForExit(absl::Seconds(30)).value_or(-1), 2);
  EXPECT_THAT((*bad)->Log(), HasSubstr("--log_level takes error, warning, info or debug"));
}

}  // namespace
}  // namespace iommud

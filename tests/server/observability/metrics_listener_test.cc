#include "server/observability/metrics_listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/error_reasons.h"
#include "gtest/gtest.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

// GET /metrics from 127.0.0.1:port; the whole HTTP answer ("" when the connection fails).
std::string Scrape(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string answer;
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
    const std::string request = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buffer[4096];
      ssize_t got;
      while ((got = read(fd, buffer, sizeof(buffer))) > 0) answer.append(buffer, got);
    }
  }
  close(fd);
  return answer;
}

TEST(MetricsListenerTest, ServesWhatIsRegistered) {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildCounter().Name("iommud_test_total").Help("a test counter").Register(*registry)
      .Add({})
      .Increment(3);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<MetricsListener> listener,
                       MetricsListener::Start("127.0.0.1:0"));
  ASSERT_GT(listener->port(), 0);
  listener->Register(registry);
  const std::string answer = Scrape(listener->port());
  EXPECT_NE(answer.find("200 OK"), std::string::npos) << answer;
  EXPECT_NE(answer.find("iommud_test_total 3"), std::string::npos) << answer;
}

TEST(MetricsListenerTest, ABusyPortIsACleanError) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<MetricsListener> first,
                       MetricsListener::Start("127.0.0.1:0"));
  EXPECT_ERROR(MetricsListener::Start("127.0.0.1:" + std::to_string(first->port())),
               kUnavailable, reason::kMetricsListenFailed);
}

// civetweb looks at its stop flag every 2 s (its poll timeout): a listener left to that took up to
// 2 s to stop. The destructor wakes it with a connection every 5 ms until it has stopped: a wake-up
// that works ends the stop after the first few, one that does nothing leaves it to the poll (about
// 400 of them). Counted, not timed: a loaded machine slows both the stop and the pokes (it was a
// 1.5 s bound on the wall clock, which a loaded machine broke once).
TEST(MetricsListenerTest, StopsWithoutWaitingForCivetwebsPoll) {
  for (int round = 0; round < 3; ++round) {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<MetricsListener> listener,
                         MetricsListener::Start("127.0.0.1:0"));
    const int port = listener->port();
    absl::SleepFor(absl::Milliseconds(50));  // its listening thread is inside poll() now
    const uint64_t before = MetricsListenerPokes();
    listener.reset();
    const uint64_t pokes = MetricsListenerPokes() - before;
    EXPECT_GE(pokes, 1u) << "round " << round;
    EXPECT_LT(pokes, 100u) << "round " << round << ": the stop waited for civetweb's poll";
    EXPECT_EQ(Scrape(port), "") << "still serving after the destructor returned";
  }
}

TEST(MetricsListenerTest, WakeHostIsALocalAddressOfTheListenersFamily) {
  EXPECT_EQ(MetricsWakeHost("0.0.0.0:9464"), "127.0.0.1");
  EXPECT_EQ(MetricsWakeHost(":9464"), "127.0.0.1");
  EXPECT_EQ(MetricsWakeHost("9464"), "127.0.0.1");
  EXPECT_EQ(MetricsWakeHost("10.1.2.3:9464"), "10.1.2.3");
  EXPECT_EQ(MetricsWakeHost("[::]:9464"), "::1");
  EXPECT_EQ(MetricsWakeHost("[fe80::1]:0"), "fe80::1");
}

}  // namespace
}  // namespace iommud

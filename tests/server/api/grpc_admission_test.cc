// The gRPC-level admission of iommud's calls and streams, against an in-process daemon on its unix
// socket: a unary call whose deadline has passed is answered DEADLINE_EXCEEDED (DEADLINE_PASSED)
// and not executed; WatchEvents streams end with UNAVAILABLE (SERVER_SHUTTING_DOWN) as soon as the
// shutdown begins, not when its grace runs out; and the keepalive settings and their validation.
#include <grpcpp/grpcpp.h>
#include <poll.h>
#include <prometheus/metric_family.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "clients/cpp/iommud_client.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/status_codec.h"
#include "server/api/deadline_check.h"
#include "server/daemon.h"
#include "server/keepalive.h"
#include "tests/testing/temp_dir.h"

namespace iommud {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Pair;

// A gRPC call made by hand over HTTP/2 on a unix socket, so that the request carries exactly the
// grpc-timeout given: gRPC's own client never sends a call whose deadline has passed (it fails it
// locally), but one whose deadline passes on the way arrives with a timeout of "1n" or so.
// Returns once the server ended the stream (its trailers) or after 5 s; the reply is not decoded.
void RawUnaryCall(const std::string& socket_path, const std::string& method,
                  const std::string& grpc_timeout, const google::protobuf::Message& request) {
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, socket_path.c_str(), sizeof(address.sun_path) - 1);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  std::string out = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  auto frame = [&out](uint8_t type, uint8_t flags, uint32_t stream, const std::string& payload) {
    const uint32_t length = static_cast<uint32_t>(payload.size());
    out += {static_cast<char>(length >> 16), static_cast<char>(length >> 8),
            static_cast<char>(length), static_cast<char>(type), static_cast<char>(flags),
            static_cast<char>(stream >> 24), static_cast<char>(stream >> 16),
            static_cast<char>(stream >> 8), static_cast<char>(stream)};
    out += payload;
  };
  frame(/*SETTINGS*/ 4, 0, 0, "");
  std::string headers;  // HPACK literals without indexing, plain strings (all shorter than 127)
  for (const auto& [name, value] :
       std::vector<std::pair<std::string, std::string>>{
           {":method", "POST"}, {":scheme", "http"}, {":path", "/iommu.v1.Iommu/" + method},
           {":authority", "localhost"}, {"content-type", "application/grpc"}, {"te", "trailers"},
           {"grpc-timeout", grpc_timeout}}) {
    headers += '\0';
    headers += static_cast<char>(name.size());
    headers += name;
    headers += static_cast<char>(value.size());
    headers += value;
  }
  frame(/*HEADERS*/ 1, /*END_HEADERS*/ 0x4, 1, headers);
  const std::string body = request.SerializeAsString();
  const uint32_t size = static_cast<uint32_t>(body.size());
  std::string message = {0, static_cast<char>(size >> 24), static_cast<char>(size >> 16),
                         static_cast<char>(size >> 8), static_cast<char>(size)};
  frame(/*DATA*/ 0, /*END_STREAM*/ 0x1, 1, message + body);
  ASSERT_EQ(write(fd, out.data(), out.size()), static_cast<ssize_t>(out.size()));
  // Frames until the server's HEADERS with END_STREAM on stream 1 (its trailers).
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  std::string in;
  bool ended = false;
  while (!ended && absl::Now() < deadline) {
    pollfd ready{fd, POLLIN, 0};
    if (poll(&ready, 1, 100) <= 0) continue;
    char buffer[4096];
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n <= 0) break;
    in.append(buffer, static_cast<size_t>(n));
    while (in.size() >= 9) {
      const size_t length = (static_cast<uint8_t>(in[0]) << 16) |
                            (static_cast<uint8_t>(in[1]) << 8) | static_cast<uint8_t>(in[2]);
      if (in.size() < 9 + length) break;
      const uint8_t type = static_cast<uint8_t>(in[3]);
      const uint8_t flags = static_cast<uint8_t>(in[4]);
      if (type == 4 && (flags & 0x1) == 0) {  // the server's SETTINGS: acknowledge them
        std::string ack = {0, 0, 0, 4, 1, 0, 0, 0, 0};
        (void)write(fd, ack.data(), ack.size());
      }
      if (type == 1 && (flags & 0x1) != 0) ended = true;
      in.erase(0, 9 + length);
    }
  }
  close(fd);
  EXPECT_TRUE(ended) << method << " with grpc-timeout " << grpc_timeout << ": no trailers";
}

// grpc_server_handled_total{grpc_method=method, grpc_code=code} of `daemon`.
double HandledCount(Daemon& daemon, const std::string& method, const std::string& code) {
  for (const prometheus::MetricFamily& family : daemon.metrics()->registry()->Collect()) {
    if (family.name != "grpc_server_handled_total") continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      bool method_matches = false, code_matches = false;
      for (const prometheus::ClientMetric::Label& label : metric.label) {
        if (label.name == "grpc_method" && label.value == method) method_matches = true;
        if (label.name == "grpc_code" && label.value == code) code_matches = true;
      }
      if (method_matches && code_matches) return metric.counter.value;
    }
  }
  return 0;
}

TEST(DeadlineCheckTest, OnlyAPassedDeadlineIsRefused) {
  const auto now = std::chrono::system_clock::now();
  EXPECT_TRUE(CheckDeadline(now + std::chrono::seconds(1), now, "Map").ok());
  EXPECT_TRUE(CheckDeadline(std::chrono::system_clock::time_point::max(), now, "Map").ok());
  for (auto deadline : {now, now - std::chrono::seconds(1)}) {
    const absl::Status status = CheckDeadline(deadline, now, "Map");
    EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
    EXPECT_EQ(ErrorReason(status), reason::kDeadlinePassed);
    EXPECT_THAT(status.message(), HasSubstr("it was not executed"));
    EXPECT_EQ(GetErrorMetadata(status).at("method"), "Map");
  }
}

TEST(KeepaliveTest, DefaultsAndChannelArguments) {
  KeepaliveOptions options;
  EXPECT_TRUE(options.Validate().ok());
  EXPECT_THAT(KeepaliveChannelArgs(options),
              testing::UnorderedElementsAre(
                  Pair(GRPC_ARG_KEEPALIVE_TIME_MS, 30000), Pair(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000),
                  Pair(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000),
                  Pair(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1),
                  Pair(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0)));
  options.time = absl::Milliseconds(1500);
  EXPECT_THAT(KeepaliveChannelArgs(options), Contains(Pair(GRPC_ARG_KEEPALIVE_TIME_MS, 1500)));
}

TEST(KeepaliveTest, BadValuesNameTheirFlag) {
  KeepaliveOptions options;
  options.time = absl::Milliseconds(10);
  absl::Status status = options.Validate();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorReason(status), reason::kInvalidFlag);
  EXPECT_THAT(status.message(), HasSubstr("--keepalive_time=10ms"));
  options = KeepaliveOptions();
  options.timeout = absl::ZeroDuration();
  EXPECT_THAT(options.Validate().message(), HasSubstr("--keepalive_timeout"));
  options = KeepaliveOptions();
  options.min_client_interval = absl::Seconds(-1);
  EXPECT_THAT(options.Validate().message(), HasSubstr("--keepalive_min_client_interval"));
  DaemonOptions daemon_options;
  test::TempDir temp;
  daemon_options.state_dir = temp.path();
  daemon_options.keepalive.time = absl::ZeroDuration();
  const absl::Status started = Daemon::Start(daemon_options).status();
  EXPECT_EQ(ErrorReason(started), reason::kInvalidFlag) << started;
}

// name -> integer value of the channel arguments `arguments`.
std::map<std::string, int> IntArguments(grpc::ChannelArguments& arguments) {
  grpc_channel_args c_arguments;
  arguments.SetChannelArgs(&c_arguments);
  std::map<std::string, int> values;
  for (size_t i = 0; i < c_arguments.num_args; ++i) {
    if (c_arguments.args[i].type == GRPC_ARG_INTEGER) {
      values[c_arguments.args[i].key] = c_arguments.args[i].value.integer;
    }
  }
  return values;
}

TEST(ClientKeepaliveTest, TheClientPingsWithinWhatTheDaemonAllows) {
  ClientOptions options;
  grpc::ChannelArguments arguments;
  ApplyClientKeepalive(options, &arguments);
  std::map<std::string, int> values = IntArguments(arguments);
  EXPECT_EQ(values[GRPC_ARG_KEEPALIVE_TIME_MS], 30000);
  EXPECT_EQ(values[GRPC_ARG_KEEPALIVE_TIMEOUT_MS], 10000);
  EXPECT_EQ(values[GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS], 1);
  EXPECT_EQ(values[GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA], 0);
  // Not more often than the daemon's default --keepalive_min_client_interval.
  EXPECT_GE(absl::Milliseconds(values[GRPC_ARG_KEEPALIVE_TIME_MS]),
            KeepaliveOptions().min_client_interval);
  options.keepalive_time = absl::ZeroDuration();
  grpc::ChannelArguments none;
  ApplyClientKeepalive(options, &none);
  EXPECT_EQ(IntArguments(none).count(GRPC_ARG_KEEPALIVE_TIME_MS), 0u);
}

class GrpcAdmissionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DaemonOptions options;
    options.state_dir = temp_.path();
    options.audit_interval = absl::ZeroDuration();
    // Short keepalive: the daemon must serve with it like with the defaults.
    options.keepalive.time = absl::Seconds(1);
    options.keepalive.timeout = absl::Seconds(1);
    absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start(options);  // demo topology
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = std::move(*daemon);
    ClientOptions client_options;
    client_options.target = daemon_->unix_target();
    absl::StatusOr<std::unique_ptr<IommuClient>> client = IommuClient::Connect(client_options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }

  std::string socket_path() const { return temp_.path() + "/iommud.sock"; }

  test::TempDir temp_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<IommuClient> client_;
};

TEST_F(GrpcAdmissionTest, ACallWhoseDeadlinePassedIsNotExecuted) {
  const size_t devices = daemon_->registry()->ListDevices().size();
  iommu::v1::ProbeDeviceRequest request;
  request.set_unit("smmu0");
  request.set_device("0000:07:00.0");
  request.set_rid(0x700);
  // Its deadline passes on the way (1 ns): answered DEADLINE_EXCEEDED (by the admission check,
  // counted as handled; or, when its timer fires first, by gRPC before any handler), and nothing
  // is probed. Without the check the handler runs and probes the device.
  RawUnaryCall(socket_path(), "ProbeDevice", "1n", request);
  EXPECT_LE(HandledCount(*daemon_, "ProbeDevice", "DeadlineExceeded"), 1);
  EXPECT_EQ(HandledCount(*daemon_, "ProbeDevice", "OK"), 0);
  EXPECT_EQ(daemon_->registry()->ListDevices().size(), devices);
  EXPECT_FALSE(daemon_->registry()->GetDevice("0000:07:00.0").ok());
  // The same request with a live deadline, over the same hand-made path: executed.
  RawUnaryCall(socket_path(), "ProbeDevice", "10S", request);
  EXPECT_EQ(HandledCount(*daemon_, "ProbeDevice", "OK"), 1);
  EXPECT_TRUE(daemon_->registry()->GetDevice("0000:07:00.0").ok());
  EXPECT_EQ(daemon_->registry()->ListDevices().size(), devices + 1);
}

TEST_F(GrpcAdmissionTest, GrpcClientsFailAPassedDeadlineThemselves) {
  iommu::v1::ProbeDeviceRequest request;
  request.set_unit("smmu0");
  request.set_device("0000:07:00.0");
  request.set_rid(0x700);
  iommu::v1::Device response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() - std::chrono::seconds(1));
  const grpc::Status status = client_->stub()->ProbeDevice(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_FALSE(daemon_->registry()->GetDevice("0000:07:00.0").ok());
}

TEST_F(GrpcAdmissionTest, WatchStreamsEndWithAClearStatusWhenShutdownBegins) {
  absl::Notification first_event;
  absl::Status watch_status;
  absl::Time ended;
  std::thread watcher([&] {
    iommu::v1::WatchEventsRequest request;
    watch_status = client_->WatchEvents(request, [&](const iommu::v1::Event&) {
      if (!first_event.HasBeenNotified()) first_event.Notify();
      return true;
    });
    ended = absl::Now();
  });
  ASSERT_TRUE(first_event.WaitForNotificationWithTimeout(absl::Seconds(10)));
  const absl::Time shutdown_started = absl::Now();
  // A long grace: the stream must not be held for it.
  std::thread stopper([&] { daemon_->Shutdown(absl::Seconds(30)); });
  watcher.join();
  EXPECT_EQ(watch_status.code(), absl::StatusCode::kUnavailable) << watch_status;
  EXPECT_EQ(ErrorReason(watch_status), reason::kServerShuttingDown) << watch_status;
  EXPECT_THAT(watch_status.message(), HasSubstr("shutting down"));
  EXPECT_LT(ended - shutdown_started, absl::Seconds(5));
  stopper.join();
  EXPECT_LT(absl::Now() - shutdown_started, absl::Seconds(20));  // no stream held the grace
}

}  // namespace
}  // namespace iommud

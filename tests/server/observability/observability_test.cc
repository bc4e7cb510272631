// The observability API of the real daemon: Prometheus metrics over HTTP (RPC metrics with the
// go-grpc-prometheus names, lock contention, leaks, faults, state gauges), Audit/Reconcile,
// ListContendedGroups and the WatchEvents stream.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "clients/cpp/iommud_client.h"
#include "core/error.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/daemon_fixture.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::iommud::test::TestDaemon;
using ::iommud::test::TestDaemonOptions;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kSingle[] = "0000:01:00.0";  // alone in its group on u0 (daemon_fixture.h)

// GET http://127.0.0.1:<port><path>; the body, or "" on failure.
std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
    const std::string request =
        absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buffer[65536];
      ssize_t n;
      while ((n = read(fd, buffer, sizeof(buffer))) > 0) response.append(buffer, n);
    }
  }
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

// The value of the sample `series` (name{labels} exactly as exposed), or -1 if absent.
double Sample(const std::string& metrics, const std::string& series) {
  size_t at = 0;
  while ((at = metrics.find(series + " ", at)) != std::string::npos) {
    if (at == 0 || metrics[at - 1] == '\n') {
      const size_t end = metrics.find('\n', at);
      double value = -1;
      if (absl::SimpleAtod(metrics.substr(at + series.size() + 1, end - at - series.size() - 1),
                           &value)) {
        return value;
      }
    }
    at += series.size();
  }
  return -1;
}

class ObservabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TestDaemonOptions options;  // the fixture adds --metrics_port=-1
    ASSERT_OK_AND_ASSIGN(daemon_, TestDaemon::Start(options));
    std::smatch match;
    const std::string log = daemon_->Log();
    ASSERT_TRUE(std::regex_search(log, match, std::regex("metrics on .* \\(port ([0-9]+)\\)")))
        << log;
    metrics_port_ = std::stoi(match[1]);
    ASSERT_OK_AND_ASSIGN(client_, daemon_->Connect());
  }
  void TearDown() override {
    if (daemon_ == nullptr) return;
    absl::StatusOr<int> exit_status = daemon_->Stop();
    ASSERT_TRUE(exit_status.ok()) << exit_status.status();
    EXPECT_EQ(*exit_status, 0) << daemon_->Log();
  }
  std::string Metrics() { return HttpGet(metrics_port_, "/metrics"); }
  uint64_t GroupOf(const std::string& device) {
    iommu::v1::GetDeviceRequest request;
    request.set_device(device);
    return client_->GetDevice(request).value().group_id();
  }

  std::unique_ptr<TestDaemon> daemon_;
  std::unique_ptr<IommuClient> client_;
  int metrics_port_ = 0;
};

TEST_F(ObservabilityTest, RpcMetricsUseTheGoGrpcPrometheusNames) {
  iommu::v1::GetDeviceRequest request;
  request.set_device(kSingle);
  ASSERT_TRUE(client_->GetDevice(request).ok());
  ASSERT_TRUE(client_->GetDevice(request).ok());
  request.set_device("0000:99:00.0");
  ASSERT_FALSE(client_->GetDevice(request).ok());
  const std::string metrics = Metrics();
  const std::string labels =
      "grpc_method=\"GetDevice\",grpc_service=\"iommu.v1.Iommu\",grpc_type=\"unary\"";
  EXPECT_EQ(Sample(metrics, "grpc_server_handled_total{grpc_code=\"OK\"," + labels + "}"), 2);
  EXPECT_EQ(Sample(metrics, "grpc_server_handled_total{grpc_code=\"NotFound\"," + labels + "}"), 1);
  EXPECT_EQ(Sample(metrics, "grpc_server_started_total{" + labels + "}"), 3);
  EXPECT_EQ(Sample(metrics, "grpc_server_handling_seconds_count{" + labels + "}"), 3);
  EXPECT_THAT(metrics, HasSubstr("grpc_method=\"WatchEvents\",grpc_service=\"iommu.v1.Iommu\","
                                 "grpc_type=\"server_stream\""));
}

TEST_F(ObservabilityTest, LockStateAndLeakMetrics) {
  const uint64_t group = GroupOf(kSingle);
  iommu::v1::ClaimOwnershipRequest claim;
  claim.set_group_id(group);
  claim.set_owner("vmm");
  ASSERT_TRUE(client_->ClaimOwnership(claim).ok());
  std::string metrics = Metrics();
  EXPECT_GT(Sample(metrics, "iommud_group_lock_wait_seconds_count"), 0);
  EXPECT_GT(Sample(metrics, "iommud_group_lock_hold_seconds_count"), 0);
  EXPECT_EQ(Sample(metrics, "iommud_devices"), 4);
  EXPECT_EQ(Sample(metrics, "iommud_groups"), 3);
  EXPECT_EQ(Sample(metrics, "iommud_owned_groups"), 1);
  EXPECT_GT(Sample(metrics, "iommud_domains{type=\"dma\"}"), 0);
  // Hot-unplug of a device whose group is owned: a leaked attachment, recorded at once.
  iommu::v1::ReleaseDeviceRequest release;
  release.set_device(kSingle);
  ASSERT_OK_AND_ASSIGN(iommu::v1::ReleaseDeviceResponse released, client_->ReleaseDevice(release));
  EXPECT_TRUE(released.leaked_attachment());
  metrics = Metrics();
  EXPECT_EQ(Sample(metrics, "iommud_leaks_detected_total{reason=\"released_while_owned\"}"), 1);
  EXPECT_EQ(Sample(metrics, "iommud_owned_groups"), 0);
  // A translation fault by reason.
  iommu::v1::TranslateRequest dma;
  dma.set_device("0000:02:00.0");
  dma.set_iova(0x5000);
  ASSERT_TRUE(client_->Translate(dma).ok());
  EXPECT_EQ(Sample(Metrics(), "iommud_translation_faults_total{reason=\"no_mapping\"}"), 1);
}

TEST_F(ObservabilityTest, AuditReconcileAndContention) {
  ASSERT_OK_AND_ASSIGN(iommu::v1::AuditResponse audit, client_->Audit(iommu::v1::AuditRequest()));
  EXPECT_THAT(audit.leaks(), IsEmpty());
  EXPECT_GE(Sample(Metrics(), "iommud_audits_total"), 2);  // at start + this one
  EXPECT_EQ(Sample(Metrics(), "iommud_leaked_attachments{reason=\"owner_gone\"}"), 0);
  ASSERT_OK_AND_ASSIGN(iommu::v1::ReconcileResponse reconciled,
                       client_->Reconcile(iommu::v1::ReconcileRequest()));
  EXPECT_THAT(reconciled.repaired(), IsEmpty());
  EXPECT_THAT(reconciled.remaining(), IsEmpty());
  iommu::v1::ListContendedGroupsRequest request;
  request.set_max_groups(2);
  ASSERT_OK_AND_ASSIGN(iommu::v1::ListContendedGroupsResponse top,
                       client_->ListContendedGroups(request));
  ASSERT_EQ(top.groups_size(), 2);
  EXPECT_GT(top.groups(0).acquisitions(), 0u);
}

TEST_F(ObservabilityTest, WatchEventsSendsTheSnapshotThenChanges) {
  std::vector<iommu::v1::Event> events;
  std::atomic<bool> snapshot_done{false};
  std::thread watcher([&] {
    iommu::v1::WatchEventsRequest request;
    request.add_kinds(iommu::v1::EVENT_KIND_DEVICE_PROBED);
    absl::Status status = client_->WatchEvents(
        request,
        [&](const iommu::v1::Event& event) {
          events.push_back(event);
          if (event.kind() == iommu::v1::EVENT_KIND_SNAPSHOT_END) snapshot_done.store(true);
          return event.kind() != iommu::v1::EVENT_KIND_DEVICE_PROBED;
        },
        absl::Seconds(30));
    EXPECT_TRUE(status.ok()) << status;
  });
  while (!snapshot_done.load()) absl::SleepFor(absl::Milliseconds(5));
  iommu::v1::ProbeDeviceRequest probe;
  probe.set_unit("u0");
  probe.set_device("0000:09:00.0");
  probe.set_rid(0x90);
  ASSERT_TRUE(client_->ProbeDevice(probe).ok());
  watcher.join();
  ASSERT_GE(events.size(), 5u);
  EXPECT_EQ(events.front().kind(), iommu::v1::EVENT_KIND_SNAPSHOT_GROUP);
  int snapshot_devices = 0;
  for (const auto& event : events) {
    if (event.kind() == iommu::v1::EVENT_KIND_SNAPSHOT_DEVICE) ++snapshot_devices;
  }
  EXPECT_EQ(snapshot_devices, 4);
  EXPECT_EQ(events.back().kind(), iommu::v1::EVENT_KIND_DEVICE_PROBED);
  EXPECT_EQ(events.back().device(), "0000:09:00.0");
  EXPECT_GT(events.back().time_unix_nanos(), 0);
}

TEST_F(ObservabilityTest, WatchEventsRefusesBadFilters) {
  iommu::v1::WatchEventsRequest request;
  request.add_kinds(iommu::v1::EVENT_KIND_SNAPSHOT_GROUP);  // not a change kind
  EXPECT_ERROR(client_->WatchEvents(request, [](const iommu::v1::Event&) { return true; },
                                    absl::Seconds(10)),
               kInvalidArgument, "INVALID_ENUM_VALUE");
  request.clear_kinds();
  request.set_queue_size(1 << 20);
  EXPECT_ERROR(client_->WatchEvents(request, [](const iommu::v1::Event&) { return true; },
                                    absl::Seconds(10)),
               kInvalidArgument, "INVALID_QUEUE_SIZE");
}

}  // namespace
}  // namespace iommud

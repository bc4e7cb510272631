// IommuClient against an in-process fake iommu.v1.Iommu (a small sync-API service in this file,
// not the daemon): google.rpc.ErrorInfo decoding, ListAll* following next_page_token to the end
// (and stopping at a failing page), deadlines, WatchEvents, health, and Connect's failures.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "clients/cpp/iommud_client.h"
#include "core/error.h"
#include "core/sync.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/status_codec.h"
#include "tests/testing/temp_dir.h"

namespace iommud {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

// Page tokens of the fake: "p<index of the next item>".
std::string PageToken(int next) { return absl::StrCat("p", next); }

// A fake Iommu service: `unit_count` units and `group_count` groups served in pages of at most
// kMaxPage items, GetDevice knows only "0000:00:02.0", ListDomains fails on its second page,
// GetDomain waits until the call is cancelled, WatchEvents streams three events.
class FakeIommuService final : public iommu::v1::Iommu::Service {
 public:
  static constexpr int kMaxPage = 3;

  FakeIommuService(int unit_count, int group_count)
      : unit_count_(unit_count), group_count_(group_count) {}

  grpc::Status ListUnits(grpc::ServerContext*, const iommu::v1::ListUnitsRequest* request,
                         iommu::v1::ListUnitsResponse* response) override {
    int first = 0, end = 0;
    grpc::Status status = Page(request->page_size(), request->page_token(), unit_count_, &first,
                               &end);
    if (!status.ok()) return status;
    for (int i = first; i < end; ++i) response->add_units()->set_name(absl::StrCat("unit", i));
    if (end < unit_count_) response->set_next_page_token(PageToken(end));
    return grpc::Status::OK;
  }

  grpc::Status ListGroups(grpc::ServerContext*, const iommu::v1::ListGroupsRequest* request,
                          iommu::v1::ListGroupsResponse* response) override {
    int first = 0, end = 0;
    grpc::Status status = Page(request->page_size(), request->page_token(), group_count_,
                               &first, &end);
    if (!status.ok()) return status;
    for (int i = first; i < end; ++i) response->add_groups()->set_id(100 + i);
    if (end < group_count_) response->set_next_page_token(PageToken(end));
    return grpc::Status::OK;
  }

  // Echoes the request into a region, so the test sees what went over the wire.
  grpc::Status RegisterMemory(grpc::ServerContext*, const iommu::v1::RegisterMemoryRequest* request,
                              iommu::v1::MemoryRegion* response) override {
    response->set_id(5);
    response->set_size(request->size());
    response->set_owner(absl::StrCat("uid:7/", request->owner()));
    response->set_base(uint64_t{1} << 40);
    response->set_kind(iommu::v1::MemoryRegion::EMULATED);
    return grpc::Status::OK;
  }

  grpc::Status ListDevices(grpc::ServerContext*, const iommu::v1::ListDevicesRequest*,
                           iommu::v1::ListDevicesResponse* response) override {
    response->add_devices()->set_name("0000:00:02.0");
    return grpc::Status::OK;  // one page, no token
  }

  grpc::Status ListDomains(grpc::ServerContext*, const iommu::v1::ListDomainsRequest* request,
                           iommu::v1::ListDomainsResponse* response) override {
    if (!request->page_token().empty()) {
      return ToGrpcStatus(Error(absl::StatusCode::kAborted, "REGISTRY_CHANGED",
                                "the domain list changed between pages"));
    }
    response->add_domains()->set_id(1);
    response->set_next_page_token(PageToken(1));
    return grpc::Status::OK;
  }

  grpc::Status GetDevice(grpc::ServerContext*, const iommu::v1::GetDeviceRequest* request,
                         iommu::v1::Device* response) override {
    if (request->device() != "0000:00:02.0") {
      return ToGrpcStatus(Error(absl::StatusCode::kNotFound, "DEVICE_NOT_FOUND",
                                absl::StrCat("no device '", request->device(), "'"),
                                {{"device", request->device()}, {"unit", "smmu0"}}));
    }
    response->set_name(request->device());
    response->set_unit("smmu0");
    response->set_rid(0x10);
    return grpc::Status::OK;
  }

  grpc::Status GetDomain(grpc::ServerContext* context, const iommu::v1::GetDomainRequest*,
                         iommu::v1::Domain*) override {
    while (!context->IsCancelled()) absl::SleepFor(absl::Milliseconds(1));
    return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
  }

  grpc::Status WatchEvents(grpc::ServerContext*, const iommu::v1::WatchEventsRequest* request,
                           grpc::ServerWriter<iommu::v1::Event>* writer) override {
    for (int i = 0; i < 3; ++i) {
      iommu::v1::Event event;
      event.set_group_id(100 + i);
      event.set_device(request->device());
      if (!writer->Write(event)) return grpc::Status::OK;
    }
    if (request->device() == "fail") {
      return ToGrpcStatus(
          Error(absl::StatusCode::kResourceExhausted, "EVENT_QUEUE_OVERFLOW", "too slow"));
    }
    return grpc::Status::OK;
  }

  // The page tokens ListUnits and ListGroups received, in order.
  std::vector<std::string> tokens() const {
    MutexLock lock(&mu_);
    return tokens_;
  }

 private:
  // The range [first, end) of `count` items a request asks for, or INVALID_ARGUMENT for a token
  // this fake never handed out.
  grpc::Status Page(uint32_t page_size, const std::string& token, int count, int* first,
                    int* end) {
    {
      MutexLock lock(&mu_);
      tokens_.push_back(token);
    }
    *first = 0;
    if (!token.empty() && (token[0] != 'p' || !absl::SimpleAtoi(token.substr(1), first) ||
                           *first <= 0 || *first >= count)) {
      return ToGrpcStatus(
          Error(absl::StatusCode::kInvalidArgument, "INVALID_PAGE_TOKEN", "bad token"));
    }
    const int size = page_size == 0 || page_size > kMaxPage ? kMaxPage : page_size;
    *end = std::min(count, *first + size);
    return grpc::Status::OK;
  }

  const int unit_count_;
  const int group_count_;
  mutable absl::Mutex mu_;
  std::vector<std::string> tokens_ ABSL_GUARDED_BY(mu_);
};

// grpc.health.v1.Health: SERVING for "" and "iommu.v1.Iommu", NOT_FOUND otherwise.
class FakeHealthService final : public grpc::health::v1::Health::Service {
 public:
  grpc::Status Check(grpc::ServerContext*, const grpc::health::v1::HealthCheckRequest* request,
                     grpc::health::v1::HealthCheckResponse* response) override {
    if (!request->service().empty() && request->service() != "iommu.v1.Iommu") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service");
    }
    response->set_status(grpc::health::v1::HealthCheckResponse::SERVING);
    return grpc::Status::OK;
  }
};

class IommuClientTest : public ::testing::Test {
 protected:
  test::TempDir temp_;
  static constexpr int kUnits = 7;   // 3 pages: 3 + 3 + 1
  static constexpr int kGroups = 6;  // exactly 2 full pages

  void SetUp() override {
    dir_ = temp_.path();
    target_ = absl::StrCat("unix:", dir_, "/fake.sock");
    grpc::ServerBuilder builder;
    builder.AddListeningPort(target_, grpc::InsecureServerCredentials());
    builder.RegisterService(&service_);
    builder.RegisterService(&health_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ClientOptions options;
    options.target = target_;
    absl::StatusOr<std::unique_ptr<IommuClient>> client = IommuClient::Connect(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }

  void TearDown() override {
    client_.reset();
    if (server_ != nullptr) server_->Shutdown(absl::ToChronoTime(absl::Now()));
  }

  std::string dir_;
  std::string target_;
  FakeIommuService service_{kUnits, kGroups};
  FakeHealthService health_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<IommuClient> client_;
};

TEST_F(IommuClientTest, UnaryCallReturnsTheResponse) {
  iommu::v1::GetDeviceRequest request;
  request.set_device("0000:00:02.0");
  absl::StatusOr<iommu::v1::Device> device = client_->GetDevice(request);
  ASSERT_TRUE(device.ok()) << device.status();
  EXPECT_EQ(device->name(), "0000:00:02.0");
  EXPECT_EQ(device->unit(), "smmu0");
  EXPECT_EQ(device->rid(), 0x10u);
}

TEST_F(IommuClientTest, RegionCallsAreClientMethods) {
  iommu::v1::RegisterMemoryRequest request;
  request.set_size(0x400000);
  request.set_owner("vm");
  absl::StatusOr<iommu::v1::MemoryRegion> region = client_->RegisterMemory(request);
  ASSERT_TRUE(region.ok()) << region.status();
  EXPECT_EQ(region->id(), 5u);
  EXPECT_EQ(region->size(), 0x400000u);
  EXPECT_EQ(region->owner(), "uid:7/vm");
  EXPECT_EQ(region->base(), uint64_t{1} << 40);
  // The fake does not serve the other two: the client reaches the server and reports it.
  iommu::v1::UnregisterMemoryRequest unregister;
  unregister.set_region_id(5);
  EXPECT_EQ(client_->UnregisterMemory(unregister).status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(client_->ListMemoryRegions({}).status().code(), absl::StatusCode::kUnimplemented);
}

TEST_F(IommuClientTest, ErrorsCarryCodeReasonAndMetadataFromErrorInfo) {
  iommu::v1::GetDeviceRequest request;
  request.set_device("0000:99:00.0");
  absl::StatusOr<iommu::v1::Device> device = client_->GetDevice(request);
  ASSERT_FALSE(device.ok());
  EXPECT_EQ(device.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrorReason(device.status()), "DEVICE_NOT_FOUND");
  EXPECT_THAT(device.status().message(), HasSubstr("no device '0000:99:00.0'"));
  EXPECT_THAT(GetErrorMetadata(device.status()),
              UnorderedElementsAre(Pair("device", "0000:99:00.0"), Pair("unit", "smmu0")));
}

TEST_F(IommuClientTest, ErrorWithoutErrorInfoKeepsCodeAndMessageAndHasNoReason) {
  absl::StatusOr<iommu::v1::Group> group = client_->ClaimOwnership({});  // not in the fake
  ASSERT_FALSE(group.ok());
  EXPECT_EQ(group.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(ErrorReason(group.status()), "");
  EXPECT_TRUE(GetErrorMetadata(group.status()).empty());
}

TEST_F(IommuClientTest, ListAllFollowsEveryPageToken) {
  absl::StatusOr<std::vector<iommu::v1::IommuUnit>> units = client_->ListAllUnits();
  ASSERT_TRUE(units.ok()) << units.status();
  std::vector<std::string> names;
  for (const iommu::v1::IommuUnit& unit : *units) names.push_back(unit.name());
  EXPECT_THAT(names, ElementsAre("unit0", "unit1", "unit2", "unit3", "unit4", "unit5", "unit6"));
  EXPECT_THAT(service_.tokens(), ElementsAre("", "p3", "p6"));

  absl::StatusOr<std::vector<iommu::v1::Group>> groups = client_->ListAllGroups();
  ASSERT_TRUE(groups.ok()) << groups.status();
  ASSERT_EQ(groups->size(), static_cast<size_t>(kGroups));
  for (int i = 0; i < kGroups; ++i) EXPECT_EQ((*groups)[i].id(), 100u + i);
  // A last page that is exactly full ends with an empty token: no extra call.
  EXPECT_THAT(service_.tokens(), ElementsAre("", "p3", "p6", "", "p3"));

  absl::StatusOr<std::vector<iommu::v1::Device>> devices = client_->ListAllDevices();
  ASSERT_TRUE(devices.ok()) << devices.status();
  ASSERT_EQ(devices->size(), 1u);
  EXPECT_EQ((*devices)[0].name(), "0000:00:02.0");
}

TEST_F(IommuClientTest, ListAllStopsAtAFailingPageWithItsError) {
  absl::StatusOr<std::vector<iommu::v1::Domain>> domains = client_->ListAllDomains();
  ASSERT_FALSE(domains.ok());
  EXPECT_EQ(domains.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(ErrorReason(domains.status()), "REGISTRY_CHANGED");
}

TEST_F(IommuClientTest, EveryCallHasTheDeadline) {
  IommuClient client(client_->channel(), absl::Milliseconds(50));
  absl::StatusOr<iommu::v1::Domain> domain = client.GetDomain({});  // never answers
  ASSERT_FALSE(domain.ok());
  EXPECT_EQ(domain.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(IommuClientTest, WatchEventsStopsWhenTheCallbackSaysSo) {
  iommu::v1::WatchEventsRequest request;
  request.set_device("d");
  std::vector<uint64_t> seen;
  absl::Status status = client_->WatchEvents(request, [&](const iommu::v1::Event& event) {
    seen.push_back(event.group_id());
    return seen.size() < 2;
  });
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_THAT(seen, ElementsAre(100u, 101u));
}

TEST_F(IommuClientTest, WatchEventsReturnsTheStreamsError) {
  iommu::v1::WatchEventsRequest request;
  request.set_device("fail");
  int seen = 0;
  absl::Status status = client_->WatchEvents(request, [&](const iommu::v1::Event& event) {
    EXPECT_EQ(event.device(), "fail");
    ++seen;
    return true;
  });
  EXPECT_EQ(seen, 3);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrorReason(status), "EVENT_QUEUE_OVERFLOW");
}

TEST_F(IommuClientTest, CheckHealth) {
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> health =
      client_->CheckHealth();
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::SERVING);
  health = client_->CheckHealth("iommu.v1.Nope");
  ASSERT_FALSE(health.ok());
  EXPECT_EQ(health.status().code(), absl::StatusCode::kNotFound);
}

TEST(IommuClientConnectTest, NobodyListeningIsUnavailableConnectFailed) {
  ClientOptions options;
  options.target = "unix:/nonexistent-iommud-dir/iommud.sock";
  options.connect_timeout = absl::Milliseconds(200);
  absl::StatusOr<std::unique_ptr<IommuClient>> client = IommuClient::Connect(options);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorReason(client.status()), "CONNECT_FAILED");
  EXPECT_THAT(GetErrorMetadata(client.status()), ElementsAre(Pair("target", options.target)));
}

TEST(IommuClientConnectTest, EmptyTargetIsInvalidArgument) {
  absl::StatusOr<std::unique_ptr<IommuClient>> client = IommuClient::Connect(ClientOptions{});
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorReason(client.status()), "INVALID_TARGET");
}

}  // namespace
}  // namespace iommud

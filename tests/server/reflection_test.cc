// Server reflection on the real iommud: it lists and describes the API and the health service.
#include <grpcpp/grpcpp.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/descriptor.pb.h"
#include "gtest/gtest.h"
#include "tests/server/daemon_fixture.h"
#include "reflection_v1alpha.grpc.pb.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::grpc::reflection::v1alpha::ServerReflection;
using ::grpc::reflection::v1alpha::ServerReflectionRequest;
using ::grpc::reflection::v1alpha::ServerReflectionResponse;
using ::iommud::test::TestDaemon;
using ::testing::Contains;
using ::testing::IsSupersetOf;

class ReflectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<TestDaemon>> daemon = TestDaemon::Start();
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = std::move(*daemon);
    channel_ = grpc::CreateChannel(daemon_->target(), grpc::InsecureChannelCredentials());
    stub_ = ServerReflection::NewStub(channel_);
  }

  // One request on a fresh reflection stream.
  ServerReflectionResponse Ask(const ServerReflectionRequest& request) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto stream = stub_->ServerReflectionInfo(&context);
    ServerReflectionResponse response;
    EXPECT_TRUE(stream->Write(request));
    EXPECT_TRUE(stream->WritesDone());
    EXPECT_TRUE(stream->Read(&response));
    grpc::Status status = stream->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  // The services described by the files returned for `symbol`.
  std::set<std::string> ServicesOfFileContaining(const std::string& symbol) {
    ServerReflectionRequest request;
    request.set_file_containing_symbol(symbol);
    ServerReflectionResponse response = Ask(request);
    EXPECT_TRUE(response.has_file_descriptor_response())
        << symbol << ": " << response.error_response().error_message();
    std::set<std::string> services;
    for (const std::string& bytes : response.file_descriptor_response().file_descriptor_proto()) {
      google::protobuf::FileDescriptorProto file;
      EXPECT_TRUE(file.ParseFromString(bytes));
      for (const auto& service : file.service()) {
        services.insert(file.package() + "." + service.name());
      }
    }
    return services;
  }

  std::unique_ptr<TestDaemon> daemon_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<ServerReflection::Stub> stub_;
};

TEST_F(ReflectionTest, ListsTheApiHealthAndReflection) {
  ServerReflectionRequest request;
  request.set_list_services("");
  ServerReflectionResponse response = Ask(request);
  ASSERT_TRUE(response.has_list_services_response());
  std::vector<std::string> names;
  for (const auto& service : response.list_services_response().service()) {
    names.push_back(service.name());
  }
  EXPECT_THAT(names, IsSupersetOf({"iommu.v1.Iommu", "grpc.health.v1.Health",
                                   "grpc.reflection.v1alpha.ServerReflection"}));
}

TEST_F(ReflectionTest, DescribesTheApi) {
  EXPECT_THAT(ServicesOfFileContaining("iommu.v1.Iommu"), Contains("iommu.v1.Iommu"));
  // A method and a message resolve to the same file.
  EXPECT_THAT(ServicesOfFileContaining("iommu.v1.Iommu.AttachGroup"), Contains("iommu.v1.Iommu"));
  EXPECT_THAT(ServicesOfFileContaining("iommu.v1.MapRequest"), Contains("iommu.v1.Iommu"));
}

TEST_F(ReflectionTest, DescribesTheHealthService) {
  EXPECT_THAT(ServicesOfFileContaining("grpc.health.v1.Health"), Contains("grpc.health.v1.Health"));
}

TEST_F(ReflectionTest, UnknownSymbolIsAnError) {
  ServerReflectionRequest request;
  request.set_file_containing_symbol("no.such.Service");
  ServerReflectionResponse response = Ask(request);
  ASSERT_TRUE(response.has_error_response());
  EXPECT_EQ(response.error_response().error_code(), static_cast<int>(grpc::StatusCode::NOT_FOUND));
}

}  // namespace
}  // namespace iommud

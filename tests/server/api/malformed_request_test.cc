// Requests that are not valid protobuf (server/api/raw_request.h), sent as raw bytes with
// grpc::GenericStub over a real channel to the real iommud: every method of iommu.v1.Iommu, unary
// or streaming, answers INVALID_ARGUMENT with ErrorInfo reason MALFORMED_REQUEST and changes
// nothing; a well-formed call made the same way still works; an unknown method stays UNIMPLEMENTED.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "clients/cpp/iommud_client.h"
#include "core/error.h"
#include "gtest/gtest.h"
#include "iommu/v1/iommu.pb.h"
#include "proto/status_codec.h"
#include "tests/server/daemon_fixture.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::iommud::test::TestDaemon;

constexpr char kDevice[] = "0000:01:00.0";  // daemon_fixture.h's test topology

// Field 1, length-delimited, length 255, then 2 bytes: truncated for any message type.
const std::string& Garbage() {
  static const std::string* bytes = new std::string("\x0a\xff\x01\x02\x03", 5);
  return *bytes;
}

grpc::ByteBuffer ToByteBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

std::string ToString(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (!buffer.Dump(&slices).ok()) return bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return bytes;
}

void ExpectMalformed(const grpc::Status& status, const std::string& what,
                     const std::string& request_type) {
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << what << ": " << status.error_message();
  google::rpc::ErrorInfo info;
  ASSERT_TRUE(ExtractErrorInfo(status, &info)) << what << " has no ErrorInfo";
  EXPECT_EQ(info.reason(), "MALFORMED_REQUEST") << what;
  EXPECT_EQ(info.domain(), kErrorDomain) << what;
  EXPECT_EQ(info.metadata().at("type"), request_type) << what;
}

class MalformedRequestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(daemon_, TestDaemon::Start());
    ASSERT_OK_AND_ASSIGN(client_, daemon_->Connect());
    stub_ = std::make_unique<grpc::GenericStub>(
        grpc::CreateChannel(daemon_->target(), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (daemon_ == nullptr) return;
    absl::StatusOr<int> exit_status = daemon_->Stop();
    ASSERT_TRUE(exit_status.ok()) << exit_status.status();
    EXPECT_EQ(*exit_status, 0) << daemon_->Log();
  }

  // One unary call of `method` ("/iommu.v1.Iommu/GetDevice") with `bytes` as its request.
  grpc::Status Unary(const std::string& method, const std::string& bytes,
                     std::string* reply = nullptr) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    const grpc::ByteBuffer request = ToByteBuffer(bytes);
    grpc::ByteBuffer response;
    grpc::Status status;
    absl::Notification done;
    stub_->UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                     [&](grpc::Status s) {
                       status = std::move(s);
                       done.Notify();
                     });
    done.WaitForNotification();
    if (reply != nullptr && status.ok()) *reply = ToString(response);
    return status;
  }

  // A streaming call of `method`: sends `bytes` as one message, half-closes, reads until the end;
  // returns the final status (and in `replies` how many messages came back).
  grpc::Status Stream(const std::string& method, const std::string& bytes, int* replies) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    grpc::CompletionQueue cq;
    std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
        stub_->PrepareCall(&context, method, &cq);
    void* tag = nullptr;
    bool ok = false;
    auto next = [&] { EXPECT_TRUE(cq.Next(&tag, &ok)); };
    call->StartCall(nullptr);
    next();
    call->Write(ToByteBuffer(bytes), nullptr);
    next();  // !ok when the server already finished the call
    call->WritesDone(nullptr);
    next();
    *replies = 0;
    for (;;) {
      grpc::ByteBuffer reply;
      call->Read(&reply, nullptr);
      next();
      if (!ok) break;
      ++*replies;
    }
    grpc::Status status;
    call->Finish(&status, nullptr);
    next();
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
    return status;
  }

  std::string Inventory() {
    absl::StatusOr<std::vector<iommu::v1::Group>> groups = client_->ListAllGroups();
    absl::StatusOr<std::vector<iommu::v1::Domain>> domains = client_->ListAllDomains();
    if (!groups.ok() || !domains.ok()) return "(unreadable)";
    std::string text;
    for (const auto& group : *groups) absl::StrAppend(&text, group.ShortDebugString(), "\n");
    for (const auto& domain : *domains) absl::StrAppend(&text, domain.ShortDebugString(), "\n");
    return text;
  }

  std::unique_ptr<TestDaemon> daemon_;
  std::unique_ptr<IommuClient> client_;
  std::unique_ptr<grpc::GenericStub> stub_;
};

TEST_F(MalformedRequestTest, EveryMethodAnswersInvalidArgumentMalformedRequest) {
  const google::protobuf::ServiceDescriptor* service =
      iommu::v1::GetDeviceRequest::descriptor()->file()->FindServiceByName("Iommu");
  ASSERT_NE(service, nullptr);
  ASSERT_GT(service->method_count(), 30);
  const std::string before = Inventory();
  for (int i = 0; i < service->method_count(); ++i) {
    const google::protobuf::MethodDescriptor& method = *service->method(i);
    const std::string path = absl::StrCat("/", service->full_name(), "/", method.name());
    if (!method.client_streaming() && !method.server_streaming()) {
      ExpectMalformed(Unary(path, Garbage()), path, method.input_type()->full_name());
    } else {
      int replies = -1;
      ExpectMalformed(Stream(path, Garbage(), &replies), path, method.input_type()->full_name());
      EXPECT_EQ(replies, 0) << path;
    }
  }
  EXPECT_EQ(Inventory(), before);
}

TEST_F(MalformedRequestTest, GarbageToAttachGroupIsRefusedAndAWellFormedCallStillWorks) {
  ExpectMalformed(Unary("/iommu.v1.Iommu/AttachGroup", Garbage()), "AttachGroup",
                  "iommu.v1.AttachGroupRequest");

  iommu::v1::GetDeviceRequest get;
  get.set_device(kDevice);
  std::string reply;
  const grpc::Status status = Unary("/iommu.v1.Iommu/GetDevice", get.SerializeAsString(), &reply);
  ASSERT_TRUE(status.ok()) << status.error_message();
  iommu::v1::Device device;
  ASSERT_TRUE(device.ParseFromString(reply));
  EXPECT_EQ(device.name(), kDevice);
  EXPECT_NE(device.group_id(), 0u);

  // An empty message is a valid (all-default) request: refused by the handler, not the parser.
  const grpc::Status empty = Unary("/iommu.v1.Iommu/GetDevice", "");
  EXPECT_EQ(empty.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  google::rpc::ErrorInfo info;
  ASSERT_TRUE(ExtractErrorInfo(empty, &info));
  EXPECT_EQ(info.reason(), "MISSING_FIELD");
}

TEST_F(MalformedRequestTest, UnknownMethodsStayUnimplemented) {
  EXPECT_EQ(Unary("/iommu.v1.Iommu/NoSuchMethod", Garbage()).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(Unary("/iommu.v1.NoSuchService/GetDevice", Garbage()).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

}  // namespace
}  // namespace iommud

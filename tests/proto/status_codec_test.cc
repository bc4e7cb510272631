#include "proto/status_codec.h"

#include "core/error.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace iommud {
namespace {

using ::testing::Pair;
using ::testing::UnorderedElementsAre;

TEST(StatusCodecTest, OkStaysOk) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
}

TEST(StatusCodecTest, ReasonAndMetadataSurviveTheRoundTrip) {
  absl::Status original = Error(absl::StatusCode::kFailedPrecondition, "DOMAIN_IN_USE",
                                "domain 4 is attached", {{"domain_id", "4"}, {"group_id", "2"}});
  grpc::Status wire = ToGrpcStatus(original);
  EXPECT_EQ(wire.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(wire.error_message(), "domain 4 is attached");
  google::rpc::ErrorInfo info;
  ASSERT_TRUE(ExtractErrorInfo(wire, &info));
  EXPECT_EQ(info.reason(), "DOMAIN_IN_USE");
  EXPECT_EQ(info.domain(), "iommud.dev");

  absl::Status back = FromGrpcStatus(wire);
  EXPECT_EQ(back.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(back.message(), "domain 4 is attached");
  EXPECT_EQ(ErrorReason(back), "DOMAIN_IN_USE");
  EXPECT_THAT(GetErrorMetadata(back), UnorderedElementsAre(Pair("domain_id", "4"), Pair("group_id", "2")));
}

TEST(StatusCodecTest, ErrorWithoutReasonGetsTheCodeName) {
  google::rpc::ErrorInfo info;
  ASSERT_TRUE(ExtractErrorInfo(ToGrpcStatus(absl::InvalidArgumentError("bad")), &info));
  EXPECT_EQ(info.reason(), "INVALID_ARGUMENT");
}

TEST(StatusCodecTest, StatusWithoutDetailsDecodesToPlainCode) {
  absl::Status back = FromGrpcStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "down"));
  EXPECT_EQ(back.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorReason(back), "");
}

TEST(StatusCodecTest, RpcStatusCarriesTheReasonWithoutGrpc) {
  EXPECT_EQ(ToRpcStatus(absl::OkStatus()).code(), 0);
  EXPECT_EQ(ToRpcStatus(absl::OkStatus()).details_size(), 0);
  EXPECT_TRUE(FromRpcStatus(google::rpc::Status()).ok());

  absl::Status original = Error(absl::StatusCode::kPermissionDenied, "NOT_OWNER", "not yours",
                                {{"group_id", "3"}});
  google::rpc::Status wire = ToRpcStatus(original);
  EXPECT_EQ(wire.code(), static_cast<int>(absl::StatusCode::kPermissionDenied));
  ASSERT_EQ(wire.details_size(), 1);
  google::rpc::ErrorInfo info;
  ASSERT_TRUE(wire.details(0).UnpackTo(&info));
  EXPECT_EQ(info.reason(), "NOT_OWNER");
  EXPECT_EQ(info.domain(), "iommud.dev");

  absl::Status back = FromRpcStatus(wire);
  EXPECT_EQ(back.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(back.message(), "not yours");
  EXPECT_EQ(ErrorReason(back), "NOT_OWNER");
  EXPECT_THAT(GetErrorMetadata(back), UnorderedElementsAre(Pair("group_id", "3")));

  // A reasonless error gets its code's name, as on gRPC; a code beyond absl's is UNKNOWN.
  EXPECT_EQ(ErrorReason(FromRpcStatus(ToRpcStatus(absl::InternalError("x")))), "INTERNAL");
  google::rpc::Status odd;
  odd.set_code(99);
  EXPECT_EQ(FromRpcStatus(odd).code(), absl::StatusCode::kUnknown);
}

}  // namespace
}  // namespace iommud

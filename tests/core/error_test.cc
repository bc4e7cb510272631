#include "core/error.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace iommud {
namespace {

using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

TEST(ErrorTest, CarriesCodeReasonMessageAndMetadata) {
  absl::Status status = Error(absl::StatusCode::kFailedPrecondition, "GROUP_BUSY", "group 7 is busy",
                              {{"group_id", "7"}, {"domain_id", "3"}});
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(), "group 7 is busy");
  EXPECT_EQ(ErrorReason(status), "GROUP_BUSY");
  EXPECT_THAT(GetErrorMetadata(status),
              UnorderedElementsAre(Pair("group_id", "7"), Pair("domain_id", "3")));
}

TEST(ErrorTest, PlainStatusHasNoReasonNorMetadata) {
  EXPECT_EQ(ErrorReason(absl::OkStatus()), "");
  EXPECT_EQ(ErrorReason(absl::InternalError("x")), "");
  EXPECT_THAT(GetErrorMetadata(absl::InternalError("x")), IsEmpty());
}

}  // namespace
}  // namespace iommud

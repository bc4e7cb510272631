// Users and groups from the command line (server/security/unix_ids.h).
#include "server/security/unix_ids.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(UnixIdsTest, NumbersAndNames) {
  ASSERT_OK_AND_ASSIGN(uint32_t uid, ResolveUser("1234"));
  EXPECT_EQ(uid, 1234u);
  ASSERT_OK_AND_ASSIGN(uid, ResolveUser("root"));  // every system has root (uid 0, gid 0)
  EXPECT_EQ(uid, 0u);
  ASSERT_OK_AND_ASSIGN(uint32_t gid, ResolveGroup("root"));
  EXPECT_EQ(gid, 0u);
  ASSERT_OK_AND_ASSIGN(gid, ResolveGroup("77"));
  EXPECT_EQ(gid, 77u);
}

TEST(UnixIdsTest, UnknownNamesAreErrors) {
  EXPECT_ERROR(ResolveUser("no-such-user-iommud").status(), kInvalidArgument,
               "UNKNOWN_USER");
  EXPECT_ERROR(ResolveUser("").status(), kInvalidArgument, "UNKNOWN_USER");
  EXPECT_ERROR(ResolveUser("-1").status(), kInvalidArgument, "UNKNOWN_USER");
  EXPECT_ERROR(ResolveGroup("no-such-group-iommud").status(), kInvalidArgument,
               "UNKNOWN_GROUP");
}

TEST(UnixIdsTest, Lists) {
  ASSERT_OK_AND_ASSIGN(std::vector<uint32_t> uids, ResolveUserList("0, root ,1001"));
  EXPECT_THAT(uids, ElementsAre(0u, 0u, 1001u));
  ASSERT_OK_AND_ASSIGN(uids, ResolveUserList(""));
  EXPECT_THAT(uids, IsEmpty());
  EXPECT_ERROR(ResolveUserList("0,,1").status(), kInvalidArgument,
               "UNKNOWN_USER");
  EXPECT_ERROR(ResolveGroupList("root,no-such-group-iommud").status(), kInvalidArgument,
               "UNKNOWN_GROUP");
}

}  // namespace
}  // namespace iommud

#include "core/mapping_index.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace iommud {
namespace {

using ::testing::SizeIs;

TEST(MappingIndexTest, FindsOverlapsOnBothSides) {
  MappingIndex index;
  index.Insert({0x1000, 0x9000, 0x2000, kProtRead});
  index.Insert({0x8000, 0x9000, 0x1000, kProtRead});
  EXPECT_FALSE(index.FindOverlap(0x0, 0x1000).has_value());
  EXPECT_FALSE(index.FindOverlap(0x3000, 0x5000).has_value());
  EXPECT_EQ(index.FindOverlap(0x0, 0x1001)->iova, 0x1000u);
  EXPECT_EQ(index.FindOverlap(0x2fff, 0x1)->iova, 0x1000u);
  EXPECT_EQ(index.FindOverlap(0x3000, 0x5001)->iova, 0x8000u);
  EXPECT_EQ(index.count(), 2u);
  EXPECT_EQ(index.bytes(), 0x3000u);
}

TEST(MappingIndexTest, CoveredReportsSplits) {
  MappingIndex index;
  index.Insert({0x1000, 0, 0x2000, kProtRead});
  index.Insert({0x8000, 0, 0x1000, kProtRead});
  bool splits = true;
  EXPECT_THAT(index.Covered(0x0, 0x10000, &splits), SizeIs(2));
  EXPECT_FALSE(splits);
  EXPECT_THAT(index.Covered(0x2000, 0x1000, &splits), SizeIs(1));
  EXPECT_TRUE(splits);
  EXPECT_THAT(index.Covered(0x4000, 0x1000, &splits), SizeIs(0));
  EXPECT_FALSE(splits);
  index.Erase(0x1000);
  EXPECT_EQ(index.count(), 1u);
  EXPECT_EQ(index.bytes(), 0x1000u);
}

}  // namespace
}  // namespace iommud

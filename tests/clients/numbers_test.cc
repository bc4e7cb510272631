#include "clients/iommuctl/numbers.h"

#include "core/error.h"
#include "gtest/gtest.h"

namespace iommud {
namespace {

TEST(NumbersTest, ParsesDecimalHexAndSizes) {
  EXPECT_EQ(ParseNumber("4096", "x").value(), 4096u);
  EXPECT_EQ(ParseNumber("0x1000", "x").value(), 0x1000u);
  EXPECT_EQ(ParseNumber("0X1f", "x").value(), 0x1fu);
  EXPECT_EQ(ParseNumber("4K", "x").value(), 4096u);
  EXPECT_EQ(ParseNumber("4k", "x").value(), 4096u);
  EXPECT_EQ(ParseNumber("2M", "x").value(), uint64_t{2} << 20);
  EXPECT_EQ(ParseNumber("1G", "x").value(), uint64_t{1} << 30);
  EXPECT_EQ(ParseNumber("3T", "x").value(), uint64_t{3} << 40);
  EXPECT_EQ(ParseNumber(" 12 ", "x").value(), 12u);
}

TEST(NumbersTest, RejectsGarbageAndOverflow) {
  for (const char* bad : {"", "K", "0x", "12Q", "-1", "1.5M", "0xZZ", "99999999999999999999",
                          "17179869184G"}) {
    absl::StatusOr<uint64_t> parsed = ParseNumber(bad, "SIZE");
    EXPECT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(ErrorReason(parsed.status()), "INVALID_NUMBER") << bad;
  }
}

TEST(NumbersTest, FormatsSizes) {
  EXPECT_EQ(HumanSize(0), "0");
  EXPECT_EQ(HumanSize(4096), "4K");
  EXPECT_EQ(HumanSize(uint64_t{2} << 20), "2M");
  EXPECT_EQ(HumanSize((uint64_t{2} << 20) + 4096), "2052K");
  EXPECT_EQ(HumanSize(100), "0x64");
  EXPECT_EQ(Hex(255), "0xff");
}

}  // namespace
}  // namespace iommud

#include "clients/iommuctl/table.h"

#include "gtest/gtest.h"

namespace iommud {
namespace {

TEST(TableTest, AlignsColumnsWithoutTrailingSpaces) {
  Table table({"ID", "NAME", "X"});
  table.AddRow({"1", "a-long-name", ""});
  table.AddRow({"22", "b", "y"});
  EXPECT_EQ(table.Render(),
            "ID  NAME         X\n"
            "1   a-long-name\n"
            "22  b            y\n");
  EXPECT_EQ(table.rows(), 2u);
}

TEST(TableTest, MissingCellsAreEmpty) {
  Table table({"A", "B"});
  table.AddRow({"x"});
  EXPECT_EQ(table.Render(), "A  B\nx\n");
}

}  // namespace
}  // namespace iommud

#include "server/api/pagination.h"

#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "core/error.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace iommud {
namespace {

using ::testing::ElementsAre;

std::string Identity(const std::string& s) { return s; }

// Walks every page of `items` with `page_size`; returns the items in the order received.
std::vector<std::string> WalkAll(const std::vector<std::string>& items, uint32_t page_size,
                                 int* pages) {
  std::vector<std::string> seen;
  std::string token;
  *pages = 0;
  do {
    absl::StatusOr<Page<std::string>> page = Paginate(items, Identity, "things", page_size, token);
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok()) break;
    ++*pages;
    seen.insert(seen.end(), page->items.begin(), page->items.end());
    token = page->next_page_token;
  } while (!token.empty());
  return seen;
}

TEST(PaginationTest, EffectivePageSize) {
  EXPECT_EQ(EffectivePageSize(0), 100u);
  EXPECT_EQ(EffectivePageSize(1), 1u);
  EXPECT_EQ(EffectivePageSize(1000), 1000u);
  EXPECT_EQ(EffectivePageSize(1001), 1000u);
  EXPECT_EQ(EffectivePageSize(~0u), 1000u);
}

TEST(PaginationTest, TokenRoundTrip) {
  const std::string token = EncodePageToken("groups?unit=smmu0", "0000:03:00.0");
  absl::StatusOr<std::string> key = DecodePageToken("groups?unit=smmu0", token);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(*key, "0000:03:00.0");
  // Opaque, and safe in URLs and command lines.
  EXPECT_EQ(token.find("0000:03"), std::string::npos);
  EXPECT_EQ(token.find_first_of("+/= \n"), std::string::npos);
}

void ExpectInvalidToken(absl::string_view collection, absl::string_view token) {
  absl::StatusOr<std::string> key = DecodePageToken(collection, token);
  EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument) << token;
  EXPECT_EQ(ErrorReason(key.status()), "INVALID_PAGE_TOKEN") << token;
  EXPECT_EQ(GetErrorMetadata(key.status()).at("field"), "page_token");
}

TEST(PaginationTest, TokenOfAnotherCollectionOrFilterIsRejected) {
  ExpectInvalidToken("devices", EncodePageToken("groups", "x"));
  ExpectInvalidToken("groups?unit=smmu1", EncodePageToken("groups?unit=smmu0", "x"));
  // A collection that is a prefix of the token's must not match either.
  ExpectInvalidToken("groups", EncodePageToken("groups?unit=a", "x"));
}

TEST(PaginationTest, ForeignTokensAreRejected) {
  ExpectInvalidToken("things", "not base64 !!");
  ExpectInvalidToken("things", absl::WebSafeBase64Escape("just some bytes"));
  ExpectInvalidToken("things", absl::WebSafeBase64Escape("p1:999:things-and-key"));
  ExpectInvalidToken("things", absl::WebSafeBase64Escape("p1:x:things"));
  ExpectInvalidToken("things", absl::WebSafeBase64Escape("p1:6:things"));  // no key
  ExpectInvalidToken("things", absl::WebSafeBase64Escape("p2:6:thingskey"));
}

TEST(PaginationTest, WalksEveryItemOnceInKeyOrder) {
  std::vector<std::string> items = {"g", "c", "a", "j", "e", "b", "i", "d", "h", "f"};
  int pages = 0;
  EXPECT_THAT(WalkAll(items, 3, &pages),
              ElementsAre("a", "b", "c", "d", "e", "f", "g", "h", "i", "j"));
  EXPECT_EQ(pages, 4);
  // An exact multiple of the page size: no empty last page.
  items.pop_back();
  items.pop_back();
  EXPECT_EQ(WalkAll(items, 4, &pages).size(), 8u);
  EXPECT_EQ(pages, 2);
}

TEST(PaginationTest, DefaultAndMaximumPageSizes) {
  std::vector<std::string> items;
  for (int i = 0; i < 1500; ++i) items.push_back(NumericPageKey(i));
  absl::StatusOr<Page<std::string>> page = Paginate(items, Identity, "things", 0, "");
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->items.size(), 100u);
  EXPECT_FALSE(page->next_page_token.empty());
  page = Paginate(items, Identity, "things", 5000, "");
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->items.size(), 1000u);
  page = Paginate(items, Identity, "things", 5000, page->next_page_token);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->items.size(), 500u);
  EXPECT_TRUE(page->next_page_token.empty());
}

TEST(PaginationTest, EmptyListIsOneEmptyPage) {
  absl::StatusOr<Page<std::string>> page =
      Paginate(std::vector<std::string>(), Identity, "things", 0, "");
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->items.empty());
  EXPECT_TRUE(page->next_page_token.empty());
}

TEST(PaginationTest, SurvivesInsertsAndErasesBetweenPages) {
  std::vector<std::string> items = {"a", "b", "c", "d", "e", "f"};
  absl::StatusOr<Page<std::string>> first = Paginate(items, Identity, "things", 3, "");
  ASSERT_TRUE(first.ok());
  EXPECT_THAT(first->items, ElementsAre("a", "b", "c"));
  // "c" (the token's key) and "d" go away, "bb" (before the token) and "cc" (after) appear.
  items = {"a", "b", "bb", "cc", "e", "f"};
  absl::StatusOr<Page<std::string>> second =
      Paginate(items, Identity, "things", 3, first->next_page_token);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_THAT(second->items, ElementsAre("cc", "e", "f"));
  EXPECT_TRUE(second->next_page_token.empty());
}

TEST(PaginationTest, BadTokenFailsThePage) {
  absl::StatusOr<Page<std::string>> page =
      Paginate(std::vector<std::string>{"a"}, Identity, "things", 0, "%%%");
  EXPECT_EQ(ErrorReason(page.status()), "INVALID_PAGE_TOKEN");
}

TEST(PaginationTest, NumericKeysSortLikeNumbers) {
  EXPECT_LT(NumericPageKey(9), NumericPageKey(10));
  EXPECT_LT(NumericPageKey(99999), NumericPageKey(100000));
  EXPECT_LT(NumericPageKey(~uint64_t{0} - 1), NumericPageKey(~uint64_t{0}));
  struct Item {
    uint64_t id;
  };
  std::vector<Item> items = {{10}, {2}, {33}, {1}};
  absl::StatusOr<Page<Item>> page = Paginate(
      items, [](const Item& item) { return NumericPageKey(item.id); }, "ids", 2, "");
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->items.size(), 2u);
  EXPECT_EQ(page->items[0].id, 1u);
  EXPECT_EQ(page->items[1].id, 2u);
  page = Paginate(
      items, [](const Item& item) { return NumericPageKey(item.id); }, "ids", 2,
      page->next_page_token);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->items.size(), 2u);
  EXPECT_EQ(page->items[0].id, 10u);
  EXPECT_EQ(page->items[1].id, 33u);
}

}  // namespace
}  // namespace iommud

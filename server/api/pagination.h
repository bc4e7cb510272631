// Pagination of the List RPCs.
//
// A page token is opaque to clients: it encodes the collection it belongs to (the list and its
// filters, e.g. "groups?unit=smmu0") and the key of the last item returned. The next page holds the
// items whose key sorts after it, so a page survives concurrent inserts and erases: no item present
// through the whole walk is skipped or repeated. A token used on another collection, or that this
// server did not make, is INVALID_ARGUMENT (INVALID_PAGE_TOKEN).
#ifndef IOMMUD_SERVER_API_PAGINATION_H_
#define IOMMUD_SERVER_API_PAGINATION_H_

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/status_macros.h"

namespace iommud {

inline constexpr uint32_t kDefaultPageSize = 100;
inline constexpr uint32_t kMaxPageSize = 1000;

// 0 -> kDefaultPageSize; larger than `max_page_size` -> `max_page_size` (AIP-158: a page_size
// above the maximum is coerced down, not refused). The default is capped by the maximum too.
uint32_t EffectivePageSize(uint32_t requested, uint32_t max_page_size = kMaxPageSize);

std::string EncodePageToken(absl::string_view collection, absl::string_view last_key);
// The last key of a token made by EncodePageToken for `collection`; INVALID_PAGE_TOKEN otherwise.
absl::StatusOr<std::string> DecodePageToken(absl::string_view collection, absl::string_view token);

// A key that sorts (as a string) like the number: for ids and IOVAs.
std::string NumericPageKey(uint64_t value);

template <typename T>
struct Page {
  std::vector<T> items;
  std::string next_page_token;  // empty on the last page
};

// The page of `items` after `page_token` ("" = the first page), ordered by `key_of(item)` (a
// std::string). Keys must be unique within `items`.
template <typename T, typename KeyFn>
absl::StatusOr<Page<T>> Paginate(std::vector<T> items, KeyFn key_of, absl::string_view collection,
                                 uint32_t page_size, absl::string_view page_token) {
  std::string after;
  if (!page_token.empty()) {
    ASSIGN_OR_RETURN(after, DecodePageToken(collection, page_token));
  }
  std::vector<std::pair<std::string, size_t>> keys;
  keys.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) keys.emplace_back(key_of(items[i]), i);
  std::sort(keys.begin(), keys.end());
  auto it = keys.begin();
  if (!page_token.empty()) {
    it = std::upper_bound(
        keys.begin(), keys.end(), after,
        [](const std::string& key, const auto& entry) { return key < entry.first; });
  }
  const size_t limit = EffectivePageSize(page_size);
  Page<T> page;
  for (; it != keys.end() && page.items.size() < limit; ++it) {
    page.items.push_back(std::move(items[it->second]));
  }
  if (it != keys.end()) page.next_page_token = EncodePageToken(collection, std::prev(it)->first);
  return page;
}

}  // namespace iommud

#endif  // IOMMUD_SERVER_API_PAGINATION_H_

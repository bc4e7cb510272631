#include "server/api/pagination.h"

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "core/error.h"
#include "core/error_reasons.h"

namespace iommud {
namespace {

// Payload: "p1:" <collection length> ":" <collection> <last key>, then web-safe base64.
constexpr absl::string_view kTokenVersion = "p1:";

absl::Status InvalidToken(absl::string_view collection, absl::string_view why) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidPageToken,
               absl::StrCat("page_token is not a token of this list (", why,
                            "); pass the next_page_token of the previous page unchanged"),
               {{"field", "page_token"}, {"collection", std::string(collection)}});
}

}  // namespace

uint32_t EffectivePageSize(uint32_t requested, uint32_t max_page_size) {
  max_page_size = std::max<uint32_t>(max_page_size, 1);
  if (requested == 0) return std::min(kDefaultPageSize, max_page_size);
  return std::min(requested, max_page_size);
}

std::string EncodePageToken(absl::string_view collection, absl::string_view last_key) {
  return absl::WebSafeBase64Escape(
      absl::StrCat(kTokenVersion, collection.size(), ":", collection, last_key));
}

absl::StatusOr<std::string> DecodePageToken(absl::string_view collection, absl::string_view token) {
  std::string payload;
  if (!absl::WebSafeBase64Unescape(token, &payload)) return InvalidToken(collection, "not base64");
  absl::string_view rest = payload;
  if (!absl::ConsumePrefix(&rest, kTokenVersion)) return InvalidToken(collection, "bad version");
  size_t colon = rest.find(':');
  size_t length = 0;
  if (colon == absl::string_view::npos || !absl::SimpleAtoi(rest.substr(0, colon), &length) ||
      length > rest.size() - colon - 1) {
    return InvalidToken(collection, "malformed");
  }
  rest.remove_prefix(colon + 1);
  if (rest.substr(0, length) != collection) return InvalidToken(collection, "other list or filter");
  rest.remove_prefix(length);
  if (rest.empty()) return InvalidToken(collection, "no key");
  return std::string(rest);
}

std::string NumericPageKey(uint64_t value) { return absl::StrFormat("%020u", value); }

}  // namespace iommud

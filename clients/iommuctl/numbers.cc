#include "clients/iommuctl/numbers.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"

namespace iommud {

absl::StatusOr<uint64_t> ParseNumber(absl::string_view text, absl::string_view what) {
  auto invalid = [&] {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidNumber,
                 absl::StrCat(what, ": '", text, "' is not a number (decimal, 0x hex, or a size ",
                              "like 4K, 2M, 1G)"),
                 {{"argument", std::string(what)}});
  };
  absl::string_view digits = absl::StripAsciiWhitespace(text);
  if (digits.empty()) return invalid();
  int shift = 0;
  const char last = absl::ascii_toupper(digits.back());
  const bool hex = digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X');
  if (!hex) {
    switch (last) {
      case 'K': shift = 10; break;
      case 'M': shift = 20; break;
      case 'G': shift = 30; break;
      case 'T': shift = 40; break;
      default: break;
    }
    if (shift != 0) digits.remove_suffix(1);
  }
  uint64_t value = 0;
  const bool parsed = hex ? absl::SimpleHexAtoi(digits.substr(2), &value)
                          : absl::SimpleAtoi(digits, &value);
  if (!parsed || digits.empty()) return invalid();
  if (shift != 0 && value > (~uint64_t{0} >> shift)) return invalid();
  return value << shift;
}

std::string Hex(uint64_t value) { return absl::StrCat("0x", absl::Hex(value)); }

std::string HumanSize(uint64_t bytes) {
  if (bytes == 0) return "0";
  const char* const suffixes[] = {"T", "G", "M", "K"};
  const int shifts[] = {40, 30, 20, 10};
  for (int i = 0; i < 4; ++i) {
    const uint64_t unit = uint64_t{1} << shifts[i];
    if (bytes >= unit && bytes % unit == 0) return absl::StrCat(bytes / unit, suffixes[i]);
  }
  return Hex(bytes);
}

}  // namespace iommud

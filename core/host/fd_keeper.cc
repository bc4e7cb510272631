#include "core/host/fd_keeper.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace iommud {
namespace host {
namespace {

// FDNAMEs are printable ASCII without ':' (and without spaces): '%', ':' and everything outside
// 0x21-0x7e become %XX.
std::string Escape(absl::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (c < 0x21 || c > 0x7e || c == ':' || c == '%' || c == '-') {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

std::optional<std::string> Unescape(absl::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    int value = 0;
    if (i + 2 >= text.size() ||
        !absl::SimpleHexAtoi(text.substr(i + 1, 2), &value)) {
      return std::nullopt;
    }
    out.push_back(static_cast<char>(value));
    i += 2;
  }
  return out;
}

}  // namespace

std::string GroupFdName(int group) { return absl::StrCat("group-", group); }

std::string ContainerFdName(absl::string_view unit, DomainId domain) {
  return absl::StrCat("container-", Escape(unit), "-", domain);
}

std::optional<ContainerName> ParseContainerFdName(absl::string_view name) {
  if (!absl::ConsumePrefix(&name, "container-")) return std::nullopt;
  std::vector<absl::string_view> parts = absl::StrSplit(name, '-');
  ContainerName parsed;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &parsed.domain)) return std::nullopt;
  std::optional<std::string> unit = Unescape(parts[0]);
  if (!unit.has_value() || unit->empty()) return std::nullopt;
  parsed.unit = *unit;
  return parsed;
}

std::string MemoryFdName(const MemoryFdInfo& region) {
  return absl::StrCat("memory-", region.id, "-", absl::Hex(region.base), "-",
                      absl::Hex(region.size), "-", Escape(region.owner));
}

std::optional<MemoryFdInfo> ParseMemoryFdName(absl::string_view name) {
  if (!absl::ConsumePrefix(&name, "memory-")) return std::nullopt;
  std::vector<absl::string_view> parts = absl::StrSplit(name, '-');
  MemoryFdInfo parsed;
  if (parts.size() != 4 || !absl::SimpleAtoi(parts[0], &parsed.id) ||
      !absl::SimpleHexAtoi(parts[1], &parsed.base) ||
      !absl::SimpleHexAtoi(parts[2], &parsed.size)) {
    return std::nullopt;
  }
  std::optional<std::string> owner = Unescape(parts[3]);
  if (!owner.has_value() || owner->empty()) return std::nullopt;
  parsed.owner = *owner;
  return parsed;
}

}  // namespace host
}  // namespace iommud

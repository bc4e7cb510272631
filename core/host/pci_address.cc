#include "core/host/pci_address.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"

namespace iommud {
namespace host {
namespace {

bool ParseHex(absl::string_view text, size_t digits, uint32_t max, uint32_t* out) {
  if (text.size() != digits) return false;
  for (char c : text) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  uint32_t value = 0;
  if (!absl::SimpleHexAtoi(text, &value) || value > max) return false;
  *out = value;
  return true;
}

}  // namespace

std::string PciAddress::ToString() const {
  return absl::StrFormat("%04x:%02x:%02x.%x", domain, bus, device, function);
}

std::optional<PciAddress> ParsePciAddress(absl::string_view text) {
  // dddd:bb:dd.f
  if (text.size() != 12 || text[4] != ':' || text[7] != ':' || text[10] != '.') return std::nullopt;
  uint32_t domain, bus, device, function;
  if (!ParseHex(text.substr(0, 4), 4, 0xffff, &domain) ||
      !ParseHex(text.substr(5, 2), 2, 0xff, &bus) ||
      !ParseHex(text.substr(8, 2), 2, 31, &device) ||
      !ParseHex(text.substr(11, 1), 1, 7, &function)) {
    return std::nullopt;
  }
  PciAddress address;
  address.domain = domain;
  address.bus = static_cast<uint8_t>(bus);
  address.device = static_cast<uint8_t>(device);
  address.function = static_cast<uint8_t>(function);
  return address;
}

std::string RequesterIdToString(uint16_t requester_id) {
  return absl::StrFormat("%02x:%02x.%x", requester_id >> 8, (requester_id >> 3) & 0x1f,
                         requester_id & 0x7);
}

}  // namespace host
}  // namespace iommud

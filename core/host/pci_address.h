// PciAddress: a PCI function's address (domain:bus:device.function, "0000:01:02.0" in sysfs).
#ifndef IOMMUD_CORE_HOST_PCI_ADDRESS_H_
#define IOMMUD_CORE_HOST_PCI_ADDRESS_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace iommud {
namespace host {

struct PciAddress {
  uint32_t domain = 0;
  uint8_t bus = 0;
  uint8_t device = 0;    // 0..31
  uint8_t function = 0;  // 0..7

  // The 16-bit requester id this function puts on its own transactions: bus << 8 | devfn.
  uint16_t RequesterId() const {
    return static_cast<uint16_t>(bus << 8 | device << 3 | function);
  }
  // "dddd:bb:dd.f", lower-case hex, as sysfs names devices.
  std::string ToString() const;

  friend bool operator==(const PciAddress& a, const PciAddress& b) {
    return a.domain == b.domain && a.bus == b.bus && a.device == b.device &&
           a.function == b.function;
  }
};

// Parses "dddd:bb:dd.f" (the sysfs spelling; hex, the domain exactly 4 digits). nullopt when `text`
// is not a PCI address (e.g. "pci0000:00" or a device name of another bus).
std::optional<PciAddress> ParsePciAddress(absl::string_view text);

// "bb:dd.f" of a requester id (e.g. 0x0018 -> "00:03.0").
std::string RequesterIdToString(uint16_t requester_id);

}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_CORE_HOST_PCI_ADDRESS_H_

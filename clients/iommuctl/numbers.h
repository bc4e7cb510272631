// Numbers on the iommuctl command line: decimal, hex (0x...), and sizes with a K/M/G/T suffix
// (powers of 1024), e.g. "4K", "2M", "0x1000", "4096".
#ifndef IOMMUD_CLIENTS_IOMMUCTL_NUMBERS_H_
#define IOMMUD_CLIENTS_IOMMUCTL_NUMBERS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace iommud {

// INVALID_ARGUMENT (INVALID_NUMBER) naming `what` for anything else, or on overflow.
absl::StatusOr<uint64_t> ParseNumber(absl::string_view text, absl::string_view what);

// "0x1000"
std::string Hex(uint64_t value);
// A size for humans: "4K", "2M", "1G", "12K", or hex when not a whole K.
std::string HumanSize(uint64_t bytes);

}  // namespace iommud

#endif  // IOMMUD_CLIENTS_IOMMUCTL_NUMBERS_H_

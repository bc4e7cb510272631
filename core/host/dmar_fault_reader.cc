#include "core/host/dmar_fault_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/error_reasons.h"
#include "core/host/errno_error.h"
#include "core/sync.h"

namespace iommud {
namespace host {
namespace {

// The text between `after` and the next `until` in `text`, or "".
absl::string_view Between(absl::string_view text, absl::string_view after, absl::string_view until) {
  const size_t start = text.find(after);
  if (start == absl::string_view::npos) return "";
  absl::string_view rest = text.substr(start + after.size());
  const size_t end = rest.find(until);
  return end == absl::string_view::npos ? "" : rest.substr(0, end);
}

}  // namespace

std::optional<DmarFault> ParseDmarFault(absl::string_view record) {
  // A kmsg record is "prio,seq,usec,flags;text\n": the text follows the first ';'.
  const size_t semicolon = record.find(';');
  absl::string_view text = semicolon == absl::string_view::npos ? record : record.substr(semicolon + 1);
  if (!absl::StrContains(text, "DMAR: [DMA ")) return std::nullopt;
  DmarFault fault;
  if (absl::StrContains(text, "[DMA Read")) {
    fault.access = kProtRead;
  } else if (absl::StrContains(text, "[DMA Write")) {
    fault.access = kProtWrite;
  } else {
    return std::nullopt;
  }
  // "Request device [bb:dd.f]"
  const absl::string_view bdf = Between(text, "Request device [", "]");
  unsigned bus = 0, dev = 0, fn = 0;
  if (bdf.size() != 7 || bdf[2] != ':' || bdf[5] != '.' ||
      !absl::SimpleHexAtoi(bdf.substr(0, 2), &bus) || !absl::SimpleHexAtoi(bdf.substr(3, 2), &dev) ||
      !absl::SimpleAtoi(bdf.substr(6, 1), &fn) || dev > 31 || fn > 7) {
    return std::nullopt;
  }
  fault.rid = static_cast<Rid>(bus << 8 | dev << 3 | fn);
  absl::string_view addr = Between(text, "fault addr ", " ");
  if (absl::StartsWith(addr, "0x")) addr.remove_prefix(2);
  if (addr.empty() || !absl::SimpleHexAtoi(addr, &fault.iova)) return std::nullopt;
  fault.time_unix_nanos = absl::ToUnixNanos(absl::Now());
  return fault;
}

absl::StatusOr<std::unique_ptr<DmarFaultReader>> DmarFaultReader::Open(const std::string& kmsg_path) {
  UniqueFd fd(::open(kmsg_path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) {
    const int err = errno;
    return ErrnoError(CodeForErrno(err), reason::kKmsgOpenFailed,
                      absl::StrCat("open ", kmsg_path), err, {{"path", kmsg_path}});
  }
  // Only what is logged from now on: older faults belong to earlier owners of the devices.
  (void)::lseek(fd.get(), 0, SEEK_END);
  return std::unique_ptr<DmarFaultReader>(new DmarFaultReader(std::move(fd)));
}

std::vector<DmarFault> DmarFaultReader::Drain() {
  MutexLock lock(&mu_);
  std::vector<DmarFault> faults;
  char record[8192];
  for (;;) {
    const ssize_t n = ::read(fd_.get(), record, sizeof(record));
    if (n < 0 && errno == EPIPE) continue;  // overwritten records: go on with the next one
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;                      // EAGAIN: nothing more logged
    if (std::optional<DmarFault> fault = ParseDmarFault(absl::string_view(record, n))) {
      faults.push_back(*fault);
    }
  }
  return faults;
}

}  // namespace host
}  // namespace iommud

// DmarFaultReader: the DMA faults an Intel IOMMU reports, as the kernel logs them.
//
// The VT-d driver logs each fault it handles as a kernel message
//   DMAR: [DMA Write NO_PASID] Request device [00:02.0] fault addr 0x200000 [fault reason 0x05] ...
// (older kernels: "DMAR: [DMA Write] Request device ..."). Userspace has no other view of them with
// the VFIO type1 API, so the linux backend reads /dev/kmsg: records written after the reader was
// opened, parsed into FaultRecords (requester id, IOVA, access). What the fault was (no mapping,
// no permission) the caller decides from its own view of the domain.
//
// Thread safety: Drain may be called from any thread (calls are serialized inside).
#ifndef IOMMUD_CORE_HOST_DMAR_FAULT_READER_H_
#define IOMMUD_CORE_HOST_DMAR_FAULT_READER_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "core/host/unique_fd.h"
#include "core/types.h"

namespace iommud {
namespace host {

// One fault as logged: who, where, which access (kProtRead or kProtWrite).
struct DmarFault {
  Rid rid = 0;
  uint64_t iova = 0;
  uint32_t access = 0;
  int64_t time_unix_nanos = 0;  // when it was read (kmsg stamps are boot-relative)
};

// Parses one /dev/kmsg record or log line; nullopt if it is not a DMAR fault report.
std::optional<DmarFault> ParseDmarFault(absl::string_view record);

class DmarFaultReader {
 public:
  // Opens `kmsg_path` (non-blocking) positioned at its end. SYSFS_READ_FAILED-like errors:
  // KMSG_OPEN_FAILED with the errno (reading /dev/kmsg needs CAP_SYSLOG unless dmesg_restrict=0).
  static absl::StatusOr<std::unique_ptr<DmarFaultReader>> Open(const std::string& kmsg_path);

  // The faults logged since the last call, oldest first (records the kernel overwrote before they
  // were read are lost; kmsg reports that as EPIPE and reading goes on).
  std::vector<DmarFault> Drain();

 private:
  explicit DmarFaultReader(UniqueFd fd) : fd_(std::move(fd)) {}

  absl::Mutex mu_;
  UniqueFd fd_ ABSL_GUARDED_BY(mu_);
};

}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_CORE_HOST_DMAR_FAULT_READER_H_

// DmaDomain: an IOMMU address space userspace maps its own memory into, the kernel-facing half of
// an iommud domain on a real host. VfioContainer (VFIO type1v2) implements it today; an iommufd
// IOAS can implement it on kernels built with CONFIG_IOMMUFD (Debian 12's are not).
//
// Devices are attached by the implementation's own means (VFIO attaches whole groups to a
// container, iommufd attaches device fds to an IOAS), so attaching is not part of this interface.
#ifndef IOMMUD_CORE_HOST_DMA_DOMAIN_H_
#define IOMMUD_CORE_HOST_DMA_DOMAIN_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace iommud {
namespace host {

// [start, end], end inclusive.
struct IovaRange {
  uint64_t start = 0;
  uint64_t end = 0;
};

struct DmaDomainInfo {
  uint64_t page_sizes = 0;             // bitmap of IOMMU page sizes (bit 12: 4 KiB)
  std::vector<IovaRange> iova_ranges;  // usable IOVA, ascending; empty if the kernel does not say
};

enum DmaAccess : uint32_t {
  kDmaRead = 1,   // the device may read the memory
  kDmaWrite = 2,  // the device may write the memory
  kDmaReadWrite = kDmaRead | kDmaWrite,
};

class DmaDomain {
 public:
  virtual ~DmaDomain() = default;

  // Page sizes and usable IOVA ranges. Only meaningful once a device is attached.
  virtual absl::StatusOr<DmaDomainInfo> Info() = 0;

  // Maps `length` bytes of this process's memory at `vaddr` at `iova`. The kernel pins the pages
  // until unmapped (or the domain is closed); the memory must stay mapped in the process.
  // `iova`, `vaddr` and `length` must be page aligned.
  virtual absl::Status Map(uint64_t iova, const void* vaddr, uint64_t length,
                           DmaAccess access) = 0;

  // Unmaps [iova, iova + length) (whole mappings only) and returns the bytes unmapped.
  virtual absl::StatusOr<uint64_t> Unmap(uint64_t iova, uint64_t length) = 0;
};

}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_CORE_HOST_DMA_DOMAIN_H_

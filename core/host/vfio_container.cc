#include "core/host/vfio_container.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/host/errno_error.h"

namespace iommud {
namespace host {
namespace {

std::string Hex(uint64_t value) { return absl::StrFormat("0x%x", value); }

// Capabilities sit at whatever offset the kernel chose (not necessarily 8-byte aligned): every
// structure is copied out of the buffer, never accessed in place.
template <typename T>
T CopyAt(const std::vector<uint8_t>& buffer, size_t offset) {
  T value;
  std::memcpy(&value, buffer.data() + offset, sizeof(T));
  return value;
}

// Walks a VFIO info capability chain in `info` (offsets are from the start of the buffer) and
// returns the offset of capability `id`, or 0 when it is not there.
size_t FindCapability(const std::vector<uint8_t>& info, uint32_t first, uint16_t id) {
  uint32_t offset = first;
  for (int hops = 0; offset != 0 && hops < 64; ++hops) {
    if (offset + sizeof(vfio_info_cap_header) > info.size()) return 0;
    const auto header = CopyAt<vfio_info_cap_header>(info, offset);
    if (header.id == id) return offset;
    offset = header.next;
  }
  return 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<VfioContainer>> VfioContainer::Open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) {
    const int err = errno;
    return ErrnoError(err == ENOENT ? absl::StatusCode::kUnavailable : CodeForErrno(err),
                      reason::kVfioUnavailable, absl::StrCat("cannot open ", path), err,
                      {{"path", path}});
  }
  const int version = ::ioctl(fd.get(), VFIO_GET_API_VERSION);
  if (version != VFIO_API_VERSION) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kVfioApiMismatch,
                 absl::StrCat("VFIO API version ", version, ", expected ", VFIO_API_VERSION),
                 {{"path", path}});
  }
  if (::ioctl(fd.get(), VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) != 1) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kVfioExtensionMissing,
                 "the kernel's VFIO does not support VFIO_TYPE1v2_IOMMU (vfio_iommu_type1 loaded?)",
                 {{"path", path}});
  }
  return std::unique_ptr<VfioContainer>(new VfioContainer(std::move(fd)));
}

absl::Status VfioContainer::Attach(VfioGroup& group) {
  const ErrorMetadata metadata = {{"group_id", absl::StrCat(group.id())}};
  int container = fd_.get();
  if (::ioctl(group.fd(), VFIO_GROUP_SET_CONTAINER, &container) != 0) {
    const int err = errno;
    return ErrnoError(CodeForErrno(err), reason::kGroupSetContainerFailed,
                      absl::StrCat("VFIO_GROUP_SET_CONTAINER for group ", group.id()), err,
                      metadata);
  }
  if (!HasIommu() && ::ioctl(fd_.get(), VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) != 0) {
    const int err = errno;
    (void)::ioctl(group.fd(), VFIO_GROUP_UNSET_CONTAINER);
    return ErrnoError(CodeForErrno(err), reason::kIommuSetFailed,
                      absl::StrCat("VFIO_SET_IOMMU(VFIO_TYPE1v2_IOMMU) with group ", group.id()),
                      err, metadata);
  }
  return absl::OkStatus();
}

absl::Status VfioContainer::Detach(VfioGroup& group) {
  if (::ioctl(group.fd(), VFIO_GROUP_UNSET_CONTAINER) != 0) {
    const int err = errno;
    return ErrnoError(CodeForErrno(err), reason::kGroupUnsetContainerFailed,
                      absl::StrCat("VFIO_GROUP_UNSET_CONTAINER for group ", group.id()), err,
                      {{"group_id", absl::StrCat(group.id())}});
  }
  return absl::OkStatus();
}

bool VfioContainer::HasIommu() const {
  vfio_iommu_type1_info info = {};
  info.argsz = sizeof(info);
  return ::ioctl(fd_.get(), VFIO_IOMMU_GET_INFO, &info) == 0;
}

absl::StatusOr<DmaDomainInfo> VfioContainer::Info() {
  // First call: learn the size the capability chain needs; second call: read it.
  std::vector<uint8_t> buffer(sizeof(vfio_iommu_type1_info));
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto* info = reinterpret_cast<vfio_iommu_type1_info*>(buffer.data());
    info->argsz = static_cast<uint32_t>(buffer.size());
    if (::ioctl(fd_.get(), VFIO_IOMMU_GET_INFO, info) != 0) {
      const int err = errno;
      return ErrnoError(CodeForErrno(err), reason::kIommuInfoFailed, "ioctl VFIO_IOMMU_GET_INFO", err);
    }
    if (info->argsz <= buffer.size()) break;
    buffer.resize(info->argsz);
    std::memset(buffer.data(), 0, buffer.size());
  }
  const auto info = CopyAt<vfio_iommu_type1_info>(buffer, 0);
  DmaDomainInfo result;
  if (info.flags & VFIO_IOMMU_INFO_PGSIZES) result.page_sizes = info.iova_pgsizes;
  if (!(info.flags & VFIO_IOMMU_INFO_CAPS) || info.cap_offset == 0) return result;
  const size_t cap_offset =
      FindCapability(buffer, info.cap_offset, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE);
  if (cap_offset == 0 ||
      cap_offset + sizeof(vfio_iommu_type1_info_cap_iova_range) > buffer.size()) {
    return result;
  }
  const auto cap = CopyAt<vfio_iommu_type1_info_cap_iova_range>(buffer, cap_offset);
  const size_t ranges = cap_offset + sizeof(cap);
  if (ranges + size_t{cap.nr_iovas} * sizeof(vfio_iova_range) > buffer.size()) {
    return Error(absl::StatusCode::kInternal, reason::kIommuInfoFailed,
                 absl::StrCat("the IOVA range capability claims ", cap.nr_iovas,
                              " ranges, more than VFIO_IOMMU_GET_INFO returned"));
  }
  for (uint32_t i = 0; i < cap.nr_iovas; ++i) {
    const auto range = CopyAt<vfio_iova_range>(buffer, ranges + i * sizeof(vfio_iova_range));
    result.iova_ranges.push_back({range.start, range.end});
  }
  return result;
}

absl::Status VfioContainer::Map(uint64_t iova, const void* vaddr, uint64_t length,
                                DmaAccess access) {
  const ErrorMetadata metadata = {{"iova", Hex(iova)}, {"length", Hex(length)}};
  if (length == 0 || (access & kDmaReadWrite) == 0) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidArgument,
                 "a DMA mapping needs a length and an access", metadata);
  }
  vfio_iommu_type1_dma_map map = {};
  map.argsz = sizeof(map);
  map.flags = ((access & kDmaRead) ? VFIO_DMA_MAP_FLAG_READ : 0) |
              ((access & kDmaWrite) ? VFIO_DMA_MAP_FLAG_WRITE : 0);
  map.vaddr = reinterpret_cast<uint64_t>(vaddr);
  map.iova = iova;
  map.size = length;
  if (::ioctl(fd_.get(), VFIO_IOMMU_MAP_DMA, &map) != 0) {
    const int err = errno;
    return ErrnoError(err == EEXIST ? absl::StatusCode::kAlreadyExists : CodeForErrno(err),
                      reason::kDmaMapFailed,
                      absl::StrCat("VFIO_IOMMU_MAP_DMA of ", Hex(length), " bytes at IOVA ",
                                   Hex(iova)),
                      err, metadata);
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> VfioContainer::Unmap(uint64_t iova, uint64_t length) {
  vfio_iommu_type1_dma_unmap unmap = {};
  unmap.argsz = sizeof(unmap);
  unmap.iova = iova;
  unmap.size = length;
  if (::ioctl(fd_.get(), VFIO_IOMMU_UNMAP_DMA, &unmap) != 0) {
    const int err = errno;
    return ErrnoError(CodeForErrno(err), reason::kDmaUnmapFailed,
                      absl::StrCat("VFIO_IOMMU_UNMAP_DMA of ", Hex(length), " bytes at IOVA ",
                                   Hex(iova)),
                      err, {{"iova", Hex(iova)}, {"length", Hex(length)}});
  }
  return static_cast<uint64_t>(unmap.size);
}

}  // namespace host
}  // namespace iommud

#include "core/host/vfio_device.h"

#include <errno.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/host/errno_error.h"
#include "core/status_macros.h"

namespace iommud {
namespace host {

MappedRegion::~MappedRegion() {
  if (base_ != nullptr) ::munmap(base_, size_);
}

MappedRegion::MappedRegion(MappedRegion&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)), size_(std::exchange(other.size_, 0)) {}

MappedRegion& MappedRegion::operator=(MappedRegion&& other) noexcept {
  if (this != &other) {
    if (base_ != nullptr) ::munmap(base_, size_);
    base_ = std::exchange(other.base_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

absl::StatusOr<uint32_t> VfioDevice::NumRegions() const {
  vfio_device_info info = {};
  info.argsz = sizeof(info);
  if (::ioctl(fd_.get(), VFIO_DEVICE_GET_INFO, &info) != 0) {
    const int err = errno;
    return ErrnoError(CodeForErrno(err), reason::kDeviceInfoFailed,
                      absl::StrCat("VFIO_DEVICE_GET_INFO of ", name_), err, {{"device", name_}});
  }
  return info.num_regions;
}

absl::StatusOr<VfioRegionInfo> VfioDevice::RegionInfo(uint32_t index) const {
  vfio_region_info info = {};
  info.argsz = sizeof(info);
  info.index = index;
  if (::ioctl(fd_.get(), VFIO_DEVICE_GET_REGION_INFO, &info) != 0) {
    const int err = errno;
    return ErrnoError(CodeForErrno(err), reason::kRegionInfoFailed,
                      absl::StrCat("VFIO_DEVICE_GET_REGION_INFO of region ", index, " of ", name_),
                      err, {{"device", name_}, {"region", absl::StrCat(index)}});
  }
  VfioRegionInfo region;
  region.index = index;
  region.flags = info.flags;
  region.size = info.size;
  region.offset = info.offset;
  return region;
}

absl::StatusOr<MappedRegion> VfioDevice::MapRegion(uint32_t index) const {
  ASSIGN_OR_RETURN(const VfioRegionInfo region, RegionInfo(index));
  const ErrorMetadata metadata = {{"device", name_}, {"region", absl::StrCat(index)}};
  if (!(region.flags & VFIO_REGION_INFO_FLAG_MMAP) || region.size == 0) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kRegionNotMappable,
                 absl::StrCat("region ", index, " of ", name_, " cannot be mmapped"), metadata);
  }
  int prot = 0;
  if (region.flags & VFIO_REGION_INFO_FLAG_READ) prot |= PROT_READ;
  if (region.flags & VFIO_REGION_INFO_FLAG_WRITE) prot |= PROT_WRITE;
  void* base = ::mmap(nullptr, region.size, prot, MAP_SHARED, fd_.get(),
                      static_cast<off_t>(region.offset));
  if (base == MAP_FAILED) {
    const int err = errno;
    return ErrnoError(CodeForErrno(err), reason::kRegionMapFailed,
                      absl::StrCat("mmap of region ", index, " of ", name_), err, metadata);
  }
  return MappedRegion(base, region.size);
}

absl::StatusOr<uint32_t> VfioDevice::ReadConfig(uint32_t offset, int size) const {
  ASSIGN_OR_RETURN(const VfioRegionInfo config, RegionInfo(VFIO_PCI_CONFIG_REGION_INDEX));
  uint8_t bytes[4] = {};
  if (size != 1 && size != 2 && size != 4) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kConfigAccessFailed,
                 "config accesses are 1, 2 or 4 bytes", {{"device", name_}});
  }
  const ssize_t n = ::pread(fd_.get(), bytes, size, static_cast<off_t>(config.offset + offset));
  if (n != size) {
    const int err = n < 0 ? errno : EIO;
    return ErrnoError(CodeForErrno(err), reason::kConfigAccessFailed,
                      absl::StrCat("reading config offset ", offset, " of ", name_), err,
                      {{"device", name_}});
  }
  uint32_t value = 0;
  for (int i = size - 1; i >= 0; --i) value = value << 8 | bytes[i];
  return value;
}

absl::Status VfioDevice::WriteConfig(uint32_t offset, int size, uint32_t value) const {
  ASSIGN_OR_RETURN(const VfioRegionInfo config, RegionInfo(VFIO_PCI_CONFIG_REGION_INDEX));
  if (size != 1 && size != 2 && size != 4) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kConfigAccessFailed,
                 "config accesses are 1, 2 or 4 bytes", {{"device", name_}});
  }
  uint8_t bytes[4];
  for (int i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(value >> (8 * i));
  const ssize_t n = ::pwrite(fd_.get(), bytes, size, static_cast<off_t>(config.offset + offset));
  if (n != size) {
    const int err = n < 0 ? errno : EIO;
    return ErrnoError(CodeForErrno(err), reason::kConfigAccessFailed,
                      absl::StrCat("writing config offset ", offset, " of ", name_), err,
                      {{"device", name_}});
  }
  return absl::OkStatus();
}

}  // namespace host
}  // namespace iommud

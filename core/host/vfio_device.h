// VfioDevice: a VFIO device fd (from VfioGroup::GetDeviceFd) and the region access a driver in
// userspace needs: region info, config space reads/writes, mmap of a BAR.
//
// The object owns the fd; Release() hands it on (e.g. to a VMM over SCM_RIGHTS). Mapped regions
// are owned by the returned MappedRegion and unmapped when it goes away; they do not keep the
// device fd open. Not synchronized: one thread at a time.
// Errors: DEVICE_INFO_FAILED, REGION_INFO_FAILED, REGION_NOT_MAPPABLE, REGION_MAP_FAILED,
// CONFIG_ACCESS_FAILED.
#ifndef IOMMUD_CORE_HOST_VFIO_DEVICE_H_
#define IOMMUD_CORE_HOST_VFIO_DEVICE_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/host/unique_fd.h"

namespace iommud {
namespace host {

struct VfioRegionInfo {
  uint32_t index = 0;
  uint32_t flags = 0;   // VFIO_REGION_INFO_FLAG_{READ,WRITE,MMAP}
  uint64_t size = 0;
  uint64_t offset = 0;  // where the region starts in the device fd (pread/pwrite/mmap offset)
};

// An mmap of a device region; unmapped on destruction. Move-only.
class MappedRegion {
 public:
  MappedRegion() = default;
  MappedRegion(void* base, size_t size) : base_(base), size_(size) {}
  ~MappedRegion();
  MappedRegion(MappedRegion&& other) noexcept;
  MappedRegion& operator=(MappedRegion&& other) noexcept;
  MappedRegion(const MappedRegion&) = delete;
  MappedRegion& operator=(const MappedRegion&) = delete;

  volatile uint8_t* base() const { return static_cast<volatile uint8_t*>(base_); }
  size_t size() const { return size_; }

 private:
  void* base_ = nullptr;
  size_t size_ = 0;
};

class VfioDevice {
 public:
  // `name` ("0000:00:02.0") only labels errors.
  VfioDevice(std::string name, UniqueFd fd) : name_(std::move(name)), fd_(std::move(fd)) {}

  const std::string& name() const { return name_; }
  int fd() const { return fd_.get(); }
  UniqueFd Release() { return std::move(fd_); }

  // VFIO_DEVICE_GET_INFO: the number of regions (PCI: BARs 0-5, ROM, config, VGA).
  absl::StatusOr<uint32_t> NumRegions() const;
  // VFIO_DEVICE_GET_REGION_INFO of region `index` (VFIO_PCI_BAR0_REGION_INDEX ...).
  absl::StatusOr<VfioRegionInfo> RegionInfo(uint32_t index) const;
  // mmap of a whole region that has VFIO_REGION_INFO_FLAG_MMAP.
  absl::StatusOr<MappedRegion> MapRegion(uint32_t index) const;

  // Reads/writes `size` (1, 2 or 4) bytes of PCI config space at `offset`, little endian.
  absl::StatusOr<uint32_t> ReadConfig(uint32_t offset, int size) const;
  absl::Status WriteConfig(uint32_t offset, int size, uint32_t value) const;

 private:
  std::string name_;
  UniqueFd fd_;
};

}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_CORE_HOST_VFIO_DEVICE_H_

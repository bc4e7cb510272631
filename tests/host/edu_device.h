// EduDevice: drives QEMU's "edu" teaching device (PCI 1234:11e8) through a VFIO device fd, to make
// real DMA through the guest's IOMMU.
//
// BAR0 registers used: 0x00 id (0x010000ed), 0x80 DMA source, 0x88 DMA destination, 0x90 count,
// 0x98 command (bit 0 start, cleared by the device when done; bit 1 direction, 1 = device to RAM).
// The device's internal buffer is at device address 0x40000 (4 KiB). Addresses on the RAM side are
// IOVAs (translated by the IOMMU); the device masks them to 28 bits. QEMU 7.2 aborts on a
// transfer covering the whole 4 KiB buffer, so count must stay below 4096.
#ifndef IOMMUD_TESTS_HOST_EDU_DEVICE_H_
#define IOMMUD_TESTS_HOST_EDU_DEVICE_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/host/vfio_device.h"

namespace iommud {
namespace host {
namespace test {

inline constexpr uint16_t kEduVendor = 0x1234;
inline constexpr uint16_t kEduDeviceId = 0x11e8;
inline constexpr uint64_t kEduBufferAddress = 0x40000;
inline constexpr uint32_t kEduMaxCount = 4095;

class EduDevice {
 public:
  // Maps BAR0 of `device` (which must outlive the EduDevice), checks the id register and enables
  // bus mastering through the config region.
  static absl::StatusOr<std::unique_ptr<EduDevice>> Open(const VfioDevice& device);

  uint32_t ReadId() const;

  // RAM (IOVA `iova`) -> device buffer, `count` bytes; waits for completion.
  absl::Status CopyToDevice(uint64_t iova, uint32_t count, absl::Duration timeout = absl::Seconds(5));
  // Device buffer -> RAM (IOVA `iova`), `count` bytes; waits for completion. The edu device reports
  // completion even when the IOMMU refused the write: check the memory, not this status.
  absl::Status CopyFromDevice(uint64_t iova, uint32_t count,
                              absl::Duration timeout = absl::Seconds(5));

 private:
  explicit EduDevice(MappedRegion bar0) : bar0_(std::move(bar0)) {}
  absl::Status Dma(uint64_t src, uint64_t dst, uint32_t count, bool to_ram, absl::Duration timeout);
  uint64_t Read64(uint32_t offset) const;
  void Write64(uint32_t offset, uint64_t value);

  MappedRegion bar0_;
};

}  // namespace test
}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_TESTS_HOST_EDU_DEVICE_H_

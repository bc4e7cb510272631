#include "tests/host/edu_device.h"

#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include <utility>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "core/error.h"
#include "core/status_macros.h"

namespace iommud {
namespace host {
namespace test {
namespace {

constexpr uint32_t kIdRegister = 0x00;
constexpr uint32_t kExpectedId = 0x010000ed;
constexpr uint32_t kDmaSource = 0x80;
constexpr uint32_t kDmaDestination = 0x88;
constexpr uint32_t kDmaCount = 0x90;
constexpr uint32_t kDmaCommand = 0x98;
constexpr uint64_t kDmaStart = 1;
constexpr uint64_t kDmaToRam = 2;

}  // namespace

absl::StatusOr<std::unique_ptr<EduDevice>> EduDevice::Open(const VfioDevice& device) {
  ASSIGN_OR_RETURN(MappedRegion bar0, device.MapRegion(VFIO_PCI_BAR0_REGION_INDEX));
  std::unique_ptr<EduDevice> edu(new EduDevice(std::move(bar0)));
  const uint32_t id = edu->ReadId();
  if (id != kExpectedId) {
    return Error(absl::StatusCode::kFailedPrecondition, "NOT_AN_EDU",
                 absl::StrFormat("%s: id register 0x%08x, expected 0x%08x", device.name(), id,
                                 kExpectedId));
  }
  ASSIGN_OR_RETURN(const uint32_t command, device.ReadConfig(PCI_COMMAND, 2));
  RETURN_IF_ERROR(device.WriteConfig(PCI_COMMAND, 2, command | PCI_COMMAND_MASTER));
  return edu;
}

uint32_t EduDevice::ReadId() const {
  return *reinterpret_cast<volatile uint32_t*>(bar0_.base() + kIdRegister);
}

uint64_t EduDevice::Read64(uint32_t offset) const {
  return *reinterpret_cast<volatile uint64_t*>(bar0_.base() + offset);
}

void EduDevice::Write64(uint32_t offset, uint64_t value) {
  *reinterpret_cast<volatile uint64_t*>(bar0_.base() + offset) = value;
}

absl::Status EduDevice::CopyToDevice(uint64_t iova, uint32_t count, absl::Duration timeout) {
  return Dma(iova, kEduBufferAddress, count, /*to_ram=*/false, timeout);
}

absl::Status EduDevice::CopyFromDevice(uint64_t iova, uint32_t count, absl::Duration timeout) {
  return Dma(kEduBufferAddress, iova, count, /*to_ram=*/true, timeout);
}

absl::Status EduDevice::Dma(uint64_t src, uint64_t dst, uint32_t count, bool to_ram,
                            absl::Duration timeout) {
  if (count == 0 || count > kEduMaxCount) {
    return Error(absl::StatusCode::kInvalidArgument, "INVALID_ARGUMENT",
                 absl::StrFormat("edu DMA count %u outside [1, %u]", count, kEduMaxCount));
  }
  if (Read64(kDmaCommand) & kDmaStart) {
    return Error(absl::StatusCode::kUnavailable, "EDU_BUSY", "a DMA is already running");
  }
  Write64(kDmaSource, src);
  Write64(kDmaDestination, dst);
  Write64(kDmaCount, count);
  Write64(kDmaCommand, kDmaStart | (to_ram ? kDmaToRam : 0));
  const absl::Time deadline = absl::Now() + timeout;
  while (Read64(kDmaCommand) & kDmaStart) {
    if (absl::Now() > deadline) {
      return Error(absl::StatusCode::kDeadlineExceeded, "EDU_DMA_TIMEOUT",
                   absl::StrFormat("edu DMA 0x%x -> 0x%x (%u bytes) did not complete in %s", src,
                                   dst, count, absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return absl::OkStatus();
}

}  // namespace test
}  // namespace host
}  // namespace iommud

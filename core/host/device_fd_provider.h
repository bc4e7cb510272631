// DeviceFdProvider: hands out the VFIO device fd of a device whose group iommud holds open.
//
// The linux backend implements it; the fd side channel (server/) uses it to give an owner its
// device. Authorization (the caller owns the device's group) is the caller's, done under the
// group's registry lock (Registry::WithOwnedDevice) so no other owner can take the group meanwhile.
#ifndef IOMMUD_CORE_HOST_DEVICE_FD_PROVIDER_H_
#define IOMMUD_CORE_HOST_DEVICE_FD_PROVIDER_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/host/unique_fd.h"

namespace iommud {
namespace host {

class DeviceFdProvider {
 public:
  virtual ~DeviceFdProvider() = default;

  // A new fd for `device` ("0000:00:02.0"), owned by the caller. FAILED_PRECONDITION
  // (GROUP_NOT_ATTACHED) unless the device's group is open and attached to a container with an
  // IOMMU set (VFIO gives device fds only then); NOT_FOUND (DEVICE_NOT_FOUND) for a device the
  // backend does not drive; DEVICE_FD_FAILED with the errno otherwise.
  virtual absl::StatusOr<UniqueFd> DeviceFd(absl::string_view device) = 0;
};

}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_CORE_HOST_DEVICE_FD_PROVIDER_H_

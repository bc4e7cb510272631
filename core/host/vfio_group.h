// VfioGroup: an open /dev/vfio/N, i.e. ownership of IOMMU group N's DMA for as long as it is open.
//
// Opening claims the group (only one process, and one fd, at a time: a second open fails with
// GROUP_BUSY). Closing the fd releases the group and its container attachment; device fds obtained
// through it keep the group held until they are closed too. The group must be viable, or Open fails
// with GROUP_NOT_VIABLE: no device of it may be bound to a kernel driver that does DMA (vfio-pci,
// no driver, and drivers that declare they do no DMA, e.g. pci-stub and pcieport, are fine).
//
// Thread safety: the object is not synchronized; use it from one thread at a time.
// Errors: GROUP_NOT_FOUND (no /dev/vfio/N: not bound to vfio-pci, or VFIO not loaded), GROUP_BUSY,
// GROUP_OPEN_FAILED, GROUP_STATUS_FAILED, GROUP_NOT_VIABLE, DEVICE_FD_FAILED.
#ifndef IOMMUD_CORE_HOST_VFIO_GROUP_H_
#define IOMMUD_CORE_HOST_VFIO_GROUP_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/host/unique_fd.h"

namespace iommud {
namespace host {

class VfioGroup {
 public:
  // Opens `<vfio_dir>/<group_id>` and checks VFIO_GROUP_GET_STATUS reports it viable.
  static absl::StatusOr<std::unique_ptr<VfioGroup>> Open(int group_id,
                                                         const std::string& vfio_dir = "/dev/vfio");

  // Takes `fd`, an open /dev/vfio/<group_id> a previous process of the daemon kept (FdKeeper):
  // nothing is checked here; HasContainer tells where it is.
  static std::unique_ptr<VfioGroup> Adopt(int group_id, UniqueFd fd) {
    return std::unique_ptr<VfioGroup>(new VfioGroup(group_id, std::move(fd)));
  }

  VfioGroup(const VfioGroup&) = delete;
  VfioGroup& operator=(const VfioGroup&) = delete;

  int id() const { return id_; }
  int fd() const { return fd_.get(); }

  // Whether the group is attached to a container (VFIO_GROUP_FLAGS_CONTAINER_SET).
  absl::StatusOr<bool> HasContainer() const;

  // VFIO_GROUP_UNSET_CONTAINER (GROUP_UNSET_CONTAINER_FAILED; EINVAL: in no container).
  absl::Status UnsetContainer();

  // A device fd for `device` ("0000:00:02.0"), which must belong to this group and the group must be
  // attached to a container with an IOMMU set. The caller owns the fd (e.g. to hand it to a VMM).
  absl::StatusOr<UniqueFd> GetDeviceFd(absl::string_view device) const;

 private:
  VfioGroup(int id, UniqueFd fd) : id_(id), fd_(std::move(fd)) {}

  int id_;
  UniqueFd fd_;
};

}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_CORE_HOST_VFIO_GROUP_H_

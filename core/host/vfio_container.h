// VfioContainer: an open /dev/vfio/vfio with the type1v2 IOMMU, the DmaDomain of the VFIO group
// API. Groups attached to it share one IOMMU address space; mappings are of this process's memory.
//
// Lifetime: the kernel ties everything to fds. Closing the container (destroying this object)
// detaches nothing by itself while groups still reference it, but when the last group is detached
// or closed the IOMMU context and all its mappings go away. Callers keep the VfioGroup objects
// they attach alive no longer than they want the attachment (closing a group detaches it).
//
// Thread safety: the object holds only the fd; the kernel serializes the ioctls. Attach/Detach of
// the same group from two threads race in the kernel (one of them fails) and are the caller's to
// serialize.
// Errors: VFIO_UNAVAILABLE (no /dev/vfio/vfio), VFIO_API_MISMATCH, VFIO_EXTENSION_MISSING,
// GROUP_SET_CONTAINER_FAILED, GROUP_UNSET_CONTAINER_FAILED, IOMMU_SET_FAILED, IOMMU_INFO_FAILED,
// DMA_MAP_FAILED, DMA_UNMAP_FAILED, INVALID_ARGUMENT; each with the errno of the failed call.
#ifndef IOMMUD_CORE_HOST_VFIO_CONTAINER_H_
#define IOMMUD_CORE_HOST_VFIO_CONTAINER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/host/dma_domain.h"
#include "core/host/unique_fd.h"
#include "core/host/vfio_group.h"

namespace iommud {
namespace host {

class VfioContainer final : public DmaDomain {
 public:
  // Opens the container device and checks VFIO_GET_API_VERSION == VFIO_API_VERSION and that
  // VFIO_TYPE1v2_IOMMU is supported.
  static absl::StatusOr<std::unique_ptr<VfioContainer>> Open(
      const std::string& path = "/dev/vfio/vfio");

  // Takes `fd`, a container a previous process of the daemon kept (FdKeeper): its groups and
  // mappings are whatever the kernel still holds in it.
  static std::unique_ptr<VfioContainer> Adopt(UniqueFd fd) {
    return std::unique_ptr<VfioContainer>(new VfioContainer(std::move(fd)));
  }

  VfioContainer(const VfioContainer&) = delete;
  VfioContainer& operator=(const VfioContainer&) = delete;

  int fd() const { return fd_.get(); }

  // VFIO_GROUP_SET_CONTAINER; when the container has no IOMMU yet (its first group, or every
  // earlier group has left), also selects type1v2 (VFIO_SET_IOMMU), detaching the group again if
  // that fails. Groups attached later must be compatible with it
  // (the kernel refuses groups of another IOMMU).
  absl::Status Attach(VfioGroup& group);
  // VFIO_GROUP_UNSET_CONTAINER. Detaching the last group drops the IOMMU and all mappings. Fails
  // (GROUP_UNSET_CONTAINER_FAILED, EBUSY) while a device fd of the group is open: close those first.
  absl::Status Detach(VfioGroup& group);

  // DmaDomain. Info() reads VFIO_IOMMU_GET_INFO with its capability chain (IOVA ranges).
  absl::StatusOr<DmaDomainInfo> Info() override;
  absl::Status Map(uint64_t iova, const void* vaddr, uint64_t length, DmaAccess access) override;
  absl::StatusOr<uint64_t> Unmap(uint64_t iova, uint64_t length) override;

 private:
  explicit VfioContainer(UniqueFd fd) : fd_(std::move(fd)) {}
  // Whether an IOMMU is set: asked of the kernel (VFIO_IOMMU_GET_INFO only works then), since a
  // group closed without Detach leaves the container without telling this object.
  bool HasIommu() const;

  UniqueFd fd_;
};

}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_CORE_HOST_VFIO_CONTAINER_H_

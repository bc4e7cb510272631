#include "core/host/vfio_group.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/host/errno_error.h"

namespace iommud {
namespace host {
namespace {

absl::StatusOr<uint32_t> GroupFlags(int fd, int id) {
  vfio_group_status status = {};
  status.argsz = sizeof(status);
  if (::ioctl(fd, VFIO_GROUP_GET_STATUS, &status) != 0) {
    const int err = errno;
    return ErrnoError(CodeForErrno(err), reason::kGroupStatusFailed,
                      absl::StrCat("VFIO_GROUP_GET_STATUS on group ", id), err,
                      {{"group_id", absl::StrCat(id)}});
  }
  return status.flags;
}

}  // namespace

absl::StatusOr<std::unique_ptr<VfioGroup>> VfioGroup::Open(int group_id,
                                                           const std::string& vfio_dir) {
  const std::string path = absl::StrCat(vfio_dir, "/", group_id);
  const ErrorMetadata metadata = {{"group_id", absl::StrCat(group_id)}, {"path", path}};
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) {
    const int err = errno;
    if (err == ENOENT) {
      return ErrnoError(absl::StatusCode::kNotFound, reason::kGroupNotFound,
                        absl::StrCat("no ", path, " (is a device of the group bound to vfio-pci?)"),
                        err, metadata);
    }
    if (err == EBUSY) {
      return ErrnoError(absl::StatusCode::kUnavailable, reason::kGroupBusy,
                        absl::StrCat(path, " is held by another open"), err, metadata);
    }
    return ErrnoError(CodeForErrno(err), reason::kGroupOpenFailed,
                      absl::StrCat("cannot open ", path), err, metadata);
  }
  std::unique_ptr<VfioGroup> group(new VfioGroup(group_id, std::move(fd)));
  absl::StatusOr<uint32_t> flags = GroupFlags(group->fd(), group_id);
  if (!flags.ok()) return flags.status();
  if (!(*flags & VFIO_GROUP_FLAGS_VIABLE)) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kGroupNotViable,
                 absl::StrCat("IOMMU group ", group_id,
                              " is not viable: a device of it is bound to a non-VFIO driver"),
                 metadata);
  }
  return group;
}

absl::StatusOr<bool> VfioGroup::HasContainer() const {
  absl::StatusOr<uint32_t> flags = GroupFlags(fd(), id_);
  if (!flags.ok()) return flags.status();
  return (*flags & VFIO_GROUP_FLAGS_CONTAINER_SET) != 0;
}

absl::Status VfioGroup::UnsetContainer() {
  if (::ioctl(fd_.get(), VFIO_GROUP_UNSET_CONTAINER) != 0) {
    const int err = errno;
    return ErrnoError(CodeForErrno(err), reason::kGroupUnsetContainerFailed,
                      absl::StrCat("VFIO_GROUP_UNSET_CONTAINER for group ", id_), err,
                      {{"group_id", absl::StrCat(id_)}});
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> VfioGroup::GetDeviceFd(absl::string_view device) const {
  const std::string name(device);
  const int fd = ::ioctl(fd_.get(), VFIO_GROUP_GET_DEVICE_FD, name.c_str());
  if (fd < 0) {
    const int err = errno;
    return ErrnoError(CodeForErrno(err), reason::kDeviceFdFailed,
                      absl::StrCat("VFIO_GROUP_GET_DEVICE_FD for ", name, " in group ", id_), err,
                      {{"device", name}, {"group_id", absl::StrCat(id_)}});
  }
  return UniqueFd(fd);
}

}  // namespace host
}  // namespace iommud

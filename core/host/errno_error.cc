#include "core/host/errno_error.h"

#include <errno.h>
#include <string.h>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace iommud {
namespace host {
namespace {

std::string ErrnoName(int err) {
  switch (err) {
    case ENOENT: return "ENOENT";
    case EBUSY: return "EBUSY";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case EINVAL: return "EINVAL";
    case ENODEV: return "ENODEV";
    case ENOMEM: return "ENOMEM";
    case ENOSPC: return "ENOSPC";
    case EEXIST: return "EEXIST";
    case EFAULT: return "EFAULT";
    case ENOTTY: return "ENOTTY";
    case EIO: return "EIO";
    default: return absl::StrCat(err);
  }
}

}  // namespace

absl::StatusCode CodeForErrno(int err) {
  switch (err) {
    case ENOENT:
    case ENODEV: return absl::StatusCode::kNotFound;
    case EBUSY: return absl::StatusCode::kUnavailable;
    case EPERM:
    case EACCES: return absl::StatusCode::kPermissionDenied;
    case EINVAL: return absl::StatusCode::kInvalidArgument;
    case EEXIST: return absl::StatusCode::kAlreadyExists;
    case ENOMEM:
    case ENOSPC: return absl::StatusCode::kResourceExhausted;
    default: return absl::StatusCode::kInternal;
  }
}

absl::Status ErrnoError(absl::StatusCode code, absl::string_view reason, absl::string_view message,
                        int err, ErrorMetadata metadata) {
  metadata["errno"] = ErrnoName(err);
  return Error(code, reason, absl::StrCat(message, ": ", strerror(err)), metadata);
}

}  // namespace host
}  // namespace iommud

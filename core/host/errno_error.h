// Errors from failed system calls: an iommud Error whose message names the call and the errno text,
// with the errno name in the metadata ("errno": "EBUSY"), so a caller can tell EBUSY from EPERM
// without parsing messages.
#ifndef IOMMUD_CORE_HOST_ERRNO_ERROR_H_
#define IOMMUD_CORE_HOST_ERRNO_ERROR_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/error.h"

namespace iommud {
namespace host {

// Error(code, reason, "<message>: <strerror(err)>", metadata + {"errno": "<name>"}).
absl::Status ErrnoError(absl::StatusCode code, absl::string_view reason, absl::string_view message,
                        int err, ErrorMetadata metadata = {});

// The status code that best describes `err` for a caller (ENOENT: kNotFound, EBUSY: kUnavailable,
// EPERM/EACCES: kPermissionDenied, EINVAL: kInvalidArgument, ENOSPC/ENOMEM: kResourceExhausted,
// anything else: kInternal).
absl::StatusCode CodeForErrno(int err);

}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_CORE_HOST_ERRNO_ERROR_H_

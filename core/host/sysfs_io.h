// Reading and writing sysfs attributes, the way the kernel expects them: one read of the whole
// attribute, one write() per value (sysfs store handlers see each write() separately).
//
// Errors carry the path in their metadata ("path") and the errno (see errno_error.h). Stateless;
// safe to call from any thread.
#ifndef IOMMUD_CORE_HOST_SYSFS_IO_H_
#define IOMMUD_CORE_HOST_SYSFS_IO_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace iommud {
namespace host {

// The content of the file at `path`, trailing whitespace (the newline) removed.
// SYSFS_READ_FAILED (kNotFound when it does not exist).
absl::StatusOr<std::string> ReadSysfsAttribute(const std::string& path);

// Writes `value` to `path` with a single write(). SYSFS_WRITE_FAILED, with the errno the kernel's
// store handler returned (e.g. ENODEV from drivers_probe when no driver takes the device).
absl::Status WriteSysfsAttribute(const std::string& path, absl::string_view value);

// The last component of the symlink `path` points to ("vfio-pci" for .../driver), or "" when
// `path` does not exist. SYSFS_READ_FAILED for any other failure.
absl::StatusOr<std::string> ReadSysfsLinkName(const std::string& path);

// The names in directory `path`, sorted, without "." and "..". SYSFS_READ_FAILED (kNotFound when it
// does not exist).
absl::StatusOr<std::vector<std::string>> ListSysfsDirectory(const std::string& path);

// Whether `path` exists (following symlinks).
bool SysfsPathExists(const std::string& path);

}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_CORE_HOST_SYSFS_IO_H_

#include "core/host/host_recovery.h"

#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/host/sysfs_io.h"
#include "core/host/unique_fd.h"

namespace iommud {
namespace host {
namespace {

std::string ReadLink(const std::string& path) {
  char buffer[PATH_MAX];
  const ssize_t n = ::readlink(path.c_str(), buffer, sizeof(buffer) - 1);
  return n <= 0 ? std::string() : std::string(buffer, static_cast<size_t>(n));
}

std::vector<std::string> DevicesOf(const JournaledGroup& record) {
  std::vector<std::string> devices;
  for (const DriverBinding& binding : record.bindings) devices.push_back(binding.device);
  return devices;
}

}  // namespace

absl::string_view RecoveryOutcomeName(RecoveredGroup::Outcome outcome) {
  switch (outcome) {
    case RecoveredGroup::Outcome::kRestored: return "restored";
    case RecoveredGroup::Outcome::kHeld: return "held";
    case RecoveredGroup::Outcome::kGone: return "gone";
    case RecoveredGroup::Outcome::kRestoreFailed: return "restore_failed";
    case RecoveredGroup::Outcome::kAdopted: return "adopted";
  }
  return "unknown";
}

std::vector<pid_t> VfioHolders(int group, const std::string& vfio_dir,
                               const std::string& proc_root) {
  const std::string group_node = absl::StrCat(vfio_dir, "/", group);
  const pid_t self = ::getpid();
  std::vector<pid_t> holders;
  absl::StatusOr<std::vector<std::string>> processes = ListSysfsDirectory(proc_root);
  if (!processes.ok()) return holders;
  for (const std::string& entry : *processes) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry, &pid) || pid == self) continue;
    const std::string fd_dir = absl::StrCat(proc_root, "/", entry, "/fd");
    absl::StatusOr<std::vector<std::string>> fds = ListSysfsDirectory(fd_dir);
    if (!fds.ok()) continue;  // gone meanwhile, or not ours to read
    for (const std::string& fd : *fds) {
      const std::string target = ReadLink(absl::StrCat(fd_dir, "/", fd));
      if (target == group_node || target == "anon_inode:[vfio-device]") {
        holders.push_back(pid);
        break;
      }
    }
  }
  std::sort(holders.begin(), holders.end());
  return holders;
}

RecoveredGroup RecoverJournaledGroup(const JournaledGroup& record, PciDriverBinder& binder,
                                     const std::string& vfio_dir, const std::string& proc_root) {
  RecoveredGroup result;
  result.group = record.group;
  result.devices = DevicesOf(record);
  const std::string node = absl::StrCat(vfio_dir, "/", record.group);
  const std::string devices = absl::StrJoin(result.devices, ",");
  bool gone = !SysfsPathExists(node);
  if (!gone) {
    UniqueFd fd(::open(node.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd.valid() && errno == EBUSY) {
      result.outcome = RecoveredGroup::Outcome::kHeld;
      result.holders = VfioHolders(record.group, vfio_dir, proc_root);
      result.detail = absl::StrCat(
          "group ", record.group, " (", devices,
          ") is still held through VFIO device fds after iommud's restart (processes with VFIO "
          "fds: ",
          result.holders.empty() ? "none visible" : absl::StrJoin(result.holders, ","),
          "): its container and mappings live on in the kernel, iommud cannot adopt them; left on "
          "vfio-pci until the last device fd closes");
      return result;
    }
    if (!fd.valid() && errno == ENOENT) gone = true;
    // Opened: it was orphaned (nothing in a container any more); closing it again ends the
    // ownership. Other errors: the drivers go back all the same.
  }
  result.status = binder.RestoreAll(record.bindings);
  if (!result.status.ok()) {
    result.outcome = RecoveredGroup::Outcome::kRestoreFailed;
    result.detail = absl::StrCat("group ", record.group, " (", devices,
                                 ") left by the previous iommud: restoring its drivers failed: ",
                                 result.status.message());
  } else if (gone) {
    result.outcome = RecoveredGroup::Outcome::kGone;
    result.detail = absl::StrCat("group ", record.group, " (", devices,
                                 ") left by the previous iommud was no longer on vfio-pci; its "
                                 "driver_override is put back");
  } else {
    result.outcome = RecoveredGroup::Outcome::kRestored;
    result.detail = absl::StrCat("group ", record.group, " (", devices,
                                 ") was orphaned on vfio-pci by the previous iommud (the kernel "
                                 "dropped its container and mappings with its fds); its previous "
                                 "drivers are restored");
  }
  return result;
}

}  // namespace host
}  // namespace iommud

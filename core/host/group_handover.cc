#include "core/host/group_handover.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/host/errno_error.h"
#include "core/host/sysfs_io.h"

namespace iommud {
namespace host {
namespace {

constexpr mode_t kHandedOverMode = 0660;
constexpr uid_t kNoId = static_cast<uid_t>(-1);

// The names in directory `path`, or the errno of opendir.
int ListDirectory(const std::string& path, std::vector<std::string>* names) {
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return errno;
  while (struct dirent* entry = ::readdir(dir)) {
    const absl::string_view name = entry->d_name;
    if (name != "." && name != "..") names->emplace_back(name);
  }
  ::closedir(dir);
  return 0;
}

// The target of symlink `path`, or "" when it cannot be read.
std::string ReadLink(const std::string& path) {
  char buffer[4096];
  const ssize_t n = ::readlink(path.c_str(), buffer, sizeof(buffer));
  if (n <= 0 || static_cast<size_t>(n) >= sizeof(buffer)) return "";
  return std::string(buffer, static_cast<size_t>(n));
}

// The effective uid from a /proc/PID/status text ("Uid:\treal\teffective\tsaved\tfs").
bool EffectiveUid(absl::string_view status, uid_t* uid) {
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    if (!absl::ConsumePrefix(&line, "Uid:")) continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    uint32_t value = 0;
    if (fields.size() < 2 || !absl::SimpleAtoi(fields[1], &value)) return false;
    *uid = value;
    return true;
  }
  return false;
}

std::string Octal(mode_t mode) { return absl::StrFormat("%04o", mode & 07777); }

std::string Pids(const std::vector<GroupHolder>& holders) {
  return absl::StrJoin(holders, ",", [](std::string* out, const GroupHolder& holder) {
    absl::StrAppend(out, holder.pid);
  });
}

}  // namespace

GroupHandover::GroupHandover(GroupHandoverOptions options)
    : options_(std::move(options)),
      binder_(options_.sysfs_root,
              options_.sysfs_writer ? options_.sysfs_writer
                                    : PciDriverBinder::AttributeWriter(WriteSysfsAttribute)) {}

std::string GroupHandover::NodePath(int group_id) const {
  return absl::StrCat(options_.dev_root, "/vfio/", group_id);
}

absl::Status GroupHandover::SetNodeOwner(int group_id, uid_t uid, gid_t gid, mode_t mode) const {
  const std::string node = NodePath(group_id);
  const ErrorMetadata metadata = {{"group_id", absl::StrCat(group_id)}, {"path", node},
                                  {"uid", absl::StrCat(uid)}, {"gid", absl::StrCat(gid)},
                                  {"mode", Octal(mode)}};
  struct stat st;
  if (::lstat(node.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();  // unbound meanwhile: nothing to restore
    return ErrnoError(CodeForErrno(errno), reason::kGroupNodeChownFailed,
                      absl::StrCat("stat ", node), errno, metadata);
  }
  if (S_ISLNK(st.st_mode)) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kGroupNodeChownFailed,
                 absl::StrCat(node, " is a symbolic link, not the group's device node"), metadata);
  }
  // chown first: between the two calls the node is never open to more than one of the owners.
  if (::fchownat(AT_FDCWD, node.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW) != 0) {
    return ErrnoError(absl::StatusCode::kFailedPrecondition, reason::kGroupNodeChownFailed,
                      absl::StrCat("chown ", uid, ":", gid, " ", node), errno, metadata);
  }
  if (::chmod(node.c_str(), mode) != 0) {
    return ErrnoError(absl::StatusCode::kFailedPrecondition, reason::kGroupNodeChownFailed,
                      absl::StrCat("chmod ", Octal(mode), " ", node), errno, metadata);
  }
  return absl::OkStatus();
}

absl::Status GroupHandover::StillOpen(int group_id, const std::vector<GroupHolder>& holders,
                                      absl::string_view doing) {
  if (holders.empty()) return absl::OkStatus();
  std::string who = absl::StrJoin(holders, ", ", [](std::string* out, const GroupHolder& h) {
    absl::StrAppend(out, h.pid, " (", h.comm, ", uid ", h.uid, ")");
  });
  return Error(absl::StatusCode::kFailedPrecondition, reason::kGroupStillOpen,
               absl::StrCat("cannot ", doing, " group ", group_id,
                            ": its VFIO node is held open by ", who),
               {{"group_id", absl::StrCat(group_id)}, {"pids", Pids(holders)}});
}

absl::StatusOr<HandoverRecord> GroupHandover::HandOver(int group_id, uid_t uid, gid_t gid) {
  if (group_id < 0 || uid == kNoId || gid == static_cast<gid_t>(-1)) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidArgument,
                 absl::StrCat("cannot hand group ", group_id, " to ", static_cast<int>(uid), ":",
                              static_cast<int>(gid)),
                 {{"group_id", absl::StrCat(group_id)}});
  }
  HandoverRecord record;
  record.group_id = group_id;
  record.uid = uid;
  record.gid = gid;
  absl::StatusOr<std::vector<DriverBinding>> bindings =
      binder_.BindGroupToVfio(group_id, options_.bind);
  if (!bindings.ok()) return bindings.status();  // the binder changed nothing
  record.bindings = *std::move(bindings);

  const std::string node = NodePath(group_id);
  const ErrorMetadata metadata = {{"group_id", absl::StrCat(group_id)}, {"path", node}};
  bool node_changed = false;
  // Undoes what was changed so far and returns `failure`, with any failure to undo appended.
  auto roll_back = [&](const absl::Status& failure) -> absl::Status {
    absl::Status undone;
    if (node_changed) {
      undone = SetNodeOwner(group_id, record.previous_node_uid, record.previous_node_gid,
                            record.previous_node_mode);
    }
    const absl::Status restored = binder_.RestoreAll(record.bindings);
    if (undone.ok()) undone = restored;
    if (undone.ok()) return failure;
    return Error(failure.code(), ErrorReason(failure),
                 absl::StrCat(failure.message(), "; undoing the hand-over failed too: ",
                              undone.message()),
                 GetErrorMetadata(failure));
  };

  // The node appears when the first device of the group binds to vfio-pci.
  struct stat st;
  const absl::Time deadline = absl::Now() + options_.node_timeout;
  while (::lstat(node.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      return roll_back(ErrnoError(CodeForErrno(errno), reason::kGroupNodeMissing,
                                  absl::StrCat("stat ", node), errno, metadata));
    }
    if (absl::Now() >= deadline) {
      return roll_back(Error(absl::StatusCode::kFailedPrecondition, reason::kGroupNodeMissing,
                             absl::StrCat(node, " did not appear within ",
                                          absl::FormatDuration(options_.node_timeout),
                                          " of binding group ", group_id,
                                          " to vfio-pci (no devtmpfs or udev on ",
                                          options_.dev_root, "?)"),
                             metadata));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  record.previous_node_uid = st.st_uid;
  record.previous_node_gid = st.st_gid;
  record.previous_node_mode = st.st_mode & 07777;
  if ((st.st_mode & 077) != 0) {
    return roll_back(Error(
        absl::StatusCode::kFailedPrecondition, reason::kGroupAlreadyHandedOver,
        absl::StrCat(node, " is already open to others than its owner (", st.st_uid, ":",
                     st.st_gid, " mode ", Octal(st.st_mode), "): handed over already?"),
        {{"group_id", absl::StrCat(group_id)}, {"path", node},
         {"uid", absl::StrCat(st.st_uid)}, {"gid", absl::StrCat(st.st_gid)},
         {"mode", Octal(st.st_mode)}}));
  }
  absl::StatusOr<std::vector<GroupHolder>> holders = GroupHolders(group_id);
  if (!holders.ok()) return roll_back(holders.status());
  if (!holders->empty()) return roll_back(StillOpen(group_id, *holders, "hand over"));

  node_changed = true;
  const absl::Status granted = SetNodeOwner(group_id, uid, gid, kHandedOverMode);
  if (!granted.ok()) return roll_back(granted);
  return record;
}

absl::Status GroupHandover::TakeBack(const HandoverRecord& record, bool force) {
  const int group_id = record.group_id;
  if (!force) {
    absl::StatusOr<std::vector<GroupHolder>> holders = GroupHolders(group_id);
    if (!holders.ok()) return holders.status();
    if (!holders->empty()) return StillOpen(group_id, *holders, "take back");
  }
  // Revoke the VMM's access first: from here on its uid cannot open the node.
  absl::Status status = SetNodeOwner(group_id, record.previous_node_uid,
                                     record.previous_node_gid, record.previous_node_mode);
  if (!status.ok()) return status;
  if (!force) {
    // A holder that opened the node just before the revocation.
    absl::StatusOr<std::vector<GroupHolder>> holders = GroupHolders(group_id);
    absl::Status refused = holders.ok() ? StillOpen(group_id, *holders, "take back")
                                        : holders.status();
    if (!refused.ok()) {
      const absl::Status regranted =
          SetNodeOwner(group_id, record.uid, record.gid, kHandedOverMode);
      if (regranted.ok()) return refused;
      return Error(refused.code(), ErrorReason(refused),
                   absl::StrCat(refused.message(), "; giving the node back to ", record.uid,
                                " failed: ", regranted.message()),
                   GetErrorMetadata(refused));
    }
  }
  return binder_.RestoreAll(record.bindings);
}

absl::StatusOr<std::vector<GroupHolder>> GroupHandover::GroupHolders(int group_id) const {
  const std::string node = NodePath(group_id);
  const std::string deleted = node + " (deleted)";
  std::vector<std::string> entries;
  if (const int err = ListDirectory(options_.proc_root, &entries); err != 0) {
    return ErrnoError(CodeForErrno(err), reason::kProcScanFailed,
                      absl::StrCat("list ", options_.proc_root), err,
                      {{"path", options_.proc_root}});
  }
  std::vector<GroupHolder> holders;
  for (const std::string& entry : entries) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry, &pid) || pid <= 0) continue;
    const std::string dir = absl::StrCat(options_.proc_root, "/", entry);
    std::vector<std::string> fds;
    if (const int err = ListDirectory(dir + "/fd", &fds); err != 0) {
      if (err == ENOENT || err == ESRCH) continue;  // exited meanwhile
      return ErrnoError(CodeForErrno(err), reason::kProcScanFailed,
                        absl::StrCat("list ", dir, "/fd"), err,
                        {{"path", dir + "/fd"}, {"pid", entry}});
    }
    GroupHolder holder;
    holder.pid = pid;
    for (const std::string& fd_name : fds) {
      int fd = 0;
      if (!absl::SimpleAtoi(fd_name, &fd)) continue;
      const std::string target = ReadLink(absl::StrCat(dir, "/fd/", fd_name));
      if (target == node || target == deleted) holder.fds.push_back(fd);
    }
    if (holder.fds.empty()) continue;
    std::sort(holder.fds.begin(), holder.fds.end());
    absl::StatusOr<std::string> status = ReadSysfsAttribute(dir + "/status");
    if (!status.ok() || !EffectiveUid(*status, &holder.uid)) {
      if (!SysfsPathExists(dir)) continue;  // exited meanwhile
      return Error(absl::StatusCode::kInternal, reason::kProcScanFailed,
                   absl::StrCat("no Uid line in ", dir, "/status"), {{"pid", entry}});
    }
    absl::StatusOr<std::string> comm = ReadSysfsAttribute(dir + "/comm");
    if (comm.ok()) holder.comm = *comm;
    holders.push_back(std::move(holder));
  }
  std::sort(holders.begin(), holders.end(),
            [](const GroupHolder& a, const GroupHolder& b) { return a.pid < b.pid; });
  return holders;
}

}  // namespace host
}  // namespace iommud

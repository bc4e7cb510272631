// GroupHandover: the libvirt-style hand-over of a VFIO group to a VMM that opens VFIO itself (QEMU
// given `-device vfio-pci,host=BDF` opens /dev/vfio/vfio and /dev/vfio/N in its own process), and
// taking it back.
//
//   HandOver(N, uid, gid)   every non-bridge device of IOMMU group N is bound to vfio-pci (all or
//                           nothing, PciDriverBinder::BindGroupToVfio), then /dev/vfio/N is
//                           chown'ed uid:gid and chmod'ed 0660: the VMM's uid (and gid) can open
//                           it, nobody else but root. The returned HandoverRecord is everything
//                           TakeBack needs; it is a plain struct the caller may persist.
//   TakeBack(record)        refuses (GROUP_STILL_OPEN) while any process holds /dev/vfio/N open,
//                           unless forced; otherwise puts the node's previous owner and mode back
//                           (root:root 0600 for a node the kernel created) and rebinds the devices
//                           to their previous drivers.
//   GroupHolders(N)         the processes holding /dev/vfio/N open, found by reading the
//                           /proc/PID/fd/* symlinks. An audit's input: a group held by a process
//                           whose uid is not the record's, or held after TakeBack, is a leak.
//
// The uid and gid need not name a user or group in /etc/passwd: the kernel only compares numbers.
//
// All or nothing: a failing HandOver puts back whatever it changed (node owner and mode, drivers)
// before returning; its error says if that failed too. TakeBack is not atomic (it cannot re-bind
// vfio-pci if a later device fails to go back to its driver), but it is safe to retry with the
// same record: every step is idempotent.
//
// Races: TakeBack revokes the node's permissions first and then looks for holders again, so a VMM
// that opened the group between the first check and the revocation is seen (the hand-over is then
// re-granted and GROUP_STILL_OPEN returned); once revoked, the uid cannot open the node any more.
// A forced TakeBack skips the holder checks: the caller must have stopped the holders, or accept
// that the kernel's vfio-pci unbind waits until a holder closes its device fds.
//
// Roots: sysfs, /dev and /proc are options, so tests run on fake trees. With the defaults, the
// calls need root (binding drivers, chown, and reading other users' /proc/PID/fd).
//
// Thread safety: the object holds no mutable state; calls on distinct groups may run concurrently,
// calls on the same group are the caller's to serialize.
//
// Errors: INVALID_ARGUMENT (a negative group id, uid or gid -1), GROUP_NODE_MISSING,
// GROUP_ALREADY_HANDED_OVER, GROUP_STILL_OPEN, GROUP_NODE_CHOWN_FAILED, PROC_SCAN_FAILED, and the
// binder's (pci_driver_binder.h): GROUP_NOT_FOUND, DEVICE_NOT_FOUND, DRIVER_UNSAFE, ...
#ifndef IOMMUD_CORE_HOST_GROUP_HANDOVER_H_
#define IOMMUD_CORE_HOST_GROUP_HANDOVER_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/host/pci_driver_binder.h"

namespace iommud {
namespace host {

struct GroupHandoverOptions {
  std::string sysfs_root = "/sys";
  std::string dev_root = "/dev";    // the group node is <dev_root>/vfio/N
  std::string proc_root = "/proc";  // scanned by GroupHolders
  // How sysfs attributes are written (see PciDriverBinder); null: WriteSysfsAttribute.
  PciDriverBinder::AttributeWriter sysfs_writer;
  // Which drivers HandOver may take the group's devices from.
  BindOptions bind;
  // How long HandOver waits for /dev/vfio/N after binding (devtmpfs creates it at once; udev may
  // take a moment to apply its rules).
  absl::Duration node_timeout = absl::Seconds(5);
};

// What HandOver changed: everything TakeBack needs to undo it. Plain data, so it can be persisted.
struct HandoverRecord {
  int group_id = -1;
  uid_t uid = 0;  // the node's owner while handed over
  gid_t gid = 0;
  std::vector<DriverBinding> bindings;  // the devices' previous drivers (see DriverBinding)
  uid_t previous_node_uid = 0;          // the node's owner and mode before the hand-over
  gid_t previous_node_gid = 0;
  mode_t previous_node_mode = 0600;     // permission bits only
};

// A process holding a group node open.
struct GroupHolder {
  pid_t pid = 0;
  uid_t uid = 0;          // effective uid (from /proc/PID/status)
  std::string comm;       // /proc/PID/comm
  std::vector<int> fds;   // its fds on the node, ascending
};

class GroupHandover {
 public:
  explicit GroupHandover(GroupHandoverOptions options = {});

  // Hands group `group_id` to uid:gid (see the file comment). Refuses, changing nothing:
  // GROUP_ALREADY_HANDED_OVER when the node already grants group or other access (another
  // hand-over); GROUP_STILL_OPEN when a process holds the node open (VFIO lets one process open a
  // group: the VMM could not); GROUP_NODE_MISSING when the node does not appear within
  // node_timeout after binding; GROUP_NODE_CHOWN_FAILED when chown/chmod fail.
  absl::StatusOr<HandoverRecord> HandOver(int group_id, uid_t uid, gid_t gid);

  // Undoes `record`'s hand-over (see the file comment). GROUP_STILL_OPEN (FAILED_PRECONDITION,
  // metadata "pids") while a process holds the node open, unless `force`; the node is then left
  // handed over and the drivers untouched. A node that no longer exists is not an error (the
  // drivers are restored all the same).
  absl::Status TakeBack(const HandoverRecord& record, bool force = false);

  // The processes that hold group `group_id`'s node open, by pid. A descriptor whose node was
  // removed meanwhile (the kernel shows it as "<path> (deleted)": the group was unbound from
  // vfio-pci while it stayed open) counts too. Processes that exit during the scan are left out.
  // PROC_SCAN_FAILED when /proc or a process's fd directory cannot be read (not root).
  absl::StatusOr<std::vector<GroupHolder>> GroupHolders(int group_id) const;

  // <dev_root>/vfio/<group_id>.
  std::string NodePath(int group_id) const;

 private:
  // Restores the node's owner and mode to `uid`:`gid` `mode`, if the node exists.
  absl::Status SetNodeOwner(int group_id, uid_t uid, gid_t gid, mode_t mode) const;
  // GROUP_STILL_OPEN naming `holders`, or OK when there are none.
  static absl::Status StillOpen(int group_id, const std::vector<GroupHolder>& holders,
                                absl::string_view doing);

  GroupHandoverOptions options_;
  PciDriverBinder binder_;
};

}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_CORE_HOST_GROUP_HANDOVER_H_

// What a restarted iommud finds of the groups its previous process had claimed (the host journal,
// core/host/host_journal.h), decided from the kernel, never assumed.
//
// The kernel facts (drivers/vfio/group.c, 6.1): closing a group fd (as process death does) unsets
// its container and ends the group's DMA ownership, unless a device fd of the group is still open
// somewhere (a VMM it was handed to): a device fd holds a reference on the group's file, so the
// group stays open, its container and that container's mappings live on (the pages stay pinned)
// and /dev/vfio/N cannot be opened again (EBUSY) until the last device fd closes. Type1 has no
// ioctl that lists a container's mappings, and no way exists to get the dead process's group or
// container fd back: such a group cannot be adopted, only reported.
//
// So, per journaled group:
//   /dev/vfio/N opens         orphaned on vfio-pci: closed again at once, the previous drivers
//                             restored -> kRestored (kRestoreFailed if sysfs refused)
//   EBUSY                     held by another process through device fds (its pids, from /proc) ->
//                             kHeld: left as it is (taking the devices away would pull them out
//                             from under a running VM); the record stays for a later retry
//   no /dev/vfio/N            no device of it is on vfio-pci any more (someone rebound them):
//                             whatever driver_override iommud set is put back -> kGone
#ifndef IOMMUD_CORE_HOST_HOST_RECOVERY_H_
#define IOMMUD_CORE_HOST_HOST_RECOVERY_H_

#include <string>
#include <sys/types.h>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/host/host_journal.h"
#include "core/host/pci_driver_binder.h"

namespace iommud {
namespace host {

struct RecoveredGroup {
  // kAdopted: taken back from the fd store and kept as the registry recorded it (linux_backend.h).
  enum class Outcome { kRestored, kHeld, kGone, kRestoreFailed, kAdopted };
  int group = -1;
  Outcome outcome = Outcome::kRestored;
  std::vector<std::string> devices;  // the journaled devices (what the claim had bound)
  std::vector<pid_t> holders;        // kHeld: processes with VFIO fds that may hold it
  absl::Status status;               // kRestoreFailed: why
  std::string detail;                // one line for logs and events
  bool repaired = false;             // kAdopted: the kernel was made to agree with the registry
  // The registry's ownership of the group was dropped at the restart (it could not be claimed
  // again: server/host/host_recovery_report.h AddDroppedOwnerships): reported as a leak.
  bool ownership_dropped = false;
};

// "restored", "held", "gone", "restore_failed", "adopted" (label values of
// iommud_host_recovered_groups_total{outcome}).
absl::string_view RecoveryOutcomeName(RecoveredGroup::Outcome outcome);

// Decides and acts on one journaled group (see the header comment).
RecoveredGroup RecoverJournaledGroup(const JournaledGroup& record, PciDriverBinder& binder,
                                     const std::string& vfio_dir,
                                     const std::string& proc_root = "/proc");

// Processes other than this one with /dev/vfio/<group> or a VFIO device fd open (a 6.1 device fd
// is "anon_inode:[vfio-device]" and does not say its group: every such process is listed).
std::vector<pid_t> VfioHolders(int group, const std::string& vfio_dir,
                               const std::string& proc_root = "/proc");

}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_CORE_HOST_HOST_RECOVERY_H_

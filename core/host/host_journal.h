// HostJournal: what iommud changed on the host, on disk, so that a daemon that died (kill -9, a
// crash) and starts again can tell what it left behind.
//
// The kernel keeps none of iommud's claims once its fds are gone (closing a group fd unsets its
// container and ends the DMA ownership), but it keeps the driver changes: a group iommud bound to
// vfio-pci stays there after the process dies, and a VMM that still holds device fds of it keeps
// the group (and its container and mappings) alive. The journal records, per kernel group, the
// drivers the claim replaced, written BEFORE the bind (phase kBinding: what is about to change) and
// rewritten after it (phase kClaimed); the record is removed once the group is given back. On
// start, core/host/host_recovery.h reads it and decides, group by group, what is true now.
//
// File: <dir>/host-journal, a small text file rewritten whole through a temporary file, fsync and
// rename (a crash leaves either the old or the new file, never a torn one). It carries the boot
// id (/proc/sys/kernel/random/boot_id): a journal of an earlier boot describes nothing (a reboot
// gave every device back to its driver) and is discarded on open.
//
// Thread safety: all methods are thread-safe (one mutex; each Put/Remove writes the file under it).
// Errors: HOST_JOURNAL_FAILED (INTERNAL) when the file cannot be read, parsed or written.
#ifndef IOMMUD_CORE_HOST_HOST_JOURNAL_H_
#define IOMMUD_CORE_HOST_HOST_JOURNAL_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/host/pci_driver_binder.h"

namespace iommud {
namespace host {

struct JournaledGroup {
  enum class Phase { kBinding, kClaimed };
  int group = -1;
  Phase phase = Phase::kBinding;
  std::vector<DriverBinding> bindings;  // kBinding: the intended ones; kClaimed: what changed
};

class HostJournal {
 public:
  // Opens (creating `dir` 0700 if needed) and reads <dir>/host-journal. `boot_id_path` is where
  // the boot id is read ("" : no boot check, for tests).
  static absl::StatusOr<std::unique_ptr<HostJournal>> Open(
      const std::string& dir, const std::string& boot_id_path = "/proc/sys/kernel/random/boot_id");

  // What the journal held when opened (of this boot), by kernel group.
  const std::map<int, JournaledGroup>& previous() const { return previous_; }
  // True if a journal of another boot was found and discarded.
  bool discarded_other_boot() const { return discarded_other_boot_; }

  // Records `group` (replacing its record) / forgets it; the file is on disk when they return.
  absl::Status Put(const JournaledGroup& group) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Remove(int group) ABSL_LOCKS_EXCLUDED(mu_);
  // The current records (what the file says now).
  std::map<int, JournaledGroup> Current() const ABSL_LOCKS_EXCLUDED(mu_);

  const std::string& path() const { return path_; }

 private:
  HostJournal(std::string path, std::string boot_id) : path_(std::move(path)), boot_id_(std::move(boot_id)) {}
  absl::Status WriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  const std::string boot_id_;
  std::map<int, JournaledGroup> previous_;
  bool discarded_other_boot_ = false;
  mutable absl::Mutex mu_;
  std::map<int, JournaledGroup> records_ ABSL_GUARDED_BY(mu_);
};

// The text form of `records` with `boot_id`, and back (exposed for tests).
std::string FormatHostJournal(const std::string& boot_id, const std::map<int, JournaledGroup>& records);
absl::Status ParseHostJournal(const std::string& text, std::string* boot_id,
                              std::map<int, JournaledGroup>* records);

}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_CORE_HOST_HOST_JOURNAL_H_

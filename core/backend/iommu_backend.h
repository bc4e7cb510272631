// IommuBackend: the hardware side of iommud.
//
// A backend programs what the registry decides: requester ids (RIDs) to domains, domains' page tables,
// the IOTLB. It knows nothing of groups, devices or owners. The registry is the only caller in the
// daemon; tests call backends directly (tests/core/backend/ holds the conformance suite every backend
// must pass).
//
// Thread safety: every method may be called from any thread. The registry guarantees that it never
// issues two concurrent mutating calls for the same RID of a unit, nor for the same domain; Translate
// and the read-back calls may run concurrently with anything, so an implementation guards its own
// state.
//
// Atomicity: a method that returns an error has changed nothing (Map rolls back what it mapped).
#ifndef IOMMUD_CORE_BACKEND_IOMMU_BACKEND_H_
#define IOMMUD_CORE_BACKEND_IOMMU_BACKEND_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/types.h"

namespace iommud {

// What a RID's hardware entry (stream table entry) says, as read back from the hardware.
struct RidEntry {
  Rid rid = 0;
  DomainId domain = 0;  // 0: no valid entry (DMA faults with UNKNOWN_RID)
};

// Counters of hardware resources, for leak checks ("no page-table pages or domains lost").
struct BackendStats {
  uint64_t domains = 0;           // domains allocated in the hardware
  uint64_t page_table_pages = 0;  // page-table pages in use, roots included
  uint64_t programmed_rids = 0;   // RIDs with a valid entry
  uint64_t iotlb_entries = 0;     // cached translations
};

// The part of a unit's caps the hardware itself holds (page-table format and stream-table size);
// the rest (reserved regions, domain types, ...) is the registry's policy.
inline bool SameHardwareCaps(const UnitCaps& a, const UnitCaps& b) {
  return a.pgsize_bitmap == b.pgsize_bitmap && a.iova_bits == b.iova_bits &&
         a.max_rids == b.max_rids;
}

// AddUnit's refusal of a unit the hardware holds with caps `held`, asked for with `wanted`.
inline absl::Status UnitExists(absl::string_view unit, const UnitCaps& held,
                               const UnitCaps& wanted) {
  if (SameHardwareCaps(held, wanted)) {
    return Error(absl::StatusCode::kAlreadyExists, reason::kUnitExists,
                 absl::StrCat("unit '", unit, "' exists"), {{"unit", std::string(unit)}});
  }
  return Error(absl::StatusCode::kFailedPrecondition, reason::kUnitCapsMismatch,
               absl::StrCat("unit '", unit, "' exists with other caps (page sizes 0x",
                            absl::Hex(held.pgsize_bitmap), ", ", held.iova_bits, " IOVA bits, ",
                            held.max_rids, " RIDs)"),
               {{"unit", std::string(unit)}});
}

// A hand-over's leak, as the backend sees it (IommuBackend::AuditHandovers).
struct HandoverLeak {
  enum class Kind {
    kHeldByOtherUid,    // a handed-over group held open by a process whose uid is not the VMM's
    kHeldAfterTakeBack  // a group the backend took back, still held open by some process
  };
  Kind kind = Kind::kHeldByOtherUid;
  std::string unit;
  Rid rid = 0;           // one RID of the group
  std::string detail;    // "kernel group 7: pid 123 (qemu-system-x86) uid 0"
};

class IommuBackend {
 public:
  virtual ~IommuBackend() = default;

  // The name it is registered under ("software", "emulated").
  virtual absl::string_view name() const = 0;

  // Adds a hardware unit. ALREADY_EXISTS (UNIT_EXISTS) if `unit` is known with the same hardware
  // caps (SameHardwareCaps): the caller may adopt it, e.g. a unit that outlived a crashed daemon;
  // FAILED_PRECONDITION (UNIT_CAPS_MISMATCH) if it is known with other caps; INVALID_ARGUMENT for
  // caps the backend cannot provide (e.g. a page size its page-table format lacks).
  virtual absl::Status AddUnit(absl::string_view unit, const UnitCaps& caps) = 0;

  // Creates domain `id` of `type` on `unit` (a page-table root for paging types).
  // NOT_FOUND for an unknown unit; ALREADY_EXISTS for a known id; RESOURCE_EXHAUSTED when the
  // page-table memory is full.
  virtual absl::Status AllocDomain(absl::string_view unit, DomainId id, DomainType type) = 0;

  // Frees domain `id` and every page-table page it holds. NOT_FOUND for an unknown id;
  // FAILED_PRECONDITION while a RID still points at it.
  virtual absl::Status FreeDomain(DomainId id) = 0;

  // Points `rid` of `unit` at `domain` (writes the stream table entry and invalidates the cached
  // config, so the next DMA of `rid` uses `domain`). NOT_FOUND for an unknown unit or domain;
  // INVALID_ARGUMENT for a RID outside the unit's max_rids or a domain of another unit.
  virtual absl::Status AttachRid(absl::string_view unit, Rid rid, DomainId domain) = 0;

  // Releases `rid`: its entry becomes invalid (DMA faults with UNKNOWN_RID) and cached config and
  // translations of it are dropped. Releasing a RID with no entry is OK.
  virtual absl::Status ReleaseRid(absl::string_view unit, Rid rid) = 0;

  // Maps [iova, iova+size) to [paddr, paddr+size) with `prot`, using the largest page sizes of the
  // unit's pgsize_bitmap that fit. All-or-nothing. The registry has already checked alignment,
  // aperture, reserved regions and overlap; a backend still refuses an overlap (ALREADY_EXISTS) and a
  // non-paging domain (FAILED_PRECONDITION). RESOURCE_EXHAUSTED when page-table memory runs out.
  virtual absl::Status Map(DomainId domain, uint64_t iova, uint64_t paddr, uint64_t size,
                           uint32_t prot) = 0;

  // Clears the page-table entries of [iova, iova+size) and returns the bytes that were mapped.
  // Does NOT invalidate the IOTLB: until InvalidateIotlb, cached translations may still be used
  // (as on real hardware). INVALID_ARGUMENT if the range would split a leaf entry.
  virtual absl::StatusOr<uint64_t> Unmap(DomainId domain, uint64_t iova, uint64_t size) = 0;

  // Drops cached translations of `domain` overlapping [iova, iova+size) (size 0: the whole domain)
  // and waits until the hardware has done so.
  virtual absl::Status InvalidateIotlb(DomainId domain, uint64_t iova, uint64_t size) = 0;

  // Emulates a DMA by `rid` of `unit`. A fault is also appended to the backend's fault queue.
  virtual Translation Translate(absl::string_view unit, Rid rid, uint64_t iova,
                                uint32_t access) = 0;

  // Removes and returns the queued faults, oldest first.
  virtual std::vector<FaultRecord> DrainFaults() = 0;

  // Read-back, straight from the hardware structures (not from any software shadow the backend keeps
  // for speed, where the two can differ): what `rid` points at.
  virtual absl::StatusOr<RidEntry> ReadRid(absl::string_view unit, Rid rid) = 0;
  // Every RID of `unit` with a valid entry, in RID order.
  virtual absl::StatusOr<std::vector<RidEntry>> ReadRids(absl::string_view unit) = 0;
  // Every domain allocated in the hardware, in id order.
  virtual std::vector<DomainId> ReadDomains() = 0;
  // The leaf mappings of `domain` by walking its page table, in IOVA order (one entry per leaf page).
  virtual absl::StatusOr<std::vector<Mapping>> ReadMappings(DomainId domain) = 0;

  virtual BackendStats Stats() = 0;

  // --- Replace and IOVA ranges (docs/semantics.md "Attach / detach", "Domains and mappings") ---

  // Whether the group holding `rid` of `unit` can be moved from one user domain straight to
  // another (iommu_group_replace_domain) by pointing its RIDs at the new domain with AttachRid,
  // with no window where the group has no translation or is blocked. OK by default: a simulated
  // stream table entry is rewritten in place. A backend that cannot (VFIO type1 moves a group
  // between containers only by unsetting and setting it) returns FAILED_PRECONDITION with its
  // reason; the registry then refuses the replace and changes nothing. Changes nothing itself.
  virtual absl::Status CanReplaceDomain(absl::string_view unit, Rid rid) {
    return absl::OkStatus();
  }

  // The usable IOVA ranges of `domain` as the kernel reports them (VFIO_IOMMU_GET_INFO's IOVA
  // range capability of a container), in address order; nullopt when the backend has no such
  // report for it (simulated backends, a domain with no kernel object): the registry computes the
  // ranges from the unit's caps alone. The kernel's error if it was asked and failed. Changes
  // nothing.
  virtual absl::StatusOr<std::optional<std::vector<IovaRange>>> KernelIovaRanges(DomainId domain) {
    return std::nullopt;
  }

  // --- Hand-over to a VMM that opens VFIO itself (docs/semantics.md "Hand-over to a VMM") ---
  // Host backends only; the defaults refuse (FAILED_PRECONDITION HANDOVER_NEEDS_HOST_BACKEND) and
  // find nothing. The registry calls them under the group's lock, with one RID of the group (the
  // backend hands over the whole kernel group holding it).

  // Hands the group of `rid` to `uid`:`gid`: its devices on the host's VFIO driver, its group
  // node openable by that uid (and gid), and the backend keeping nothing of it open. All or
  // nothing. The group's RIDs must be on a kernel-managed (default) domain.
  virtual absl::Status HandOverGroup(absl::string_view unit, Rid rid, uint32_t uid, uint32_t gid) {
    return NoHandover(unit, rid);
  }
  // Takes a hand-over back: the node root's again, the devices on their previous drivers.
  // FAILED_PRECONDITION (GROUP_STILL_OPEN, metadata pids) while a process holds the group open,
  // unless `force`; then nothing changed.
  virtual absl::Status TakeBackGroup(absl::string_view unit, Rid rid, bool force) {
    return NoHandover(unit, rid);
  }
  // The leaks of hand-overs (see HandoverLeak), in group order. Changes nothing.
  virtual std::vector<HandoverLeak> AuditHandovers() { return {}; }

 private:
  static absl::Status NoHandover(absl::string_view unit, Rid rid) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kHandoverNeedsHostBackend,
                 "handing a group over to a VMM needs a host backend (--backend=linux)",
                 {{"unit", std::string(unit)}, {"rid", absl::StrCat(rid)}});
  }
};

}  // namespace iommud

#endif  // IOMMUD_CORE_BACKEND_IOMMU_BACKEND_H_

#include "core/backend/emulated/emulated_backend.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/backend/emulated/emulated_backend_for_testing.h"
#include "core/backend/emulated/emulated_device.h"
#include "core/backend/emulated/emulated_format.h"
#include "core/backend/emulated/emulated_memory.h"
#include "core/backend/emulated/emulated_page_table.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/fault_injector.h"
#include "core/status_macros.h"
#include "core/sync.h"

namespace iommud {
namespace {

using namespace emu;  // NOLINT: the format's constants

constexpr uint64_t kSupportedPageSizes = kPage4K | kPage2M | kPage1G;

struct Options {
  std::string memory_file;
  uint64_t memory_bytes = uint64_t{256} << 20;
  size_t iotlb_entries = 4096;
  bool skip_invalidation = false;
  FaultInjector* faults = nullptr;  // BackendHooks::faults: pgtable.alloc, cmdq.sync_timeout
};

absl::Status BadOption(const std::string& key, const std::string& why) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidBackendOption,
               absl::StrCat("emulated backend option ", key, ": ", why), {{"option", key}});
}

absl::StatusOr<uint64_t> ParseBytes(const std::string& key, std::string text) {
  uint64_t shift = 0;
  if (!text.empty()) {
    switch (absl::ascii_toupper(text.back())) {
      case 'K': shift = 10; break;
      case 'M': shift = 20; break;
      case 'G': shift = 30; break;
      default: break;
    }
    if (shift != 0) text.pop_back();
  }
  uint64_t value = 0;
  if (!absl::SimpleAtoi(text, &value) || value == 0) return BadOption(key, "expected a size");
  return value << shift;
}

absl::StatusOr<Options> ParseOptions(const BackendOptions& given) {
  Options options;
  for (const auto& [key, value] : given) {
    if (key == "memory_file") {
      options.memory_file = value;
    } else if (key == "memory_bytes") {
      absl::StatusOr<uint64_t> bytes = ParseBytes(key, value);
      if (!bytes.ok()) return bytes.status();
      if (*bytes < kAllocArea + 64 * kPage) return BadOption(key, "too small");
      options.memory_bytes = *bytes;
    } else if (key == "iotlb_entries") {
      if (!absl::SimpleAtoi(value, &options.iotlb_entries) || options.iotlb_entries == 0) {
        return BadOption(key, "expected a positive integer");
      }
    } else if (key == "test_skip_invalidation") {
      if (value != "true" && value != "false") return BadOption(key, "expected true or false");
      options.skip_invalidation = value == "true";
    } else {
      return BadOption(key, "unknown option");
    }
  }
  return options;
}

// Pages of a stream table of `max_rids` entries (allocated contiguously, never freed).
uint64_t StreamTablePages(uint64_t max_rids) { return (max_rids * kSteBytes + kPage - 1) / kPage; }

uint64_t SteConfigOf(DomainType type) {
  return type == DomainType::kBlocked ? kAbort : type == DomainType::kIdentity ? kBypass : kTranslate;
}

std::string Hex(uint64_t value) { return absl::StrCat("0x", absl::Hex(value)); }

class EmulatedBackend : public IommuBackend {
 public:
  EmulatedBackend(std::unique_ptr<EmulatedMemory> memory, const Options& options)
      : memory_(std::move(memory)),
        faults_(options.faults),
        pool_(memory_.get(), options.faults),
        device_(memory_.get(), options.iotlb_entries),
        skip_invalidation_(options.skip_invalidation) {}

  // Formats fresh memory (anonymous, a new file, a file whose header area is all zero, or one whose
  // formatting a crash interrupted: see FormatNeverFinished), or re-attaches to what a previous
  // daemon left. DATA_LOSS (CORRUPT_MEMORY_FILE) when the memory
  // holds something that is not a consistent image of this format; it is never reinitialized.
  absl::Status Start(bool existed) {
    MutexLock lock(&mu_);
    if (existed && !HeaderAreaIsZero() && !FormatNeverFinished()) {
      if (const std::string problem = ImageProblem(); !problem.empty()) {
        return Error(absl::StatusCode::kDataLoss, reason::kCorruptMemoryFile,
                     absl::StrCat("the emulated IOMMU memory file is corrupt (", problem,
                                  "); refusing to reinitialize it (remove it to start fresh)"),
                     {{"problem", problem}});
      }
      for (uint64_t i = 0; i < kMaxUnits; ++i) {
        if (memory_->Read64(UnitAddr(i)) & 1) units_[UnitName(i)] = i;
      }
      for (uint64_t slot = 0; slot < kMaxDomains; ++slot) {
        const DomainId id = memory_->Read64(DomainAddr(slot));
        if (id != 0) domains_[id] = slot;
      }
      RebuildCounters();
      device_.ConsumeCommands();  // whatever the previous driver left in the queue
      return absl::OkStatus();
    }
    memory_->Zero(0, kAllocArea);
    memory_->Write64(kHdrVersion, kVersion);
    memory_->Write64(kHdrSize, memory_->size());
    memory_->Write64(kHdrBump, kAllocArea);
    memory_->Write64(kHdrMagic, kMagic);  // last: a crash while formatting leaves no magic
    memory_->Sync();
    return absl::OkStatus();
  }

  absl::string_view name() const override { return "emulated"; }

  absl::Status AddUnit(absl::string_view name, const UnitCaps& caps) override {
    if ((caps.pgsize_bitmap & ~kSupportedPageSizes) != 0 || caps.pgsize_bitmap == 0 ||
        caps.iova_bits > kInputBits || name.empty() || name.size() >= kUnitNameBytes ||
        caps.max_rids == 0) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kUnsupportedCaps,
                   absl::StrCat("unit '", name, "': page sizes ", Hex(caps.pgsize_bitmap),
                                " (4K|2M|1G only), iova_bits ", caps.iova_bits,
                                " (<= 48), a name of 1..23 bytes"),
                   {{"unit", std::string(name)}});
    }
    MutexLock lock(&mu_);
    if (auto known = units_.find(std::string(name)); known != units_.end()) {
      const uint64_t entry = UnitAddr(known->second);
      UnitCaps held;
      held.pgsize_bitmap = memory_->Read64(entry + 0x08);
      held.iova_bits = memory_->Read64(entry + 0x10);
      held.max_rids = memory_->Read64(entry + 0x18);
      return UnitExists(name, held, caps);
    }
    uint64_t index = 0;
    while (index < kMaxUnits && (memory_->Read64(UnitAddr(index)) & 1)) ++index;
    if (index == kMaxUnits) {
      return Error(absl::StatusCode::kResourceExhausted, reason::kTooManyUnits,
                   absl::StrCat("at most ", kMaxUnits, " units"));
    }
    absl::StatusOr<uint64_t> stream_table = pool_.AllocContiguous(StreamTablePages(caps.max_rids));
    if (!stream_table.ok()) return stream_table.status();
    const uint64_t entry = UnitAddr(index);
    memory_->Write64(entry + 0x08, caps.pgsize_bitmap);
    memory_->Write64(entry + 0x10, caps.iova_bits);
    memory_->Write64(entry + 0x18, caps.max_rids);
    memory_->Write64(entry + 0x20, *stream_table);
    char padded[kUnitNameBytes] = {};
    std::copy(name.begin(), name.end(), padded);
    memory_->WriteBytes(entry + 0x28, padded, kUnitNameBytes);
    memory_->Write64(entry, 1);  // valid last
    units_[std::string(name)] = index;
    return absl::OkStatus();
  }

  absl::Status AllocDomain(absl::string_view unit_name, DomainId id, DomainType type) override {
    MutexLock lock(&mu_);
    absl::StatusOr<uint64_t> unit = UnitIndex(unit_name);
    if (!unit.ok()) return unit.status();
    if (id == 0 || domains_.count(id) != 0) {
      return Error(absl::StatusCode::kAlreadyExists, reason::kDomainExists,
                   absl::StrCat("domain ", id, " exists"), {{"domain_id", absl::StrCat(id)}});
    }
    uint64_t slot = 0;
    while (slot < kMaxDomains && memory_->Read64(DomainAddr(slot)) != 0) ++slot;
    if (slot == kMaxDomains) {
      return Error(absl::StatusCode::kResourceExhausted, reason::kTooManyDomains,
                   absl::StrCat("the domain table holds ", kMaxDomains, " domains"));
    }
    uint64_t root = 0;
    if (IsPaging(type)) {
      absl::StatusOr<uint64_t> page = pool_.Alloc();
      if (!page.ok()) return page.status();
      root = *page;
    }
    const uint64_t entry = DomainAddr(slot);
    memory_->Write64(entry + 0x08, *unit | static_cast<uint64_t>(type) << 8);
    memory_->Write64(entry + 0x10, root);
    memory_->Write64(entry + 0x18, 0);
    memory_->Write64(entry, id);
    domains_[id] = slot;
    return absl::OkStatus();
  }

  absl::Status FreeDomain(DomainId id) override {
    MutexLock lock(&mu_);
    absl::StatusOr<uint64_t> entry = DomainEntry(id);
    if (!entry.ok()) return entry.status();
    if (memory_->Read64(*entry + 0x18) != 0) {
      return Error(absl::StatusCode::kFailedPrecondition, reason::kDomainInUse,
                   absl::StrCat("domain ", id, " is used by ", memory_->Read64(*entry + 0x18),
                                " stream table entr(ies)"),
                   {{"domain_id", absl::StrCat(id)}});
    }
    // Its translations leave the IOTLB before its page tables are reused.
    if (!skip_invalidation_) Command(kTlbiDomain, id, 0, 0);
    RETURN_IF_ERROR(Sync());
    // The entry goes first, then its tables: a crash in between leaks pages (no use), never
    // leaves a domain whose tables are on the free list.
    const uint64_t root = memory_->Read64(*entry + 0x10);
    memory_->Zero(*entry, kDomainEntry);
    domains_.erase(id);
    if (root != 0) EmulatedPageTable(memory_.get(), &pool_, root, 0).FreeAll();
    return absl::OkStatus();
  }

  absl::Status AttachRid(absl::string_view unit_name, Rid rid, DomainId domain) override {
    MutexLock lock(&mu_);
    absl::StatusOr<uint64_t> unit = UnitIndex(unit_name);
    if (!unit.ok()) return unit.status();
    absl::StatusOr<uint64_t> ste = SteAddr(*unit, rid);
    if (!ste.ok()) return ste.status();
    absl::StatusOr<uint64_t> entry = DomainEntry(domain);
    if (!entry.ok()) return entry.status();
    const uint64_t info = memory_->Read64(*entry + 0x08);
    if ((info & 0xff) != *unit) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kDomainOfOtherUnit,
                   absl::StrCat("domain ", domain, " belongs to another unit"),
                   {{"domain_id", absl::StrCat(domain)}, {"unit", std::string(unit_name)}});
    }
    const uint64_t config = SteConfigOf(static_cast<DomainType>(info >> 8));
    const SavedSte saved = SaveSte(*ste);
    DropSteReference(*ste);
    WriteSte(*ste, domain, memory_->Read64(*entry + 0x10), kSteValid | config << 1);
    memory_->Write64(*entry + 0x18, memory_->Read64(*entry + 0x18) + 1);
    if (!skip_invalidation_) Command(kCfgiSte, *unit, rid, 0);
    if (absl::Status synced = Sync(); !synced.ok()) {
      RestoreSte(*unit, rid, *ste, saved);
      return synced;
    }
    return absl::OkStatus();
  }

  absl::Status ReleaseRid(absl::string_view unit_name, Rid rid) override {
    MutexLock lock(&mu_);
    absl::StatusOr<uint64_t> unit = UnitIndex(unit_name);
    if (!unit.ok()) return unit.status();
    absl::StatusOr<uint64_t> ste = SteAddr(*unit, rid);
    if (!ste.ok()) return ste.status();
    if (!(memory_->Read64(*ste) & kSteValid)) return absl::OkStatus();
    const SavedSte saved = SaveSte(*ste);
    DropSteReference(*ste);
    memory_->Zero(*ste, kSteBytes);
    if (!skip_invalidation_) Command(kCfgiSte, *unit, rid, 0);
    if (absl::Status synced = Sync(); !synced.ok()) {
      RestoreSte(*unit, rid, *ste, saved);
      return synced;
    }
    return absl::OkStatus();
  }

  absl::Status Map(DomainId domain, uint64_t iova, uint64_t paddr, uint64_t size,
                   uint32_t prot) override {
    MutexLock lock(&mu_);
    absl::StatusOr<EmulatedPageTable> table = PageTableOf(domain);
    if (!table.ok()) return table.status();
    return table->Map(iova, paddr, size, prot);
  }

  absl::StatusOr<uint64_t> Unmap(DomainId domain, uint64_t iova, uint64_t size) override {
    MutexLock lock(&mu_);
    absl::StatusOr<EmulatedPageTable> table = PageTableOf(domain);
    if (!table.ok()) return table.status();
    return table->Unmap(iova, size);  // no TLBI: the caller invalidates
  }

  absl::Status InvalidateIotlb(DomainId domain, uint64_t iova, uint64_t size) override {
    MutexLock lock(&mu_);
    absl::StatusOr<uint64_t> entry = DomainEntry(domain);
    if (!entry.ok()) return entry.status();
    if (!skip_invalidation_) {
      if (size == 0) {
        Command(kTlbiDomain, domain, 0, 0);
      } else {
        Command(kTlbiRange, domain, iova, size);
      }
    }
    return Sync();
  }

  Translation Translate(absl::string_view unit_name, Rid rid, uint64_t iova,
                        uint32_t access) override {
    MutexLock lock(&mu_);
    absl::StatusOr<uint64_t> unit = UnitIndex(unit_name);
    if (!unit.ok()) {
      Translation translation;
      translation.fault = FaultReason::kUnknownRid;
      return translation;
    }
    return device_.Translate(*unit, rid, iova, access);
  }

  std::vector<FaultRecord> DrainFaults() override {
    MutexLock lock(&mu_);
    std::vector<FaultRecord> faults;
    uint64_t cons = memory_->Read64(kHdrEvtqCons);
    const uint64_t prod = memory_->Read64(kHdrEvtqProd);
    for (; cons != prod; ++cons) {
      const uint64_t entry = kEvtq + (cons % kEvtqEntries) * kQueueEntry;
      const uint64_t word = memory_->Read64(entry);
      const uint64_t unit = word & 0xff, reason = (word >> 8) & 0xff, access = (word >> 16) & 0xff;
      // An entry the device cannot have written (a memory file changed behind its back) is
      // skipped: no unit, reason or access bits that would reach a client unchecked.
      if (unit >= kMaxUnits || !(memory_->Read64(UnitAddr(unit)) & 1) ||
          reason < static_cast<uint64_t>(FaultReason::kUnknownRid) ||
          reason > static_cast<uint64_t>(FaultReason::kPermission) ||
          (access & ~uint64_t{kProtRead | kProtWrite}) != 0) {
        continue;
      }
      FaultRecord fault;
      fault.unit = UnitName(unit);
      fault.reason = static_cast<FaultReason>(reason);
      fault.access = static_cast<uint32_t>(access);
      fault.rid = static_cast<Rid>(memory_->Read64(entry + 8));
      fault.iova = memory_->Read64(entry + 16);
      fault.time_unix_nanos = static_cast<int64_t>(memory_->Read64(entry + 24));
      faults.push_back(std::move(fault));
    }
    memory_->Write64(kHdrEvtqCons, cons);
    return faults;
  }

  absl::StatusOr<RidEntry> ReadRid(absl::string_view unit_name, Rid rid) override {
    MutexLock lock(&mu_);
    absl::StatusOr<uint64_t> unit = UnitIndex(unit_name);
    if (!unit.ok()) return unit.status();
    absl::StatusOr<uint64_t> ste = SteAddr(*unit, rid);
    if (!ste.ok()) return ste.status();
    return RidEntry{rid, (memory_->Read64(*ste) & kSteValid) ? memory_->Read64(*ste + 8) : 0};
  }

  absl::StatusOr<std::vector<RidEntry>> ReadRids(absl::string_view unit_name) override {
    MutexLock lock(&mu_);
    absl::StatusOr<uint64_t> unit = UnitIndex(unit_name);
    if (!unit.ok()) return unit.status();
    return ValidStes(*unit);
  }

  std::vector<DomainId> ReadDomains() override {
    MutexLock lock(&mu_);
    std::vector<DomainId> ids;
    for (uint64_t slot = 0; slot < kMaxDomains; ++slot) {
      if (const DomainId id = memory_->Read64(DomainAddr(slot)); id != 0) ids.push_back(id);
    }
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  absl::StatusOr<std::vector<Mapping>> ReadMappings(DomainId domain) override {
    MutexLock lock(&mu_);
    absl::StatusOr<uint64_t> entry = DomainEntry(domain);
    if (!entry.ok()) return entry.status();
    const uint64_t root = memory_->Read64(*entry + 0x10);
    if (root == 0) return std::vector<Mapping>();
    return EmulatedPageTable(memory_.get(), &pool_, root, 0).Leaves();
  }

  BackendStats Stats() override {
    MutexLock lock(&mu_);
    BackendStats stats;
    stats.domains = domains_.size();
    stats.page_table_pages = pool_.in_use();
    for (const auto& [name, unit] : units_) stats.programmed_rids += ValidStes(unit).size();
    stats.iotlb_entries = device_.iotlb_entries();
    return stats;
  }

 private:
  bool HeaderAreaIsZero() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (uint64_t pa = 0; pa < kAllocArea; pa += 8) {
      if (memory_->Read64(pa) != 0) return false;
    }
    return true;
  }

  // True when the header area holds only what formatting writes before its last word, the magic:
  // the process died while formatting, before anything else could be written (nothing is written
  // to an image without a magic), so formatting again loses nothing.
  bool FormatNeverFinished() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (memory_->Read64(kHdrMagic) != 0) return false;
    for (uint64_t pa = 0; pa < kAllocArea; pa += 8) {
      if (pa == kHdrVersion || pa == kHdrSize || pa == kHdrBump) continue;
      if (memory_->Read64(pa) != 0) return false;
    }
    return true;
  }

  // What makes the image in memory unusable ("" if nothing): every pointer the driver and the
  // device follow without checking (queue indices, stream table bases, domain roots, the page
  // allocator's state) must lie inside the allocation area in use, and every page there has at
  // most one use — a unit's stream table, a table of one domain's page table, or a free page — so
  // that writing one never corrupts another (a free page handed out while still in use, a table
  // freed twice, a free-list link leading outside the memory).
  std::string ImageProblem() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (memory_->Read64(kHdrMagic) != kMagic) return "bad magic";
    if (memory_->Read64(kHdrVersion) != kVersion) return "unknown format version";
    if (memory_->Read64(kHdrSize) > memory_->size()) return "memory smaller than formatted";
    const uint64_t bump = memory_->Read64(kHdrBump);
    if (bump < kAllocArea || bump > memory_->size() || bump % kPage != 0) {
      return "page allocator out of range";
    }
    auto allocated_page = [&](uint64_t pa) {
      return pa >= kAllocArea && pa < bump && pa % kPage == 0;
    };
    const uint64_t free_head = memory_->Read64(kHdrFreeList);
    if (free_head != 0 && !allocated_page(free_head)) return "free list out of range";
    const auto ring_ok = [&](uint64_t prod_field, uint64_t cons_field, uint64_t entries) {
      const uint64_t prod = memory_->Read64(prod_field), cons = memory_->Read64(cons_field);
      return cons <= prod && prod - cons <= entries;
    };
    if (!ring_ok(kHdrCmdqProd, kHdrCmdqCons, kCmdqEntries)) return "command queue indices";
    if (!ring_ok(kHdrEvtqProd, kHdrEvtqCons, kEvtqEntries)) return "event queue indices";
    std::vector<bool> used((bump - kAllocArea) / kPage);
    auto claim = [&](uint64_t pa) {
      if (!allocated_page(pa) || used[(pa - kAllocArea) / kPage]) return false;
      used[(pa - kAllocArea) / kPage] = true;
      return true;
    };
    std::set<std::string> names;
    for (uint64_t i = 0; i < kMaxUnits; ++i) {
      const uint64_t unit = UnitAddr(i);
      const uint64_t flags = memory_->Read64(unit);
      if (flags == 0) continue;
      const uint64_t max_rids = memory_->Read64(unit + 0x18);
      const uint64_t table = memory_->Read64(unit + 0x20);
      const std::string name = UnitName(i);
      if (flags != 1 || (memory_->Read64(unit + 0x08) & ~kSupportedPageSizes) != 0 ||
          max_rids == 0 || max_rids > (bump - kAllocArea) / kSteBytes ||
          !allocated_page(table) || table + max_rids * kSteBytes > bump || name.empty() ||
          !names.insert(name).second) {
        return absl::StrCat("unit entry ", i);
      }
      for (uint64_t page = 0; page < StreamTablePages(max_rids); ++page) {
        if (!claim(table + page * kPage)) return absl::StrCat("stream table of unit entry ", i);
      }
    }
    std::map<DomainId, uint64_t> ids;  // -> slot
    for (uint64_t slot = 0; slot < kMaxDomains; ++slot) {
      const uint64_t entry = DomainAddr(slot);
      const DomainId id = memory_->Read64(entry);
      if (id == 0) continue;
      const uint64_t info = memory_->Read64(entry + 0x08);
      const uint64_t type = info >> 8, root = memory_->Read64(entry + 0x10);
      const bool paging =
          type <= static_cast<uint64_t>(DomainType::kDmaFq) && IsPaging(static_cast<DomainType>(type));
      if ((info & 0xff) >= kMaxUnits || !(memory_->Read64(UnitAddr(info & 0xff)) & 1) ||
          type > static_cast<uint64_t>(DomainType::kDmaFq) ||
          (paging ? !allocated_page(root) : root != 0) || !ids.emplace(id, slot).second) {
        return absl::StrCat("domain table slot ", slot);
      }
    }
    for (const auto& [id, slot] : ids) {
      const uint64_t root = memory_->Read64(DomainAddr(slot) + 0x10);
      if (root == 0) continue;
      const std::optional<uint64_t> pages =
          EmulatedPageTable(memory_.get(), nullptr, root, 0).ClaimTablePages(claim);
      if (!pages.has_value()) return absl::StrCat("page table of domain ", id);
    }
    for (uint64_t page = free_head; page != 0; page = memory_->Read64(page)) {
      if (!claim(page)) return "free list";  // outside, in use, or a cycle
    }
    // Every valid STE names a domain of its unit with that domain's root and config (reference
    // counts are bookkeeping, rebuilt by RebuildCounters).
    for (uint64_t i = 0; i < kMaxUnits; ++i) {
      if (!(memory_->Read64(UnitAddr(i)) & 1)) continue;
      const uint64_t base = memory_->Read64(UnitAddr(i) + 0x20);
      const uint64_t max_rids = memory_->Read64(UnitAddr(i) + 0x18);
      for (uint64_t rid = 0; rid < max_rids; ++rid) {
        const uint64_t ste = base + rid * kSteBytes;
        const uint64_t control = memory_->Read64(ste);
        if (!(control & kSteValid)) continue;
        const auto domain = ids.find(memory_->Read64(ste + 8));
        if (domain == ids.end()) return absl::StrCat("unit ", i, " RID ", rid);
        const uint64_t entry = DomainAddr(domain->second);
        const uint64_t info = memory_->Read64(entry + 0x08);
        if ((info & 0xff) != i || memory_->Read64(ste + 16) != memory_->Read64(entry + 0x10) ||
            control != (kSteValid | SteConfigOf(static_cast<DomainType>(info >> 8)) << 1)) {
          return absl::StrCat("unit ", i, " RID ", rid);
        }
      }
    }
    return "";
  }

  // The driver's bookkeeping in the image (pages in use, each domain's STE reference count) is
  // derived from the tables and is not written in the same step as them, so a crash can leave it
  // behind: recomputed from the tables whenever the driver attaches to a surviving image. Pages a
  // crash left allocated but unused (neither in a table nor free) stay lost; they are not counted.
  void RebuildCounters() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    uint64_t table_pages = 0;
    absl::flat_hash_map<DomainId, uint64_t> references;
    for (const auto& [id, slot] : domains_) {
      references[id] = 0;
      const uint64_t root = memory_->Read64(DomainAddr(slot) + 0x10);
      if (root == 0) continue;
      table_pages += EmulatedPageTable(memory_.get(), nullptr, root, 0)
                         .ClaimTablePages([](uint64_t) { return true; })
                         .value_or(0);
    }
    for (const auto& [name, unit] : units_) {
      const uint64_t base = memory_->Read64(UnitAddr(unit) + 0x20);
      const uint64_t max_rids = memory_->Read64(UnitAddr(unit) + 0x18);
      for (uint64_t rid = 0; rid < max_rids; ++rid) {
        const uint64_t ste = base + rid * kSteBytes;
        if (memory_->Read64(ste) & kSteValid) ++references[memory_->Read64(ste + 8)];
      }
    }
    auto rewrite = [&](uint64_t pa, uint64_t value) {
      if (memory_->Read64(pa) != value) memory_->Write64(pa, value);
    };
    rewrite(kHdrPagesInUse, table_pages);
    for (const auto& [id, slot] : domains_) rewrite(DomainAddr(slot) + 0x18, references[id]);
  }

  std::string UnitName(uint64_t index) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    char name[kUnitNameBytes] = {};
    memory_->ReadBytes(UnitAddr(index) + 0x28, name, kUnitNameBytes - 1);
    return name;
  }

  absl::StatusOr<uint64_t> UnitIndex(absl::string_view name) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = units_.find(std::string(name));
    if (it != units_.end()) return it->second;
    return Error(absl::StatusCode::kNotFound, reason::kUnitNotFound,
                 absl::StrCat("no unit '", name, "' in the hardware"),
                 {{"unit", std::string(name)}});
  }

  absl::StatusOr<uint64_t> DomainEntry(DomainId id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = domains_.find(id);
    if (it != domains_.end()) return DomainAddr(it->second);
    return Error(absl::StatusCode::kNotFound, reason::kDomainNotFound,
                 absl::StrCat("no domain ", id, " in the hardware"),
                 {{"domain_id", absl::StrCat(id)}});
  }

  absl::StatusOr<uint64_t> SteAddr(uint64_t unit, Rid rid) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const uint64_t max_rids = memory_->Read64(UnitAddr(unit) + 0x18);
    if (rid >= max_rids) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kRidOutOfRange,
                   absl::StrCat("RID ", rid, " is beyond max_rids ", max_rids),
                   {{"rid", absl::StrCat(rid)}});
    }
    return memory_->Read64(UnitAddr(unit) + 0x20) + uint64_t{rid} * kSteBytes;
  }

  std::vector<RidEntry> ValidStes(uint64_t unit) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<RidEntry> entries;
    const uint64_t base = memory_->Read64(UnitAddr(unit) + 0x20);
    const uint64_t max_rids = memory_->Read64(UnitAddr(unit) + 0x18);
    for (uint64_t rid = 0; rid < max_rids; ++rid) {
      const uint64_t ste = base + rid * kSteBytes;
      if (memory_->Read64(ste) & kSteValid) {
        entries.push_back({static_cast<Rid>(rid), memory_->Read64(ste + 8)});
      }
    }
    return entries;
  }

  // Writes an STE break-before-make, as an SMMU driver must: a valid entry is made invalid first
  // and the control word (valid bit) is written last, so neither the device nor a crash ever sees
  // a valid entry naming one domain with another's root.
  void WriteSte(uint64_t ste, uint64_t domain, uint64_t root, uint64_t control)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (memory_->Read64(ste) & kSteValid) memory_->Write64(ste, 0);
    memory_->Write64(ste + 8, domain);
    memory_->Write64(ste + 16, root);
    memory_->Write64(ste, control);
  }

  // Drops the domain reference of a valid STE (before it is rewritten or cleared).
  void DropSteReference(uint64_t ste) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!(memory_->Read64(ste) & kSteValid)) return;
    auto it = domains_.find(memory_->Read64(ste + 8));
    if (it == domains_.end()) return;
    const uint64_t refs = DomainAddr(it->second) + 0x18;
    memory_->Write64(refs, memory_->Read64(refs) - 1);
  }

  absl::StatusOr<EmulatedPageTable> PageTableOf(DomainId domain)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    absl::StatusOr<uint64_t> entry = DomainEntry(domain);
    if (!entry.ok()) return entry.status();
    const uint64_t root = memory_->Read64(*entry + 0x10);
    if (root == 0) {
      return Error(absl::StatusCode::kFailedPrecondition, reason::kDomainNotPaging,
                   absl::StrCat("domain ", domain, " has no page table"),
                   {{"domain_id", absl::StrCat(domain)}});
    }
    const uint64_t unit = memory_->Read64(*entry + 0x08) & 0xff;
    return EmulatedPageTable(memory_.get(), &pool_, root,
                             memory_->Read64(UnitAddr(unit) + 0x08));
  }

  // Appends a command to the queue (making room by letting the device consume when full).
  void Command(uint64_t opcode, uint64_t arg0, uint64_t arg1, uint64_t arg2)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    uint64_t prod = memory_->Read64(kHdrCmdqProd);
    if (prod - memory_->Read64(kHdrCmdqCons) >= kCmdqEntries) device_.ConsumeCommands();
    const uint64_t entry = kCmdq + (prod % kCmdqEntries) * kQueueEntry;
    memory_->Write64(entry, opcode);
    memory_->Write64(entry + 8, arg0);
    memory_->Write64(entry + 16, arg1);
    memory_->Write64(entry + 24, arg2);
    memory_->Write64(kHdrCmdqProd, prod + 1);
  }

  // CMD_SYNC: returns once the device has consumed every command before it. The
  // cmdq.sync_timeout injection point makes the device not answer: the commands stay queued (the
  // next SYNC consumes them) and the caller undoes what it wrote. UNAVAILABLE (SYNC_TIMEOUT).
  absl::Status HitFault(absl::string_view point) {
    return faults_ == nullptr ? absl::OkStatus() : faults_->Hit(point);
  }
  absl::Status Sync() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Command(kSync, ++sync_sequence_, 0, 0);
    if (absl::Status timeout = HitFault("cmdq.sync_timeout"); !timeout.ok()) {
      return Error(absl::StatusCode::kUnavailable, reason::kSyncTimeout,
                   absl::StrCat("the emulated IOMMU did not complete CMD_SYNC: ",
                                timeout.message()),
                   {{"sync", absl::StrCat(sync_sequence_)}});
    }
    device_.ConsumeCommands();
    return absl::OkStatus();
  }

  // Puts back an STE saved before a change whose SYNC timed out, with the domain references, and
  // makes the device re-read it.
  struct SavedSte {
    uint64_t words[4];
  };
  SavedSte SaveSte(uint64_t ste) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    SavedSte saved;
    for (int i = 0; i < 4; ++i) saved.words[i] = memory_->Read64(ste + 8 * i);
    return saved;
  }
  void RestoreSte(uint64_t unit, Rid rid, uint64_t ste, const SavedSte& saved)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    DropSteReference(ste);
    memory_->Write64(ste + 24, saved.words[3]);
    WriteSte(ste, saved.words[1], saved.words[2], saved.words[0]);
    if (saved.words[0] & kSteValid) {
      auto it = domains_.find(saved.words[1]);
      if (it != domains_.end()) {
        const uint64_t refs = DomainAddr(it->second) + 0x18;
        memory_->Write64(refs, memory_->Read64(refs) + 1);
      }
    }
    Command(kCfgiSte, unit, rid, 0);
    device_.ConsumeCommands();
  }

  mutable absl::Mutex mu_;
  const std::unique_ptr<EmulatedMemory> memory_;
  FaultInjector* const faults_;  // not owned; may be null
  PagePool pool_ ABSL_GUARDED_BY(mu_);
  EmulatedDevice device_ ABSL_GUARDED_BY(mu_);
  const bool skip_invalidation_;
  std::map<std::string, uint64_t> units_ ABSL_GUARDED_BY(mu_);        // name -> unit index
  absl::flat_hash_map<DomainId, uint64_t> domains_ ABSL_GUARDED_BY(mu_);  // id -> slot
  uint64_t sync_sequence_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<IommuBackend>> NewEmulatedBackend(const BackendOptions& given,
                                                                 const BackendHooks& hooks) {
  absl::StatusOr<Options> options = ParseOptions(given);
  if (!options.ok()) return options.status();
  bool existed = false;
  absl::StatusOr<std::unique_ptr<EmulatedMemory>> memory =
      EmulatedMemory::Open(options->memory_file, options->memory_bytes, &existed);
  if (!memory.ok()) return memory.status();
  (*memory)->set_before_write(hooks.before_durable_write);
  options->faults = hooks.faults;
  auto backend = std::make_unique<EmulatedBackend>(*std::move(memory), *options);
  absl::Status started = backend->Start(existed);
  if (!started.ok()) return started;
  return std::unique_ptr<IommuBackend>(std::move(backend));
}

absl::StatusOr<std::unique_ptr<IommuBackend>> NewEmulatedBackendOnMemoryForTesting(
    std::unique_ptr<EmulatedMemory> memory, bool existed, const BackendOptions& given) {
  if (given.count("memory_file") != 0 || given.count("memory_bytes") != 0) {
    return BadOption("memory_file", "the memory is given");
  }
  absl::StatusOr<Options> options = ParseOptions(given);
  if (!options.ok()) return options.status();
  auto backend = std::make_unique<EmulatedBackend>(std::move(memory), *options);
  absl::Status started = backend->Start(existed);
  if (!started.ok()) return started;
  return std::unique_ptr<IommuBackend>(std::move(backend));
}

}  // namespace iommud

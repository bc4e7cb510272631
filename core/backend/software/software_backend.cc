#include "core/backend/software/software_backend.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "core/backend/software/page_table.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/sync.h"

namespace iommud {
namespace {

std::string Hex(uint64_t value) { return absl::StrCat("0x", absl::Hex(value)); }

constexpr uint64_t kSupportedPageSizes = kPage4K | kPage2M | kPage1G;

struct Unit {
  std::string name;
  UnitCaps caps;
  mutable absl::Mutex mu;
  absl::flat_hash_map<Rid, DomainId> rids ABSL_GUARDED_BY(mu);
};

struct Domain {
  Domain(DomainId domain_id, std::string unit_name, DomainType domain_type, uint64_t pgsizes,
         std::atomic<uint64_t>* table_pages, FaultInjector* faults)
      : id(domain_id), unit(std::move(unit_name)), type(domain_type) {
    if (IsPaging(type)) page_table = std::make_unique<PageTable>(pgsizes, table_pages, faults);
  }
  const DomainId id;
  const std::string unit;
  const DomainType type;
  std::atomic<uint64_t> rid_refs{0};  // RIDs pointing here (changed under the unit's mutex)

  mutable absl::Mutex mu;
  std::unique_ptr<PageTable> page_table ABSL_GUARDED_BY(mu);  // paging types only
  // IOTLB: leaf base iova -> leaf.
  absl::flat_hash_map<uint64_t, Mapping> iotlb ABSL_GUARDED_BY(mu);
};

class SoftwareBackend : public IommuBackend {
 public:
  SoftwareBackend(size_t iotlb_entries, size_t fault_queue, FaultInjector* faults)
      : iotlb_capacity_(iotlb_entries), fault_capacity_(fault_queue), injector_(faults) {}

  absl::string_view name() const override { return "software"; }

  absl::Status AddUnit(absl::string_view name, const UnitCaps& caps) override {
    if ((caps.pgsize_bitmap & ~kSupportedPageSizes) != 0 || caps.pgsize_bitmap == 0) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kUnsupportedCaps,
                   absl::StrCat("page sizes ", Hex(caps.pgsize_bitmap),
                                " are not a subset of 4K|2M|1G"),
                   {{"unit", std::string(name)}});
    }
    if (caps.iova_bits > PageTable::kInputBits) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kUnsupportedCaps,
                   absl::StrCat("iova_bits ", caps.iova_bits, " exceeds the 48-bit page table"),
                   {{"unit", std::string(name)}});
    }
    auto unit = std::make_unique<Unit>();
    unit->name = std::string(name);
    unit->caps = caps;
    MutexLock lock(&units_mu_);
    auto known = units_.find(unit->name);
    if (known != units_.end()) return UnitExists(name, known->second->caps, caps);
    units_.emplace(unit->name, std::move(unit));
    return absl::OkStatus();
  }

  absl::Status AllocDomain(absl::string_view unit_name, DomainId id, DomainType type) override {
    Unit* unit = FindUnit(unit_name);
    if (unit == nullptr) return UnitNotFound(unit_name);
    auto domain = std::make_shared<Domain>(id, unit->name, type, unit->caps.pgsize_bitmap,
                                           &table_pages_, injector_);
    MutexLock lock(&domains_mu_);
    if (!domains_.emplace(id, std::move(domain)).second) {
      return Error(absl::StatusCode::kAlreadyExists, reason::kDomainExists,
                   absl::StrCat("domain ", id, " exists"), {{"domain_id", absl::StrCat(id)}});
    }
    return absl::OkStatus();
  }

  absl::Status FreeDomain(DomainId id) override {
    MutexLock lock(&domains_mu_);
    auto it = domains_.find(id);
    if (it == domains_.end()) return DomainNotFound(id);
    if (it->second->rid_refs.load() != 0) {
      return Error(absl::StatusCode::kFailedPrecondition, reason::kDomainInUse,
                   absl::StrCat("domain ", id, " is used by ", it->second->rid_refs.load(),
                                " RID(s)"),
                   {{"domain_id", absl::StrCat(id)}});
    }
    domains_.erase(it);
    return absl::OkStatus();
  }

  absl::Status AttachRid(absl::string_view unit_name, Rid rid, DomainId domain_id) override {
    Unit* unit = FindUnit(unit_name);
    if (unit == nullptr) return UnitNotFound(unit_name);
    if (rid >= unit->caps.max_rids) return BadRid(*unit, rid);
    std::shared_ptr<Domain> domain = FindDomain(domain_id);
    if (domain == nullptr) return DomainNotFound(domain_id);
    if (domain->unit != unit->name) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kDomainOfOtherUnit,
                   absl::StrCat("domain ", domain_id, " belongs to unit '", domain->unit, "'"),
                   {{"domain_id", absl::StrCat(domain_id)}, {"unit", unit->name}});
    }
    MutexLock lock(&unit->mu);
    DomainId& entry = unit->rids[rid];
    if (entry == domain_id) return absl::OkStatus();
    if (entry != 0) DropRef(entry);
    entry = domain_id;
    domain->rid_refs.fetch_add(1);
    return absl::OkStatus();
  }

  absl::Status ReleaseRid(absl::string_view unit_name, Rid rid) override {
    Unit* unit = FindUnit(unit_name);
    if (unit == nullptr) return UnitNotFound(unit_name);
    if (rid >= unit->caps.max_rids) return BadRid(*unit, rid);
    MutexLock lock(&unit->mu);
    auto it = unit->rids.find(rid);
    if (it == unit->rids.end()) return absl::OkStatus();
    DropRef(it->second);
    unit->rids.erase(it);
    return absl::OkStatus();
  }

  absl::Status Map(DomainId id, uint64_t iova, uint64_t paddr, uint64_t size,
                   uint32_t prot) override {
    std::shared_ptr<Domain> domain = FindDomain(id);
    if (domain == nullptr) return DomainNotFound(id);
    MutexLock lock(&domain->mu);
    if (domain->page_table == nullptr) return NotPaging(*domain);
    return domain->page_table->Map(iova, paddr, size, prot);
  }

  absl::StatusOr<uint64_t> Unmap(DomainId id, uint64_t iova, uint64_t size) override {
    std::shared_ptr<Domain> domain = FindDomain(id);
    if (domain == nullptr) return DomainNotFound(id);
    MutexLock lock(&domain->mu);
    if (domain->page_table == nullptr) return NotPaging(*domain);
    return domain->page_table->Unmap(iova, size);  // the IOTLB keeps its entries
  }

  absl::Status InvalidateIotlb(DomainId id, uint64_t iova, uint64_t size) override {
    std::shared_ptr<Domain> domain = FindDomain(id);
    if (domain == nullptr) return DomainNotFound(id);
    MutexLock lock(&domain->mu);
    if (size == 0) {
      domain->iotlb.clear();
      return absl::OkStatus();
    }
    const IovaRange range{iova, size};
    for (auto it = domain->iotlb.begin(); it != domain->iotlb.end();) {
      if (range.Overlaps(it->second.iova, it->second.size)) {
        domain->iotlb.erase(it++);
      } else {
        ++it;
      }
    }
    return absl::OkStatus();
  }

  Translation Translate(absl::string_view unit_name, Rid rid, uint64_t iova,
                        uint32_t access) override {
    Translation result;
    Unit* unit = FindUnit(unit_name);
    DomainId domain_id = 0;
    if (unit != nullptr) {
      MutexLock lock(&unit->mu);
      auto it = unit->rids.find(rid);
      if (it != unit->rids.end()) domain_id = it->second;
    }
    std::shared_ptr<Domain> domain = domain_id != 0 ? FindDomain(domain_id) : nullptr;
    if (domain == nullptr) return Fault(unit_name, rid, iova, access, FaultReason::kUnknownRid, 0);
    result.domain = domain->id;
    switch (domain->type) {
      case DomainType::kBlocked:
        return Fault(unit_name, rid, iova, access, FaultReason::kBlocked, domain->id);
      case DomainType::kIdentity:
        result.paddr = iova;
        return result;
      default:
        break;
    }
    std::optional<Mapping> leaf;
    {
      MutexLock lock(&domain->mu);
      const uint64_t page = kPage4K;
      // The IOTLB first: any cached leaf covering iova (checked at each supported leaf size).
      for (uint64_t size : {kPage1G, kPage2M, page}) {
        auto it = domain->iotlb.find(iova & ~(size - 1));
        if (it != domain->iotlb.end() && it->second.size == size) {
          leaf = it->second;
          break;
        }
      }
      if (!leaf.has_value() && domain->page_table != nullptr) {
        leaf = domain->page_table->Lookup(iova);
        if (leaf.has_value()) {
          if (domain->iotlb.size() >= iotlb_capacity_) domain->iotlb.clear();
          domain->iotlb[leaf->iova] = *leaf;
        }
      }
    }
    if (!leaf.has_value()) {
      return Fault(unit_name, rid, iova, access, FaultReason::kNoMapping, domain->id);
    }
    if ((leaf->prot & access) != access) {
      return Fault(unit_name, rid, iova, access, FaultReason::kPermission, domain->id);
    }
    result.paddr = leaf->paddr + (iova - leaf->iova);
    return result;
  }

  std::vector<FaultRecord> DrainFaults() override {
    MutexLock lock(&faults_mu_);
    std::vector<FaultRecord> drained(faults_.begin(), faults_.end());
    faults_.clear();
    return drained;
  }

  absl::StatusOr<RidEntry> ReadRid(absl::string_view unit_name, Rid rid) override {
    Unit* unit = FindUnit(unit_name);
    if (unit == nullptr) return UnitNotFound(unit_name);
    if (rid >= unit->caps.max_rids) return BadRid(*unit, rid);
    MutexLock lock(&unit->mu);
    auto it = unit->rids.find(rid);
    return RidEntry{rid, it == unit->rids.end() ? 0 : it->second};
  }

  absl::StatusOr<std::vector<RidEntry>> ReadRids(absl::string_view unit_name) override {
    Unit* unit = FindUnit(unit_name);
    if (unit == nullptr) return UnitNotFound(unit_name);
    std::vector<RidEntry> entries;
    {
      MutexLock lock(&unit->mu);
      for (const auto& [rid, domain] : unit->rids) entries.push_back({rid, domain});
    }
    std::sort(entries.begin(), entries.end(),
              [](const RidEntry& a, const RidEntry& b) { return a.rid < b.rid; });
    return entries;
  }

  std::vector<DomainId> ReadDomains() override {
    std::vector<DomainId> ids;
    MutexLock lock(&domains_mu_);
    for (const auto& [id, domain] : domains_) ids.push_back(id);
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  absl::StatusOr<std::vector<Mapping>> ReadMappings(DomainId id) override {
    std::shared_ptr<Domain> domain = FindDomain(id);
    if (domain == nullptr) return DomainNotFound(id);
    MutexLock lock(&domain->mu);
    if (domain->page_table == nullptr) return std::vector<Mapping>();
    return domain->page_table->Leaves();
  }

  BackendStats Stats() override {
    BackendStats stats;
    std::vector<std::shared_ptr<Domain>> domains;
    {
      MutexLock lock(&domains_mu_);
      stats.domains = domains_.size();
      for (const auto& [id, domain] : domains_) domains.push_back(domain);
    }
    for (const auto& domain : domains) {
      MutexLock lock(&domain->mu);
      stats.iotlb_entries += domain->iotlb.size();
    }
    std::vector<Unit*> units;
    {
      MutexLock lock(&units_mu_);
      for (const auto& [name, unit] : units_) units.push_back(unit.get());
    }
    for (Unit* unit : units) {
      MutexLock lock(&unit->mu);
      stats.programmed_rids += unit->rids.size();
    }
    stats.page_table_pages = table_pages_.load();
    return stats;
  }

 private:
  static absl::Status BadRid(const Unit& unit, Rid rid) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kRidOutOfRange,
                 absl::StrCat("RID ", rid, " is beyond unit '", unit.name, "' max_rids ",
                              unit.caps.max_rids),
                 {{"unit", unit.name}, {"rid", absl::StrCat(rid)}});
  }

  static absl::Status UnitNotFound(absl::string_view unit) {
    return Error(absl::StatusCode::kNotFound, reason::kUnitNotFound,
                 absl::StrCat("no unit '", unit, "' in the hardware"),
                 {{"unit", std::string(unit)}});
  }
  static absl::Status DomainNotFound(DomainId id) {
    return Error(absl::StatusCode::kNotFound, reason::kDomainNotFound,
                 absl::StrCat("no domain ", id, " in the hardware"),
                 {{"domain_id", absl::StrCat(id)}});
  }
  static absl::Status NotPaging(const Domain& domain) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kDomainNotPaging,
                 absl::StrCat("domain ", domain.id, " is ", DomainTypeName(domain.type)),
                 {{"domain_id", absl::StrCat(domain.id)}});
  }

  Unit* FindUnit(absl::string_view name) const {
    MutexLock lock(&units_mu_);
    auto it = units_.find(std::string(name));
    return it == units_.end() ? nullptr : it->second.get();  // units are never removed
  }
  std::shared_ptr<Domain> FindDomain(DomainId id) const {
    MutexLock lock(&domains_mu_);
    auto it = domains_.find(id);
    return it == domains_.end() ? nullptr : it->second;
  }
  void DropRef(DomainId id) {
    if (std::shared_ptr<Domain> domain = FindDomain(id)) domain->rid_refs.fetch_sub(1);
  }
  Translation Fault(absl::string_view unit, Rid rid, uint64_t iova, uint32_t access,
                    FaultReason reason, DomainId domain) {
    FaultRecord record;
    record.unit = std::string(unit);
    record.rid = rid;
    record.iova = iova;
    record.access = access;
    record.reason = reason;
    record.time_unix_nanos = absl::ToUnixNanos(absl::Now());
    {
      MutexLock lock(&faults_mu_);
      faults_.push_back(std::move(record));
      while (faults_.size() > fault_capacity_) faults_.pop_front();
    }
    Translation translation;
    translation.fault = reason;
    translation.domain = domain;
    return translation;
  }

  const size_t iotlb_capacity_;
  const size_t fault_capacity_;
  FaultInjector* const injector_;  // not owned; may be null: the page tables' pgtable.alloc
  std::atomic<uint64_t> table_pages_{0};
  mutable absl::Mutex units_mu_;
  std::map<std::string, std::unique_ptr<Unit>> units_ ABSL_GUARDED_BY(units_mu_);
  mutable absl::Mutex domains_mu_;
  absl::flat_hash_map<DomainId, std::shared_ptr<Domain>> domains_ ABSL_GUARDED_BY(domains_mu_);
  absl::Mutex faults_mu_;
  std::deque<FaultRecord> faults_ ABSL_GUARDED_BY(faults_mu_);
};

absl::StatusOr<size_t> ParseCapacity(const BackendOptions& options, const std::string& key,
                                     size_t fallback) {
  auto it = options.find(key);
  if (it == options.end()) return fallback;
  size_t value = 0;
  if (!absl::SimpleAtoi(it->second, &value) || value == 0) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidBackendOption,
                 absl::StrCat("software backend option ", key, "=", it->second,
                              ": expected a positive integer"),
                 {{"option", key}});
  }
  return value;
}

}  // namespace

absl::StatusOr<std::unique_ptr<IommuBackend>> NewSoftwareBackend(const BackendOptions& options,
                                                                 FaultInjector* faults) {
  for (const auto& [key, value] : options) {
    if (key != "iotlb_entries" && key != "fault_queue") {
      return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidBackendOption,
                   absl::StrCat("the software backend has no option '", key, "'"),
                   {{"option", key}});
    }
  }
  absl::StatusOr<size_t> iotlb = ParseCapacity(options, "iotlb_entries", 4096);
  if (!iotlb.ok()) return iotlb.status();
  absl::StatusOr<size_t> queue = ParseCapacity(options, "fault_queue", 4096);
  if (!queue.ok()) return queue.status();
  return std::unique_ptr<IommuBackend>(new SoftwareBackend(*iotlb, *queue, faults));
}

}  // namespace iommud

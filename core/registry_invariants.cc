// Registry::CheckInvariants: the registry against itself and against the hardware's read-back.
#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/group_lock.h"
#include "core/registry.h"
#include "core/registry_state.h"
#include "core/sync.h"

namespace iommud {

namespace {

std::string Hex(uint64_t value) { return absl::StrCat("0x", absl::Hex(value)); }

}  // namespace

void CheckMappings(DomainId id, const std::vector<Mapping>& registered,
                   const std::vector<Mapping>& leaves, std::vector<InvariantViolation>* out) {
  size_t leaf = 0;
  for (const Mapping& mapping : registered) {
    uint64_t covered = 0;
    while (leaf < leaves.size() && leaves[leaf].iova < mapping.iova) {
      out->push_back({absl::StrCat("domain ", id, ": page-table leaf at ", Hex(leaves[leaf].iova),
                                   " belongs to no mapping")});
      ++leaf;
    }
    while (covered < mapping.size && leaf < leaves.size() &&
           leaves[leaf].iova == mapping.iova + covered) {
      const Mapping& page = leaves[leaf];
      if (page.paddr != mapping.paddr + covered || page.prot != mapping.prot) {
        out->push_back({absl::StrCat("domain ", id, ": leaf ", Hex(page.iova), " -> ",
                                     Hex(page.paddr), " prot ", page.prot, ", mapping says ",
                                     Hex(mapping.paddr + covered), " prot ", mapping.prot)});
      }
      covered += page.size;
      ++leaf;
    }
    if (covered != mapping.size) {
      out->push_back({absl::StrCat("domain ", id, ": mapping [", Hex(mapping.iova), ", +",
                                   Hex(mapping.size), ") has ", Hex(covered),
                                   " bytes in the page table")});
    }
  }
  for (; leaf < leaves.size(); ++leaf) {
    out->push_back({absl::StrCat("domain ", id, ": page-table leaf at ", Hex(leaves[leaf].iova),
                                 " belongs to no mapping")});
  }
}

std::vector<InvariantViolation> Registry::CheckInvariants() const {
  std::vector<InvariantViolation> violations;
  auto violation = [&](std::string what) { violations.push_back({std::move(what)}); };

  std::vector<std::shared_ptr<UnitState>> units;
  std::vector<std::shared_ptr<GroupState>> groups;
  std::vector<std::shared_ptr<DomainState>> domains;
  {
    MapReaderLock lock(&state_->map_mu, state_->observer());
    for (const auto& [name, unit] : state_->units) units.push_back(unit);
    for (const auto& [id, group] : state_->groups) groups.push_back(group);
    for (const auto& [id, domain] : state_->domains) domains.push_back(domain);
  }

  // Groups: devices, owner_cnt, and every RID programmed to the group's domain.
  std::set<std::pair<std::string, Rid>> live_rids;
  std::set<std::pair<DomainId, GroupId>> group_attachments;
  for (const auto& group : groups) {
    GroupLock lock(&group->mu, &group->lock_stats, state_->observer());
    if (!State::LiveGroup(*group).ok()) continue;
    const std::string& unit = group->unit->name;
    if (group->devices.empty()) violation(absl::StrCat("group ", group->id, " is live but empty"));
    if (group->domain == nullptr) {
      violation(absl::StrCat("group ", group->id, " has no domain"));
      continue;
    }
    group_attachments.insert({group->domain->id, group->id});
    uint32_t accounted = group->group_claimed ? 1 : 0;
    for (const auto& device : group->devices) {
      if (!device->live.load()) violation(absl::StrCat("device '", device->name, "' is not live"));
      if (device->group != group) {
        violation(absl::StrCat("device '", device->name, "' is listed in the wrong group"));
      }
      if (device->binding == DriverBinding::kKernelDriver) ++accounted;
    }
    accounted += group->claimed_devices.size();
    for (const std::string& name : group->attached_devices) {
      if (std::none_of(group->devices.begin(), group->devices.end(),
                       [&](const auto& device) { return device->name == name; })) {
        violation(absl::StrCat("group ", group->id, ": attached device '", name,
                               "' is not in the group"));
      }
    }
    if (group->domain->core_owned != group->attached_devices.empty()) {
      violation(absl::StrCat("group ", group->id, " is on ",
                             group->domain->core_owned ? "a core" : "a user", " domain ",
                             group->domain->id, " with ", group->attached_devices.size(),
                             " attached devices"));
    }
    if (accounted != group->owner_cnt) {
      violation(absl::StrCat("group ", group->id, ": owner_cnt ", group->owner_cnt, " but ",
                             accounted, " bound drivers and claims"));
    }
    if (group->owner_cnt == 0 && !group->owner.empty()) {
      violation(absl::StrCat("group ", group->id, " has owner '", group->owner,
                             "' but owner_cnt 0"));
    }
    // A group handed over to a VMM stays on its default domain in the registry: the kernel keeps
    // it there until the VMM sets its own container, which iommud does not know.
    if (!group->owner.empty() && group->domain == group->default_domain && !group->handed_over) {
      violation(absl::StrCat("group ", group->id, " is owned but on its default domain"));
    }
    if (group->owner.empty() && group->domain != group->default_domain) {
      violation(absl::StrCat("group ", group->id, " is not owned but on domain ",
                             group->domain->id, ", not its default ", group->default_domain->id));
    }
    for (Rid rid : State::GroupRids(*group)) {
      live_rids.insert({unit, rid});
      absl::StatusOr<RidEntry> entry = backend()->ReadRid(unit, rid);
      if (!entry.ok()) {
        violation(absl::StrCat("unit ", unit, " RID ", rid, ": read-back failed: ",
                               entry.status().ToString()));
      } else if (entry->domain != group->domain->id) {
        violation(absl::StrCat("unit ", unit, " RID ", rid, " of group ", group->id,
                               " points at domain ", entry->domain, ", the registry says ",
                               group->domain->id));
      }
    }
  }

  // Hardware RIDs that no live device accounts for (a released device's RID that still translates).
  for (const auto& unit : units) {
    absl::StatusOr<std::vector<RidEntry>> entries = backend()->ReadRids(unit->name);
    if (!entries.ok()) {
      violation(absl::StrCat("unit ", unit->name, ": RID read-back failed: ",
                             entries.status().ToString()));
      continue;
    }
    for (const RidEntry& entry : *entries) {
      if (live_rids.count({unit->name, entry.rid}) == 0) {
        violation(absl::StrCat("unit ", unit->name, " RID ", entry.rid,
                               " has a valid entry (domain ", entry.domain,
                               ") but no device uses it"));
      }
    }
  }

  // Domains: attachments agree with the groups; the hardware has exactly these domains; mappings.
  std::set<DomainId> registry_domains;
  for (const auto& domain : domains) {
    registry_domains.insert(domain->id);
    std::vector<Mapping> registered;
    {
      ReaderMutexLock lock(&domain->mu);
      if (domain->freed) violation(absl::StrCat("domain ", domain->id, " is freed but listed"));
      for (GroupId group : domain->attached_groups) {
        if (group_attachments.count({domain->id, group}) == 0) {
          violation(absl::StrCat("domain ", domain->id, " lists group ", group,
                                 " which is not on it"));
        }
      }
      registered = domain->mappings.All();
    }
    if (!IsPaging(domain->type)) {
      if (!registered.empty()) {
        violation(absl::StrCat("domain ", domain->id, " is not paging but has mappings"));
      }
      continue;
    }
    absl::StatusOr<std::vector<Mapping>> leaves = backend()->ReadMappings(domain->id);
    if (!leaves.ok()) {
      violation(absl::StrCat("domain ", domain->id, ": page-table read-back failed: ",
                             leaves.status().ToString()));
      continue;
    }
    CheckMappings(domain->id, registered, *leaves, &violations);
  }
  for (const auto& [domain, group] : group_attachments) {
    if (registry_domains.count(domain) == 0) {
      violation(absl::StrCat("group ", group, " is on domain ", domain, " which is not listed"));
      continue;
    }
  }
  for (const auto& domain : domains) {
    ReaderMutexLock lock(&domain->mu);
    for (const auto& [domain_id, group] : group_attachments) {
      if (domain_id == domain->id && domain->attached_groups.count(group) == 0) {
        violation(absl::StrCat("group ", group, " is on domain ", domain->id,
                               " but the domain does not list it"));
      }
    }
  }
  const std::vector<DomainId> hardware_domains = backend()->ReadDomains();
  for (DomainId id : hardware_domains) {
    if (registry_domains.count(id) == 0) {
      violation(absl::StrCat("the hardware has domain ", id, " which the registry does not know"));
    }
  }
  for (DomainId id : registry_domains) {
    if (!std::binary_search(hardware_domains.begin(), hardware_domains.end(), id)) {
      violation(absl::StrCat("domain ", id, " is missing from the hardware"));
    }
  }
  return violations;
}

}  // namespace iommud

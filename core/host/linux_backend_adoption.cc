// LinuxBackend: adoption of the groups and containers a previous process kept in the FdKeeper
// (see FinishAdoption in linux_backend.h).
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/host/linux_backend.h"
#include "core/status_macros.h"
#include "core/sync.h"

namespace iommud {
namespace host {

absl::Status LinuxBackend::ConfirmAdopted(GroupRecord& group,
                                          const std::shared_ptr<DomainRecord>& domain) {
  group.adopting = false;
  group.adopted = true;
  absl::StatusOr<bool> in_container = group.vfio->HasContainer();
  if (!in_container.ok()) return in_container.status();
  if (*in_container && StateFor(*domain) == GroupState::kAttached) {
    MutexLock lock(&domain->mu);
    if (domain->adopted) {  // kept as it is: ownership, container, mappings
      domain->attached_groups.insert(group.id);
      group.container_domain = domain;
      group.state = GroupState::kAttached;
      SyncAdopted(*domain);
      return absl::OkStatus();
    }
  }
  if (*in_container) {
    // In a container the registry does not put it in (a move the store never acknowledged, or
    // a container not kept): out of it; the ordinary path takes it from kClaimed.
    absl::Status left = group.vfio->UnsetContainer();
    if (!left.ok() && left.code() != absl::StatusCode::kInvalidArgument) return left;
  }
  group.state = GroupState::kClaimed;
  return absl::OkStatus();
}

void LinuxBackend::SyncAdopted(DomainRecord& domain) {
  if (!domain.adopted || domain.synced) return;
  domain.synced = true;
  uint32_t iova_bits = 39;
  for (const HostUnit& unit : topology_.units) {
    if (unit.name == domain.unit) iova_bits = unit.caps.iova_bits;
  }
  const uint64_t end = iova_bits >= 64 ? ~uint64_t{0} - kPage4K + 1 : uint64_t{1} << iova_bits;
  // 1. What the kernel maps outside the shadow never was acknowledged: unmap every gap.
  uint64_t swept = 0;
  std::vector<std::string> problems;
  std::vector<std::pair<uint64_t, uint64_t>> gaps;  // [from, to)
  uint64_t cursor = 0;
  for (const auto& [iova, mapping] : domain.mappings) {
    if (iova > cursor) gaps.emplace_back(cursor, iova);
    cursor = iova + mapping.size;
  }
  if (end > cursor) gaps.emplace_back(cursor, end);
  for (const auto& [from, to] : gaps) {
    absl::StatusOr<uint64_t> unmapped = domain.container->Unmap(from, to - from);
    if (unmapped.ok()) {
      swept += *unmapped;
    } else {
      problems.push_back(absl::StrCat("unmapping [0x", absl::Hex(from), ", 0x", absl::Hex(to),
                                      ") failed: ", unmapped.status().message()));
    }
  }
  // 2. Every acknowledged mapping into the kernel: EEXIST = kept, mapped now = the kernel lost it.
  size_t kept = 0;
  size_t remapped = 0;
  for (const auto& [iova, mapping] : domain.mappings) {
    absl::Status mapped = MapIntoContainer(domain, iova, mapping);
    if (mapped.code() == absl::StatusCode::kAlreadyExists) {
      ++kept;
    } else if (mapped.ok()) {
      ++remapped;
    } else {
      problems.push_back(absl::StrCat("mapping IOVA 0x", absl::Hex(iova), " failed: ",
                                      mapped.message()));
    }
  }
  domain.sync_report =
      absl::StrCat("domain ", domain.id, ": ", kept, " mappings kept by the kernel",
                   remapped == 0 ? "" : absl::StrCat(", ", remapped, " re-made"),
                   swept == 0 ? "" : absl::StrCat(", ", swept, " unacknowledged bytes unmapped"));
  for (const std::string& problem : problems) absl::StrAppend(&domain.sync_report, "; ", problem);
}

std::vector<RecoveredGroup> LinuxBackend::FinishAdoption() {
  std::vector<RecoveredGroup> outcomes;
  for (const auto& [id, group] : groups_) {
    MutexLock lock(&group->mu);
    if (!group->adopting && !group->adopted) continue;
    RecoveredGroup outcome;
    outcome.group = id;
    for (const DriverBinding& binding : group->bindings) outcome.devices.push_back(binding.device);
    if (group->adopting) {  // kept, but no acknowledged call of the registry holds it
      group->state = GroupState::kClaimed;
      outcome.status = GiveBack(*group);
      outcome.outcome = outcome.status.ok() ? RecoveredGroup::Outcome::kRestored
                                            : RecoveredGroup::Outcome::kRestoreFailed;
      outcome.detail = absl::StrCat(
          "group ", id, " was kept in the fd store, but no acknowledged call holds it (the "
          "previous iommud died inside the claim or its release): given back to its drivers",
          outcome.status.ok() ? "" : absl::StrCat(", which failed: ", outcome.status.message()));
      outcomes.push_back(std::move(outcome));
      continue;
    }
    group->adopted = false;
    outcome.outcome = RecoveredGroup::Outcome::kAdopted;
    outcome.detail = absl::StrCat("group ", id, " adopted from the fd store: still claimed");
    if (group->state == GroupState::kAttached) {
      std::shared_ptr<DomainRecord> domain = group->container_domain;
      std::string report;
      {
        MutexLock domain_lock(&domain->mu);
        report = domain->sync_report;
      }
      absl::StrAppend(&outcome.detail, ", in the container of ", report);
      outcome.repaired = report.find("re-made") != std::string::npos ||
                         report.find("unmapped") != std::string::npos ||
                         report.find("failed") != std::string::npos;
    }
    outcomes.push_back(std::move(outcome));
  }
  return outcomes;
}

}  // namespace host
}  // namespace iommud

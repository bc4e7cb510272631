// Registry: the hand-over of a group to a VMM that opens VFIO itself (docs/semantics.md "Hand-over
// to a VMM"): HandOverGroup's and ReleaseOwnership's host side, the refusals while handed over, and
// the audit of hand-overs.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/registry.h"
#include "core/registry_state.h"
#include "core/status_macros.h"
#include "core/group_lock.h"

namespace iommud {

namespace {

ErrorMetadata HandoverMetadata(const GroupState& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu) {
  return {{"group_id", absl::StrCat(group.id)},
          {"owner", group.owner},
          {"uid", absl::StrCat(group.handover_uid)},
          {"gid", absl::StrCat(group.handover_gid)}};
}

// The RID the backend is told about: any RID of the group names its kernel group.
Rid GroupRid(const GroupState& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu) {
  const std::vector<Rid> rids = Registry::State::GroupRids(group);
  return rids.empty() ? 0 : rids.front();
}

}  // namespace

absl::Status RequireNotHandedOver(const GroupState& group, absl::string_view doing) {
  if (!group.handed_over) return absl::OkStatus();
  return Error(absl::StatusCode::kFailedPrecondition, reason::kGroupHandedOver,
               absl::StrCat("group ", group.id, " is handed over to uid ", group.handover_uid,
                            " (its VMM owns the VFIO container): it cannot be ", doing,
                            " until ReleaseOwnership takes it back"),
               HandoverMetadata(group));
}

absl::StatusOr<GroupInfo> HandOverLocked(Registry::State& state, CallContext& call,
                                         GroupState& group, absl::string_view owner, uint32_t uid,
                                         uint32_t gid) {
  const std::string& unit = group.unit->name;
  const Rid rid = GroupRid(group);
  absl::Status handed = state.Backend(call).HandOverGroup(unit, rid, uid, gid);
  if (!handed.ok()) {
    return BackendError(handed, "hand_over",
                        {{"group_id", absl::StrCat(group.id)}, {"uid", absl::StrCat(uid)}});
  }
  const GroupUndo undo = Registry::State::SaveGroup(group);
  group.owner = std::string(owner);
  group.owner_cnt = 1;
  group.group_claimed = true;
  group.handed_over = true;
  group.handover_uid = uid;
  group.handover_gid = gid;
  for (const auto& device : group.devices) device->binding = DriverBinding::kUserOwned;
  absl::Status committed = state.CommitGroup(call, group, undo);
  if (!committed.ok()) {
    // Nobody was told of the hand-over yet: take it back regardless of holders.
    (void)TwiceIfNeeded(
        [&] { return state.Backend(call).TakeBackGroup(unit, rid, /*force=*/true); });
    return committed;
  }
  return Registry::State::SnapshotGroup(group);
}

absl::StatusOr<GroupInfo> TakeBackLocked(Registry::State& state, CallContext& call,
                                         GroupState& group, bool force) {
  absl::Status taken = state.Backend(call).TakeBackGroup(group.unit->name, GroupRid(group), force);
  if (!taken.ok()) return BackendError(taken, "take_back", HandoverMetadata(group));
  group.handed_over = false;
  group.handover_uid = 0;
  group.handover_gid = 0;
  state.EndOwnership(call, group);
  StoreBatch batch;
  Registry::State::AddGroup(group, &batch);
  state.CommitOrCount(call, std::move(batch));  // the host already has the group back
  return Registry::State::SnapshotGroup(group);
}

void AppendHandoverLeaks(const Registry::State& state, std::vector<LeakRecord>* leaks) {
  for (const HandoverLeak& leak : state.backend()->AuditHandovers()) {
    LeakRecord record{leak.kind == HandoverLeak::Kind::kHeldByOtherUid
                          ? LeakReason::kHandoverHeldByOtherUid
                          : LeakReason::kHeldAfterTakeBack,
                      leak.unit, 0, 0, leak.rid, "", ""};
    record.detail = leak.detail;
    {
      MapReaderLock lock(&state.map_mu, state.observer());
      auto it = state.rid_owners.find({leak.unit, leak.rid});
      if (it != state.rid_owners.end() && it->second.group != nullptr) {
        record.group = it->second.group->id;
      }
    }
    leaks->push_back(std::move(record));
  }
}

}  // namespace iommud

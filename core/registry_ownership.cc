// Registry: DMA ownership, docs/semantics.md "Ownership" (iommu_device_use_default_domain,
// iommu_group_claim_dma_owner, iommu_device_claim_dma_owner and their releases).
#include <string>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/fault_injector.h"
#include "core/group_lock.h"
#include "core/registry.h"
#include "core/registry_state.h"
#include "core/status_macros.h"

namespace iommud {

namespace {

absl::Status RequireOwnerCookie(absl::string_view owner, const ErrorMetadata& metadata) {
  if (!owner.empty()) return absl::OkStatus();
  return Error(absl::StatusCode::kInvalidArgument, reason::kMissingOwner,
               "an owner cookie (the claiming client's identity) is required", metadata);
}

ErrorMetadata GroupMetadata(const GroupState& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu) {
  return {{"group_id", absl::StrCat(group.id)},
          {"domain_id", absl::StrCat(group.domain->id)},
          {"owner_cnt", absl::StrCat(group.owner_cnt)}};
}

// The group must be on its default domain to be claimed (EBUSY in the kernel).
absl::Status RequireOnDefault(const GroupState& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu) {
  if (group.domain == group.default_domain) return absl::OkStatus();
  return Error(absl::StatusCode::kFailedPrecondition, reason::kGroupBusy,
               absl::StrCat("group ", group.id, " is on domain ", group.domain->id,
                            ", not its default domain ", group.default_domain->id),
               GroupMetadata(group));
}

void EmitOwnership(const Registry::State& state, const GroupState& group,
                   RegistryEvent::Kind kind, absl::string_view owner, absl::string_view device)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu) {
  RegistryEvent event;
  event.kind = kind;
  event.unit = group.unit->name;
  event.group = group.id;
  event.domain = group.domain->id;
  event.owner = std::string(owner);
  event.device = std::string(device);
  state.Emit(event);
}

}  // namespace

absl::Status RequireGroupOwner(const GroupState& group, absl::string_view owner) {
  if (group.owner.empty()) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kGroupNotOwned,
                 absl::StrCat("group ", group.id, " is not owned"), GroupMetadata(group));
  }
  if (group.owner != owner) {
    ErrorMetadata metadata = GroupMetadata(group);
    metadata["owner"] = std::string(owner);
    return Error(absl::StatusCode::kPermissionDenied, reason::kNotOwner,
                 absl::StrCat("group ", group.id, " is owned by another client"), metadata);
  }
  return absl::OkStatus();
}

absl::StatusOr<GroupInfo> Registry::UseDefaultDomain(absl::string_view name, CallContext* context) {
  CallContext own_call;  // the caller passed none
  CallContext& call = context != nullptr ? *context : own_call;
  ASSIGN_OR_RETURN(std::shared_ptr<DeviceState> device, state_->FindDevice(name));
  GroupState& group = *device->group;
  GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
  FaultScopeGuard fault_scope(call, group.id, device->name);
  RETURN_IF_ERROR(State::LiveDevice(group, *device));
  ErrorMetadata metadata = GroupMetadata(group);
  metadata["device"] = device->name;
  if (!group.owner.empty() || group.domain != group.default_domain) {
    metadata["owner"] = group.owner;
    return Error(absl::StatusCode::kFailedPrecondition, reason::kGroupOwned,
                 absl::StrCat("group ", group.id, " of '", name,
                              "' is owned or off its default domain; a kernel driver cannot bind"),
                 metadata);
  }
  if (device->binding == DriverBinding::kKernelDriver) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kDriverAlreadyBound,
                 absl::StrCat("'", name, "' already has a kernel driver bound"), metadata);
  }
  const GroupUndo undo = State::SaveGroup(group);
  device->binding = DriverBinding::kKernelDriver;
  ++group.owner_cnt;
  RETURN_IF_ERROR(state_->CommitGroup(call, group, undo));
  return State::SnapshotGroup(group);
}

absl::StatusOr<GroupInfo> Registry::UnuseDefaultDomain(absl::string_view name,
                                                       CallContext* context) {
  CallContext own_call;  // the caller passed none
  CallContext& call = context != nullptr ? *context : own_call;
  ASSIGN_OR_RETURN(std::shared_ptr<DeviceState> device, state_->FindDevice(name));
  GroupState& group = *device->group;
  GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
  FaultScopeGuard fault_scope(call, group.id, device->name);
  RETURN_IF_ERROR(State::LiveDevice(group, *device));
  ErrorMetadata metadata = GroupMetadata(group);
  metadata["device"] = device->name;
  if (device->binding != DriverBinding::kKernelDriver) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kDriverNotBound,
                 absl::StrCat("'", name, "' has no kernel driver bound"), metadata);
  }
  if (group.owner_cnt == 0) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kOwnerCountUnderflow,
                 absl::StrCat("group ", group.id, " owner_cnt is already 0"), metadata);
  }
  const GroupUndo undo = State::SaveGroup(group);
  device->binding = DriverBinding::kNone;
  --group.owner_cnt;
  RETURN_IF_ERROR(state_->CommitGroup(call, group, undo));
  return State::SnapshotGroup(group);
}

absl::StatusOr<GroupInfo> Registry::ClaimOwnership(GroupId id, absl::string_view owner,
                                                   absl::Duration lease_ttl, CallContext* context) {
  CallContext own_call;  // the caller passed none
  CallContext& call = context != nullptr ? *context : own_call;
  RETURN_IF_ERROR(RequireOwnerCookie(owner, {{"group_id", absl::StrCat(id)}}));
  if (lease_ttl != absl::ZeroDuration()) {
    RETURN_IF_ERROR(CheckLeaseTtl(lease_ttl, {{"group_id", absl::StrCat(id)}}));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<GroupState> group_ptr, state_->FindGroup(id));
  GroupState& group = *group_ptr;
  GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
  FaultScopeGuard fault_scope(call, group.id, "");
  RETURN_IF_ERROR(State::LiveGroup(group));
  if (group.owner_cnt != 0) {
    ErrorMetadata metadata = GroupMetadata(group);
    metadata["owner"] = group.owner;
    return Error(absl::StatusCode::kFailedPrecondition, reason::kGroupInUse,
                 absl::StrCat("group ", id, " is in use (owner_cnt ", group.owner_cnt, ")"),
                 metadata);
  }
  RETURN_IF_ERROR(RequireOnDefault(group));
  RETURN_IF_ERROR(State::RequireNoDirectDevice(group, "claimed for user ownership"));
  const GroupUndo undo = State::SaveGroup(group);
  RETURN_IF_ERROR(state_->SwitchGroupDomain(call, group, group.blocking_domain));
  group.owner = std::string(owner);
  group.owner_cnt = 1;
  group.group_claimed = true;
  for (const auto& device : group.devices) device->binding = DriverBinding::kUserOwned;
  if (lease_ttl != absl::ZeroDuration()) {
    State::SetLease(group, state_->clock()->Now() + lease_ttl, lease_ttl);
  }
  RETURN_IF_ERROR(state_->CommitGroup(call, group, undo));
  EmitOwnership(*state_, group, RegistryEvent::Kind::kOwnershipClaimed, owner, "");
  return State::SnapshotGroup(group);
}

absl::StatusOr<GroupInfo> Registry::ReleaseOwnership(GroupId id, absl::string_view owner,
                                                     bool force, CallContext* context) {
  CallContext own_call;  // the caller passed none
  CallContext& call = context != nullptr ? *context : own_call;
  ASSIGN_OR_RETURN(std::shared_ptr<GroupState> group_ptr, state_->FindGroup(id));
  GroupState& group = *group_ptr;
  GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
  FaultScopeGuard fault_scope(call, group.id, "");
  RETURN_IF_ERROR(State::LiveGroup(group));
  RETURN_IF_ERROR(RequireGroupOwner(group, owner));
  if (group.handed_over) {
    ASSIGN_OR_RETURN(GroupInfo info, TakeBackLocked(*state_, call, group, force));
    EmitOwnership(*state_, group, RegistryEvent::Kind::kOwnershipReleased, owner, "");
    return info;
  }
  const GroupUndo undo = State::SaveGroup(group);
  state_->EndOwnership(call, group);
  RETURN_IF_ERROR(state_->CommitGroup(call, group, undo));
  EmitOwnership(*state_, group, RegistryEvent::Kind::kOwnershipReleased, owner, "");
  return State::SnapshotGroup(group);
}

absl::StatusOr<GroupInfo> Registry::HandOverGroup(GroupId id, absl::string_view owner, uint32_t uid,
                                                  uint32_t gid, CallContext* context) {
  CallContext own_call;  // the caller passed none
  CallContext& call = context != nullptr ? *context : own_call;
  RETURN_IF_ERROR(RequireOwnerCookie(owner, {{"group_id", absl::StrCat(id)}}));
  ASSIGN_OR_RETURN(std::shared_ptr<GroupState> group_ptr, state_->FindGroup(id));
  GroupState& group = *group_ptr;
  GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
  FaultScopeGuard fault_scope(call, group.id, "");
  RETURN_IF_ERROR(State::LiveGroup(group));
  if (group.owner_cnt != 0) {
    ErrorMetadata metadata = GroupMetadata(group);
    metadata["owner"] = group.owner;
    return Error(absl::StatusCode::kFailedPrecondition, reason::kGroupInUse,
                 absl::StrCat("group ", id, " is in use (owner_cnt ", group.owner_cnt, ")"),
                 metadata);
  }
  RETURN_IF_ERROR(RequireOnDefault(group));
  RETURN_IF_ERROR(State::RequireNoDirectDevice(group, "handed over for user ownership"));
  ASSIGN_OR_RETURN(GroupInfo info, HandOverLocked(*state_, call, group, owner, uid, gid));
  EmitOwnership(*state_, group, RegistryEvent::Kind::kOwnershipClaimed, owner, "");
  return info;
}

absl::StatusOr<GroupInfo> Registry::ClaimDevice(absl::string_view name, absl::string_view owner,
                                                CallContext* context) {
  CallContext own_call;  // the caller passed none
  CallContext& call = context != nullptr ? *context : own_call;
  RETURN_IF_ERROR(RequireOwnerCookie(owner, {{"device", std::string(name)}}));
  ASSIGN_OR_RETURN(std::shared_ptr<DeviceState> device, state_->FindDevice(name));
  GroupState& group = *device->group;
  GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
  FaultScopeGuard fault_scope(call, group.id, device->name);
  RETURN_IF_ERROR(State::LiveDevice(group, *device));
  ErrorMetadata metadata = GroupMetadata(group);
  metadata["device"] = device->name;
  if (group.owner_cnt != 0 && group.owner != owner) {
    metadata["owner"] = group.owner;
    return Error(absl::StatusCode::kFailedPrecondition, reason::kGroupInUse,
                 absl::StrCat("group ", group.id, " of '", name,
                              "' is in use by a kernel driver or another owner"),
                 metadata);
  }
  RETURN_IF_ERROR(RequireNotHandedOver(group, "claimed device by device"));
  if (group.claimed_devices.count(device->name) != 0) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kDeviceAlreadyClaimed,
                 absl::StrCat("'", name, "' is already claimed by this owner"), metadata);
  }
  const GroupUndo undo = State::SaveGroup(group);
  if (group.owner_cnt == 0) {
    RETURN_IF_ERROR(RequireOnDefault(group));
    RETURN_IF_ERROR(State::RequireNoDirectDevice(group, "claimed for user ownership"));
    RETURN_IF_ERROR(state_->SwitchGroupDomain(call, group, group.blocking_domain));
    group.owner = std::string(owner);
  }
  ++group.owner_cnt;
  group.claimed_devices.insert(device->name);
  device->binding = DriverBinding::kUserOwned;
  RETURN_IF_ERROR(state_->CommitGroup(call, group, undo));
  EmitOwnership(*state_, group, RegistryEvent::Kind::kOwnershipClaimed, owner, device->name);
  return State::SnapshotGroup(group);
}

absl::StatusOr<GroupInfo> Registry::ReleaseDeviceOwnership(absl::string_view name,
                                                           absl::string_view owner,
                                                           CallContext* context) {
  CallContext own_call;  // the caller passed none
  CallContext& call = context != nullptr ? *context : own_call;
  ASSIGN_OR_RETURN(std::shared_ptr<DeviceState> device, state_->FindDevice(name));
  GroupState& group = *device->group;
  GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
  FaultScopeGuard fault_scope(call, group.id, device->name);
  RETURN_IF_ERROR(State::LiveDevice(group, *device));
  if (group.claimed_devices.count(device->name) == 0) {
    ErrorMetadata metadata = GroupMetadata(group);
    metadata["device"] = device->name;
    return Error(absl::StatusCode::kFailedPrecondition, reason::kDeviceNotClaimed,
                 absl::StrCat("'", name, "' is not claimed"), metadata);
  }
  RETURN_IF_ERROR(RequireGroupOwner(group, owner));
  const GroupUndo undo = State::SaveGroup(group);
  // iommufd_device_unbind: the device is detached before its claim ends, under the same rules as
  // DetachDevice (a non-last attached device only leaves; the last returns the group to its
  // blocking domain). When this is the owner's last claim, EndOwnership below moves the whole
  // group to its default domain anyway.
  const DomainId attached_domain = group.domain->id;
  const bool was_attached = group.attached_devices.erase(device->name) != 0;
  const bool last_claim = group.owner_cnt == 1;
  const bool group_detached = was_attached && !last_claim && group.attached_devices.empty();
  if (group_detached) {
    if (absl::Status detached = state_->SwitchGroupDomain(call, group, group.blocking_domain);
        !detached.ok()) {
      group.attached_devices = undo.attached_devices;
      return detached;
    }
  }
  group.claimed_devices.erase(device->name);
  device->binding = DriverBinding::kNone;
  if (--group.owner_cnt == 0) state_->EndOwnership(call, group);
  RETURN_IF_ERROR(state_->CommitGroup(call, group, undo));
  if (was_attached && !last_claim) {
    RegistryEvent event;
    event.kind = RegistryEvent::Kind::kDetached;
    event.unit = group.unit->name;
    event.group = group.id;
    event.domain = attached_domain;
    event.device = device->name;
    event.owner = std::string(owner);
    event.detail = group_detached ? "claim released; last device: group detached"
                                  : "claim released; the group stays attached";
    state_->Emit(event);
  }
  EmitOwnership(*state_, group, RegistryEvent::Kind::kOwnershipReleased, owner, device->name);
  return State::SnapshotGroup(group);
}

}  // namespace iommud

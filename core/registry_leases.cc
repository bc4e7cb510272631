// Registry: ownership leases (docs/semantics.md "Leases": an owner's claims tied to its liveness).
// A group claim may carry a TTL; the owner renews it; once the clock passes the expiry,
// ExpireLeases releases the ownership exactly as ReleaseOwnership does and records the expiry.
// Expiry is wall-clock time from RegistryOptions::clock, committed with the group (GroupRecord),
// so it survives a restart.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/fault_injector.h"
#include "core/group_lock.h"
#include "core/registry.h"
#include "core/registry_state.h"
#include "core/status_macros.h"

namespace iommud {

namespace {

std::string FormatExpiry(absl::Time expiry) {
  return absl::FormatTime(absl::RFC3339_full, expiry, absl::UTCTimeZone());
}

ErrorMetadata LeaseMetadata(const GroupState& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(group.mu) {
  return {{"group_id", absl::StrCat(group.id)},
          {"owner", group.owner},
          {"lease_expiry", FormatExpiry(group.lease_expiry)}};
}

void EmitExpiry(const Registry::State& state, const ExpiredLease& lease,
                absl::Duration ttl) {
  RegistryEvent expired;
  expired.kind = RegistryEvent::Kind::kLeaseExpired;
  expired.unit = lease.unit;
  expired.group = lease.group;
  expired.domain = lease.domain;
  expired.owner = lease.owner;
  expired.lease_expiry_unix_nanos = absl::ToUnixNanos(lease.expiry);
  expired.detail = absl::StrCat("lease of '", lease.owner, "' (ttl ", absl::FormatDuration(ttl),
                                ") expired at ", FormatExpiry(lease.expiry),
                                "; ownership released");
  state.Emit(expired);
}

}  // namespace

absl::Status CheckLeaseTtl(absl::Duration ttl, ErrorMetadata metadata) {
  if (ttl >= kMinLeaseTtl && ttl <= kMaxLeaseTtl) return absl::OkStatus();
  metadata["lease_ttl"] = absl::FormatDuration(ttl);
  metadata["min"] = absl::FormatDuration(kMinLeaseTtl);
  metadata["max"] = absl::FormatDuration(kMaxLeaseTtl);
  return Error(absl::StatusCode::kInvalidArgument, reason::kLeaseTtlOutOfRange,
               absl::StrCat("a lease TTL must be between ", absl::FormatDuration(kMinLeaseTtl),
                            " and ", absl::FormatDuration(kMaxLeaseTtl), ", not ",
                            absl::FormatDuration(ttl)),
               metadata);
}

absl::StatusOr<GroupInfo> Registry::RenewLease(GroupId id, absl::string_view owner,
                                               std::optional<absl::Duration> lease_ttl,
                                               CallContext* context) {
  return RenewOrBind(id, owner, lease_ttl, /*stream=*/0, context);
}

absl::StatusOr<GroupInfo> Registry::BindLease(GroupId id, absl::string_view owner,
                                              std::optional<absl::Duration> lease_ttl,
                                              uint64_t stream, CallContext* context) {
  if (stream == 0) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidArgument,
                 "a liveness stream id must not be 0", {{"group_id", absl::StrCat(id)}});
  }
  return RenewOrBind(id, owner, lease_ttl, stream, context);
}

absl::StatusOr<GroupInfo> Registry::RenewOrBind(GroupId id, absl::string_view owner,
                                                std::optional<absl::Duration> lease_ttl,
                                                uint64_t stream, CallContext* context) {
  CallContext own_call;  // the caller passed none
  CallContext& call = context != nullptr ? *context : own_call;
  if (lease_ttl.has_value()) {
    RETURN_IF_ERROR(CheckLeaseTtl(*lease_ttl, {{"group_id", absl::StrCat(id)}}));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<GroupState> group_ptr, state_->FindGroup(id));
  GroupState& group = *group_ptr;
  GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
  FaultScopeGuard fault_scope(call, group.id, "");
  RETURN_IF_ERROR(State::LiveGroup(group));
  RETURN_IF_ERROR(RequireGroupOwner(group, owner));
  if (group.lease_ttl == absl::ZeroDuration()) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kNoLease,
                 absl::StrCat("group ", id, " was claimed without a lease"),
                 {{"group_id", absl::StrCat(id)}, {"owner", group.owner}});
  }
  const absl::Time now = state_->clock()->Now();
  if (now >= group.lease_expiry) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kLeaseExpired,
                 absl::StrCat("the lease of group ", id, " expired at ",
                              FormatExpiry(group.lease_expiry),
                              "; its ownership is being released"),
                 LeaseMetadata(group));
  }
  if (stream != 0 && group.bound_stream != 0 && group.bound_stream != stream) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kLeaseAlreadyBound,
                 absl::StrCat("the ownership of group ", id,
                              " is already bound to another live KeepLease stream"),
                 LeaseMetadata(group));
  }
  const GroupUndo undo = State::SaveGroup(group);
  const absl::Duration ttl = lease_ttl.value_or(group.lease_ttl);
  State::SetLease(group, now + ttl, ttl);
  if (stream != 0) group.bound_stream = stream;
  RETURN_IF_ERROR(state_->CommitGroup(call, group, undo));
  return State::SnapshotGroup(group);
}

absl::StatusOr<bool> Registry::ReleaseBoundLease(GroupId id, uint64_t stream) {
  if (stream == 0) return false;
  CallContext call;  // no request record: the stream's end is nobody's request
  absl::StatusOr<std::shared_ptr<GroupState>> found = state_->FindGroup(id);
  if (!found.ok()) return false;  // released with its devices meanwhile
  GroupState& group = **found;
  GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
  FaultScopeGuard fault_scope(call, group.id, "");
  if (!State::LiveGroup(group).ok() || group.bound_stream != stream) return false;
  const std::string owner = group.owner;
  // Exactly ReleaseOwnership's path (a leased group is never handed over): back to the default
  // domain (or blocked + a leak), owner, claims and lease cleared, one commit.
  const GroupUndo undo = State::SaveGroup(group);
  state_->EndOwnership(call, group);
  if (absl::Status committed = state_->CommitGroup(call, group, undo); !committed.ok()) {
    group.bound_stream = 0;  // the stream is gone: the lease's TTL decides now
    return committed;
  }
  RegistryEvent released;
  released.kind = RegistryEvent::Kind::kOwnershipReleased;
  released.unit = group.unit->name;
  released.group = group.id;
  released.domain = group.domain->id;
  released.owner = owner;
  released.detail = "bound stream ended";
  state_->Emit(released);
  return true;
}

LeaseReapResult Registry::ExpireLeases() {
  CallContext call;  // no request record; group operations set their fault scope
  std::vector<std::shared_ptr<GroupState>> groups;
  {
    MapReaderLock lock(&state_->map_mu, state_->observer());
    for (const auto& [id, group] : state_->groups) groups.push_back(group);
  }
  LeaseReapResult result;
  for (const auto& group_ptr : groups) {
    GroupState& group = *group_ptr;
    const int64_t hint = group.lease_expiry_hint.load(std::memory_order_acquire);
    if (hint == 0) continue;
    if (hint > absl::ToUnixNanos(state_->clock()->Now())) {
      ++result.active;
      continue;
    }
    GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
    FaultScopeGuard fault_scope(call, group.id, "");
    if (!State::LiveGroup(group).ok() || group.lease_ttl == absl::ZeroDuration()) continue;
    if (state_->clock()->Now() < group.lease_expiry) {  // renewed since the hint was read
      ++result.active;
      continue;
    }
    ExpiredLease lease{group.id, group.unit->name, group.owner, group.lease_expiry,
                       group.domain->id};
    const absl::Duration ttl = group.lease_ttl;
    // Exactly ReleaseOwnership's path: back to the default domain (or blocked + a leak if the
    // backend refuses), owner cleared, one commit; a refused commit undoes it all.
    const GroupUndo undo = State::SaveGroup(group);
    state_->EndOwnership(call, group);
    if (absl::Status committed = state_->CommitGroup(call, group, undo); !committed.ok()) {
      ++result.active;
      result.failed.emplace_back(std::move(lease), std::move(committed));
      continue;
    }
    EmitExpiry(*state_, lease, ttl);
    RegistryEvent released;
    released.kind = RegistryEvent::Kind::kOwnershipReleased;
    released.unit = group.unit->name;
    released.group = group.id;
    released.domain = group.domain->id;
    released.owner = lease.owner;
    released.detail = "lease expired";
    state_->Emit(released);
    result.expired.push_back(std::move(lease));
  }
  return result;
}

}  // namespace iommud

// Registry: access to an owned device itself (Registry::WithOwnedDevice), for the fd side channel
// that hands a VMM the VFIO device fd of a device whose group it owns and has attached.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/group_lock.h"
#include "core/registry.h"
#include "core/registry_state.h"
#include "core/status_macros.h"

namespace iommud {

absl::Status Registry::WithOwnedDevice(absl::string_view name, absl::string_view owner,
                                       absl::FunctionRef<absl::Status()> fn) {
  ASSIGN_OR_RETURN(std::shared_ptr<DeviceState> device, state_->FindDevice(name));
  GroupState& group = *device->group;
  GroupLock lock(&group.mu, &group.lock_stats, state_->observer());
  RETURN_IF_ERROR(State::LiveDevice(group, *device));
  absl::Status owned = RequireGroupOwner(group, owner);
  if (!owned.ok()) {
    ErrorMetadata metadata = GetErrorMetadata(owned);
    metadata["device"] = device->name;
    return Error(owned.code(), ErrorReason(owned), owned.message(), metadata);
  }
  RETURN_IF_ERROR(RequireNotHandedOver(group, "given a device fd by iommud"));
  if (group.domain->core_owned) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kGroupNotAttached,
                 absl::StrCat("group ", group.id, " of '", device->name,
                              "' is on its core-owned domain ", group.domain->id,
                              ", not attached to a domain of its owner"),
                 {{"device", device->name},
                  {"group_id", absl::StrCat(group.id)},
                  {"domain_id", absl::StrCat(group.domain->id)}});
  }
  return fn();
}

}  // namespace iommud

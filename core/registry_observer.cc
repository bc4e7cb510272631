#include "core/registry_observer.h"

namespace iommud {

absl::string_view LeakReasonName(LeakReason reason) {
  switch (reason) {
    case LeakReason::kReleasedWhileOwned: return "released_while_owned";
    case LeakReason::kReleasedWhileAttached: return "released_while_attached";
    case LeakReason::kRestoreDefaultFailed: return "restore_default_failed";
    case LeakReason::kRidOnUnknownDomain: return "rid_on_unknown_domain";
    case LeakReason::kRidOnWrongDomain: return "rid_on_wrong_domain";
    case LeakReason::kReleasedRidTranslates: return "released_rid_translates";
    case LeakReason::kOwnerGone: return "owner_gone";
    case LeakReason::kUnaccountedOwnerCount: return "unaccounted_owner_count";
    case LeakReason::kOrphanDomain: return "orphan_domain";
    case LeakReason::kHandoverHeldByOtherUid: return "handover_held_by_other_uid";
    case LeakReason::kHeldAfterTakeBack: return "held_after_take_back";
  }
  return "unknown";
}

}  // namespace iommud

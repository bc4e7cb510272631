#include "tests/fuzz/fuzz_checks.h"

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "core/error.h"
#include "core/registry_observer.h"

namespace iommud {
namespace fuzz {

void Fail(absl::string_view what, absl::string_view detail) {
  std::fprintf(stderr, "FUZZ CHECK FAILED: %.*s\n%.*s\n", static_cast<int>(what.size()),
               what.data(), static_cast<int>(detail.size()), detail.data());
  std::abort();
}

void Trace(absl::string_view step, const absl::Status& status) {
  static const bool enabled = [] {
    const char* value = std::getenv("IOMMUD_FUZZ_TRACE");
    return value != nullptr && std::string(value) == "1";
  }();
  if (!enabled) return;
  const std::string line = absl::StrCat(step, " -> ", status.ToString(), "\n");
  std::fputs(line.c_str(), stderr);
}

void CheckConsistent(const Registry& registry, absl::string_view step) {
  const std::vector<InvariantViolation> violations = registry.CheckInvariants();
  if (!violations.empty()) {
    std::string detail;
    for (const InvariantViolation& violation : violations) {
      absl::StrAppend(&detail, violation.what, "\n");
    }
    Fail(absl::StrCat("invariants broken after ", step), detail);
  }
  const std::vector<LeakRecord> leaks = registry.Audit();
  if (!leaks.empty()) {
    std::string detail;
    for (const LeakRecord& leak : leaks) {
      absl::StrAppend(&detail, LeakReasonName(leak.reason), " unit=", leak.unit,
                      " group=", leak.group, " domain=", leak.domain, " rid=", leak.rid,
                      " device=", leak.device, " owner=", leak.owner, "\n");
    }
    Fail(absl::StrCat("audit found leaks after ", step), detail);
  }
}

void CheckErrorHasReason(const absl::Status& status, absl::string_view step) {
  if (status.ok()) return;
  const std::string reason = ErrorReason(status);
  bool upper_snake = !reason.empty();
  for (char c : reason) upper_snake &= absl::ascii_isupper(c) || absl::ascii_isdigit(c) || c == '_';
  if (!upper_snake) {
    Fail(absl::StrCat("error without an UPPER_SNAKE reason from ", step), status.ToString());
  }
}

std::string Snapshot(const Registry& registry) {
  std::string out;
  for (const UnitInfo& unit : registry.ListUnits()) {
    absl::StrAppend(&out, "unit ", unit.name, " devices=", unit.device_count, " groups=",
                    unit.group_count, " domains=", unit.domain_count, "\n");
  }
  for (const GroupInfo& group : registry.ListGroups()) {
    absl::StrAppend(&out, "group ", group.id, " ", group.unit, " [",
                    absl::StrJoin(group.devices, ","), "] domain=", group.domain,
                    " default=", group.default_domain, " blocking=", group.blocking_domain,
                    " owner=", group.owner, " cnt=", group.owner_cnt, " claimed=[",
                    absl::StrJoin(group.claimed_devices, ","),
                    "] lease=", absl::FormatDuration(group.lease_ttl),
                    "@", absl::FormatTime(group.lease_expiry), "\n");
  }
  for (const DeviceInfo& device : registry.ListDevices()) {
    absl::StrAppend(&out, "device ", device.name, " ", device.unit, " rid=", device.rid,
                    " aliases=[", absl::StrJoin(device.alias_rids, ","), "] group=",
                    device.group, " binding=", DriverBindingName(device.binding),
                    " domain=", device.domain, "\n");
  }
  for (const DomainInfo& domain : registry.ListDomains()) {
    absl::StrAppend(&out, "domain ", domain.id, " ", domain.unit, " ",
                    DomainTypeName(domain.type), " owner=", domain.owner,
                    " core=", domain.core_owned, " groups=[",
                    absl::StrJoin(domain.attached_groups, ","), "] mappings=",
                    domain.mapping_count, " bytes=", domain.mapped_bytes, "\n");
    absl::StatusOr<std::vector<Mapping>> mappings = registry.ListMappings(domain.id);
    if (!mappings.ok()) continue;
    for (const Mapping& mapping : *mappings) {
      absl::StrAppend(&out, "  map ", absl::Hex(mapping.iova), " -> ", absl::Hex(mapping.paddr),
                      " +", absl::Hex(mapping.size), " prot=", mapping.prot, "\n");
    }
  }
  return out;
}

void CheckUnchangedOnError(const absl::Status& status, const std::string& before,
                           const Registry& registry, absl::string_view step) {
  if (status.ok()) return;
  const std::string after = Snapshot(registry);
  if (after != before) {
    Fail(absl::StrCat("failed ", step, " (", status.ToString(), ") changed the registry"),
         absl::StrCat("before:\n", before, "after:\n", after));
  }
}

}  // namespace fuzz
}  // namespace iommud

#include "server/topology/topology_apply.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "server/api/proto_convert.h"

namespace iommud {
namespace {

// `status` with "<source>:<line>: <entry>: " prepended; code, reason and metadata kept.
absl::Status InEntry(const absl::Status& status, absl::string_view source, int line,
                     absl::string_view entry) {
  ErrorMetadata metadata = GetErrorMetadata(status);
  metadata["topology_source"] = std::string(source);
  metadata["topology_line"] = absl::StrCat(line);
  std::string reason = ErrorReason(status);
  return Error(status.code(), reason.empty() ? reason::kInvalidTopology : reason,
               absl::StrCat(source, ":", line, ": ", entry, ": ", status.message()), metadata);
}

}  // namespace

absl::Status ApplyTopology(const LoadedTopology& loaded, Registry* registry,
                           size_t* units_adopted) {
  const iommu::v1::Topology& topology = loaded.topology;
  for (int i = 0; i < topology.units_size(); ++i) {
    const iommu::v1::Topology::Unit& unit = topology.units(i);
    const int line = i < static_cast<int>(loaded.unit_lines.size()) ? loaded.unit_lines[i] : 0;
    const std::string entry = absl::StrCat("unit '", unit.name(), "'");
    absl::StatusOr<UnitCaps> caps = UnitCapsFromProto(unit.caps());
    absl::Status added = RequireField(unit.name(), "name");
    if (added.ok()) added = caps.status();
    bool adopted = false;
    if (added.ok()) added = registry->AddUnit(unit.name(), *caps, &adopted).status();
    if (!added.ok()) return InEntry(added, loaded.source, line, entry);
    if (adopted && units_adopted != nullptr) ++*units_adopted;
  }
  for (int i = 0; i < topology.devices_size(); ++i) {
    const iommu::v1::Topology::Device& device = topology.devices(i);
    const int line = i < static_cast<int>(loaded.device_lines.size()) ? loaded.device_lines[i] : 0;
    const std::string entry = absl::StrCat("device '", device.name(), "'");
    absl::StatusOr<ProbeRequest> probe = ProbeRequestFromTopology(device);
    absl::Status probed = probe.status();
    if (probed.ok()) probed = registry->ProbeDevice(*probe).status();
    if (!probed.ok()) return InEntry(probed, loaded.source, line, entry);
  }
  return absl::OkStatus();
}

}  // namespace iommud

// iommuctl subcommands: device lifecycle (hot-plug).
#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clients/iommuctl/command_table.h"
#include "clients/iommuctl/numbers.h"
#include "clients/iommuctl/table.h"

namespace iommud {
namespace iommuctl {

void AddDeviceCommands(CommandTable& commands) {
  const CommandAdder add(commands);
  // Device lifecycle.
  add("probe",
      "UNIT NAME RID [--alias RID]... [--default-type DMA|DMA_FQ|IDENTITY] "
      "[--reserved START:LENGTH:TYPE]...",
      "hot-plug a device", 3, 3, {"alias", "default-type", "reserved"},
      [](Context& ctx, const Args& a) {
        iommu::v1::ProbeDeviceRequest request;
        request.set_unit(a.positional[0]);
        request.set_device(a.positional[1]);
        request.set_rid(Rid(a.positional[2]));
        for (const std::string& alias : a.All("alias")) request.add_alias_rids(Rid(alias));
        for (const std::string& text : a.All("reserved")) {
          absl::StatusOr<iommu::v1::ReservedRegion> region = ParseReservedRegion(text);
          if (!region.ok()) return region.status();
          *request.add_reserved_regions() = *region;
        }
        if (!a.Option("default-type").empty()) {
          request.set_default_domain_type(DomainType(a.Option("default-type")));
        }
        return Print<iommu::v1::Device>(ctx, ctx.client.ProbeDevice(request),
                                        [&](const iommu::v1::Device& d) { PrintDeviceDetail(ctx, d); });
      });
  add("release", "NAME [--wait 10s] [--force]",
      "hot-unplug a device; one whose group is owned is released once its owner lets go: the "
      "owner is asked (RELEASE_REQUESTED) and waited for (--wait, else the daemon's "
      "--release_request_timeout; at most 60s; --timeout counts from its end), else "
      "DEVICE_IN_USE and nothing changed; --force (admins) then revokes the owner's mappings and "
      "releases it anyway",
      1, 1, {"wait", "force"}, [](Context& ctx, const Args& a) {
    iommu::v1::ReleaseDeviceRequest request;
    request.set_device(a.positional[0]);
    if (!a.Option("wait").empty()) {
      absl::Duration wait;
      (void)absl::ParseDuration(a.Option("wait"), &wait);  // validated (ValidateArgs)
      request.set_wait_millis(static_cast<uint64_t>(absl::ToInt64Milliseconds(wait)));
    }
    request.set_force(!a.Option("force").empty());
    return Print<iommu::v1::ReleaseDeviceResponse>(
        ctx, ctx.client.ReleaseDevice(request), [&](const iommu::v1::ReleaseDeviceResponse& r) {
          ctx.out << "released " << a.positional[0]
                  << (r.leaked_attachment() ? " (leaked attachment recorded)" : "") << "\n";
        });
  });
}

}  // namespace iommuctl
}  // namespace iommud

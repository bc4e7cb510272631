// iommuctl subcommands: the inventory (units, groups, devices, domains, mappings, faults, health).
#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "clients/iommuctl/command_table.h"
#include "clients/iommuctl/numbers.h"
#include "clients/iommuctl/table.h"

namespace iommud {
namespace iommuctl {

void AddInventoryCommands(CommandTable& commands) {
  const CommandAdder add(commands);
  // Inventory.
  add("units", "", "list IOMMU units", 0, 0, {}, [](Context& ctx, const Args&) {
    absl::StatusOr<std::vector<iommu::v1::IommuUnit>> units = ctx.client.ListAllUnits();
    if (!units.ok()) return units.status();
    if (ctx.options.json) {
      PrintListJson(ctx, *units, &iommu::v1::ListUnitsResponse::mutable_units);
      return absl::OkStatus();
    }
    Table table({"NAME", "BACKEND", "PAGE_SIZES", "IOVA_BITS", "MAX_RIDS", "DEVICES", "GROUPS",
                 "DOMAINS"});
    for (const auto& u : *units) {
      table.AddRow({u.name(), u.backend(), PageSizes(u.pgsize_bitmap()), absl::StrCat(u.iova_bits()),
                    absl::StrCat(u.max_rids()), absl::StrCat(u.device_count()),
                    absl::StrCat(u.group_count()), absl::StrCat(u.domain_count())});
    }
    ctx.out << table.Render();
    return absl::OkStatus();
  });
  add("groups", "[--unit UNIT]", "list groups", 0, 0, {"unit"}, [](Context& ctx, const Args& a) {
    absl::StatusOr<std::vector<iommu::v1::Group>> groups = ctx.client.ListAllGroups();
    if (!groups.ok()) return groups.status();
    std::vector<iommu::v1::Group> shown;
    for (const auto& g : *groups) {
      if (a.Option("unit").empty() || g.unit() == a.Option("unit")) shown.push_back(g);
    }
    if (ctx.options.json) {
      PrintListJson(ctx, shown, &iommu::v1::ListGroupsResponse::mutable_groups);
    } else {
      PrintGroups(ctx, shown);
    }
    return absl::OkStatus();
  });
  add("group", "GROUP", "show a group", 1, 1, {}, [](Context& ctx, const Args& a) {
    iommu::v1::GetGroupRequest request;
    request.set_group_id(Number(a.positional[0], "GROUP"));
    return PrintGroup(ctx, ctx.client.GetGroup(request));
  });
  add("devices", "[--unit UNIT] [--group GROUP]", "list devices", 0, 0, {"unit", "group"},
      [](Context& ctx, const Args& a) {
        absl::StatusOr<std::vector<iommu::v1::Device>> devices = ctx.client.ListAllDevices();
        if (!devices.ok()) return devices.status();
        const uint64_t group = a.Option("group").empty() ? 0 : Number(a.Option("group"), "--group");
        std::vector<iommu::v1::Device> shown;
        for (const auto& d : *devices) {
          if (!a.Option("unit").empty() && d.unit() != a.Option("unit")) continue;
          if (group != 0 && d.group_id() != group) continue;
          shown.push_back(d);
        }
        if (ctx.options.json) {
          PrintListJson(ctx, shown, &iommu::v1::ListDevicesResponse::mutable_devices);
        } else {
          PrintDevices(ctx, shown);
        }
        return absl::OkStatus();
      });
  add("device", "NAME", "show a device", 1, 1, {}, [](Context& ctx, const Args& a) {
    iommu::v1::GetDeviceRequest request;
    request.set_device(a.positional[0]);
    return Print<iommu::v1::Device>(ctx, ctx.client.GetDevice(request),
                                    [&](const iommu::v1::Device& d) { PrintDevices(ctx, {d}); });
  });
  add("domains", "[--unit UNIT]", "list domains", 0, 0, {"unit"}, [](Context& ctx, const Args& a) {
    absl::StatusOr<std::vector<iommu::v1::Domain>> domains = ctx.client.ListAllDomains();
    if (!domains.ok()) return domains.status();
    std::vector<iommu::v1::Domain> shown;
    for (const auto& d : *domains) {
      if (a.Option("unit").empty() || d.unit() == a.Option("unit")) shown.push_back(d);
    }
    if (ctx.options.json) {
      PrintListJson(ctx, shown, &iommu::v1::ListDomainsResponse::mutable_domains);
    } else {
      PrintDomains(ctx, shown);
    }
    return absl::OkStatus();
  });
  add("domain", "DOMAIN", "show a domain", 1, 1, {}, [](Context& ctx, const Args& a) {
    iommu::v1::GetDomainRequest request;
    request.set_domain_id(Number(a.positional[0], "DOMAIN"));
    return PrintDomain(ctx, ctx.client.GetDomain(request));
  });
  add("mappings", "DOMAIN", "list a domain's mappings", 1, 1, {}, [](Context& ctx, const Args& a) {
    iommu::v1::ListMappingsRequest request;
    request.set_domain_id(Number(a.positional[0], "DOMAIN"));
    request.set_page_size(1000);
    iommu::v1::ListMappingsResponse all;
    for (;;) {
      absl::StatusOr<iommu::v1::ListMappingsResponse> page = ctx.client.ListMappings(request);
      if (!page.ok()) return page.status();
      for (const auto& m : page->mappings()) *all.add_mappings() = m;
      if (page->next_page_token().empty()) break;
      request.set_page_token(page->next_page_token());
    }
    if (ctx.options.json) {
      ctx.out << Json(all) << "\n";
      return absl::OkStatus();
    }
    Table table({"IOVA", "PADDR", "SIZE", "PROT"});
    for (const auto& m : all.mappings()) {
      table.AddRow({Hex(m.iova()), Hex(m.paddr()), HumanSize(m.size()), ProtName(m.prot())});
    }
    ctx.out << table.Render();
    return absl::OkStatus();
  });
  add("iova-ranges", "DOMAIN", "the IOVA ranges a map into the domain may use", 1, 1, {},
      [](Context& ctx, const Args& a) {
        iommu::v1::GetIovaRangesRequest request;
        request.set_domain_id(Number(a.positional[0], "DOMAIN"));
        return Print<iommu::v1::GetIovaRangesResponse>(
            ctx, ctx.client.GetIovaRanges(request),
            [&](const iommu::v1::GetIovaRangesResponse& r) {
              Table table({"START", "END", "SIZE"});
              for (const auto& range : r.ranges()) {
                table.AddRow({Hex(range.start()), Hex(range.start() + (range.size() - 1)),
                              HumanSize(range.size())});
              }
              ctx.out << table.Render();
            });
      });
  add("faults", "[--max N]", "recent translation faults, newest first", 0, 0, {"max"},
      [](Context& ctx, const Args& a) {
        iommu::v1::ListTranslationFaultsRequest request;
        if (!a.Option("max").empty()) {
          request.set_max_records(static_cast<uint32_t>(Number(a.Option("max"), "--max")));
        }
        return Print<iommu::v1::ListTranslationFaultsResponse>(
            ctx, ctx.client.ListTranslationFaults(request), [&](const iommu::v1::ListTranslationFaultsResponse& r) {
              Table table({"TIME", "UNIT", "DEVICE", "RID", "IOVA", "ACCESS", "REASON"});
              for (const auto& f : r.faults()) {
                table.AddRow({absl::FormatTime("%H:%M:%E3S", absl::FromUnixNanos(f.time_unix_nanos()),
                                               absl::UTCTimeZone()),
                              f.unit(), OrDash(f.device()), Hex(f.rid()), Hex(f.iova()),
                              ProtName(f.access()),
                              Short(iommu::v1::FaultReason_Name(f.reason()), "FAULT_REASON_")});
              }
              ctx.out << table.Render() << r.total() << " faults since start\n";
            });
      });
  add("health", "[SERVICE]",
      "gRPC health of the daemon (or of SERVICE); exit 0 when SERVING, 4 when the daemon answers "
      "NOT_SERVING or UNKNOWN, 1 when it cannot be reached or refuses",
      0, 1, {},
      [](Context& ctx, const Args& a) {
        absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> status =
            ctx.client.CheckHealth(a.positional.empty() ? "" : a.positional[0]);
        if (!status.ok()) return status.status();
        const std::string name = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(*status);
        if (ctx.options.json) {
          ctx.out << "{\n \"status\": \"" << name << "\"\n}\n";
        } else {
          ctx.out << name << "\n";
        }
        if (*status != grpc::health::v1::HealthCheckResponse::SERVING) {
          ctx.exit_code = kExitNotServing;
        }
        return absl::OkStatus();
      });
}

}  // namespace iommuctl
}  // namespace iommud

// iommuctl subcommands: audit, reconcile, lock contention and events.
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

void AddObservabilityCommands(CommandTable& commands) {
  const CommandAdder add(commands);
  // Observability.
  add("audit", "", "compare the registry with the hardware; list leaked attachments", 0, 0, {},
      [](Context& ctx, const Args&) {
        return Print<iommu::v1::AuditResponse>(
            ctx, ctx.client.Audit(iommu::v1::AuditRequest()),
            [&](const iommu::v1::AuditResponse& r) {
              PrintLeaks(ctx, r.leaks());
              ctx.out << r.leaks_size() << " leaked attachment(s)\n";
            });
      });
  add("reconcile", "", "repair every leaked attachment", 0, 0, {}, [](Context& ctx, const Args&) {
    return Print<iommu::v1::ReconcileResponse>(
        ctx, ctx.client.Reconcile(iommu::v1::ReconcileRequest()),
        [&](const iommu::v1::ReconcileResponse& r) {
          PrintLeaks(ctx, r.repaired());
          ctx.out << "repaired " << r.repaired_size() << ", remaining " << r.remaining_size()
                  << "\n";
        });
  });
  add("contention", "[--max N]", "the most contended groups (lock waits)", 0, 0, {"max"},
      [](Context& ctx, const Args& a) {
        iommu::v1::ListContendedGroupsRequest request;
        if (!a.Option("max").empty()) {
          request.set_max_groups(static_cast<uint32_t>(Number(a.Option("max"), "--max")));
        }
        return Print<iommu::v1::ListContendedGroupsResponse>(
            ctx, ctx.client.ListContendedGroups(request),
            [&](const iommu::v1::ListContendedGroupsResponse& r) {
              Table table({"GROUP", "UNIT", "ACQUISITIONS", "CONTENDED", "TOTAL_WAIT"});
              for (const auto& g : r.groups()) {
                table.AddRow({absl::StrCat(g.group_id()), g.unit(), absl::StrCat(g.acquisitions()),
                              absl::StrCat(g.contended()),
                              absl::FormatDuration(absl::Seconds(g.total_wait_seconds()))});
              }
              ctx.out << table.Render();
            });
      });
  add("watch", "[--kind KIND]... [--group GROUP] [--device NAME] [--count N] [--for DURATION]",
      "stream events (a snapshot first); stops after --count events or --for", 0, 0,
      {"kind", "group", "device", "count", "for"}, [](Context& ctx, const Args& a) {
        iommu::v1::WatchEventsRequest request;
        for (const std::string& kind : a.All("kind")) {
          request.add_kinds(CheckEventKind(kind).value_or(iommu::v1::EVENT_KIND_UNSPECIFIED));
        }
        if (!a.Option("group").empty()) request.set_group_id(Number(a.Option("group"), "--group"));
        request.set_device(a.Option("device"));
        const uint64_t count = a.Option("count").empty() ? 0 : Number(a.Option("count"), "--count");
        absl::Duration duration = absl::InfiniteDuration();
        if (!a.Option("for").empty()) (void)absl::ParseDuration(a.Option("for"), &duration);
        uint64_t seen = 0;
        return ctx.client.WatchEvents(
            request,
            [&](const iommu::v1::Event& event) {
              if (ctx.options.json) {
                google::protobuf::util::JsonPrintOptions options;
                options.preserve_proto_field_names = true;
                std::string json;
                (void)google::protobuf::util::MessageToJsonString(event, &json, options);
                ctx.out << json << "\n";
              } else {
                ctx.out << Short(iommu::v1::EventKind_Name(event.kind()), "EVENT_KIND_");
                if (!event.unit().empty()) ctx.out << " unit=" << event.unit();
                if (event.group_id() != 0) ctx.out << " group=" << event.group_id();
                if (event.domain_id() != 0) ctx.out << " domain=" << event.domain_id();
                if (!event.device().empty()) ctx.out << " device=" << event.device();
                if (!event.owner().empty()) ctx.out << " owner=" << event.owner();
                if (event.size() != 0) {
                  ctx.out << " iova=" << Hex(event.iova()) << " size=" << HumanSize(event.size());
                }
                if (!event.detail().empty()) ctx.out << " (" << event.detail() << ")";
                ctx.out << "\n";
              }
              ctx.out.flush();
              return count == 0 || ++seen < count;
            },
            duration);
      });
}

}  // namespace iommuctl
}  // namespace iommud

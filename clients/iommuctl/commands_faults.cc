// iommuctl subcommands: fault injection (admin).
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

void AddFaultCommands(CommandTable& commands) {
  const CommandAdder add(commands);
  // Fault injection (admin; the daemon needs --allow_fault_injection).
  add("fault",
      "inject|list|clear [POINT] [--nth N | --every K | --probability P --seed S] [--code CODE] "
      "[--latency DURATION] [--fail yes|no] [--group GROUP] [--device NAME]",
      "scripted fault injection (daemon started with --allow_fault_injection)", 1, 2,
      {"nth", "every", "probability", "seed", "code", "latency", "fail", "group", "device"},
      [](Context& ctx, const Args& a) {
        const std::string& action = a.positional[0];
        if (action == "list") {
          return Print<iommu::v1::ListFaultsResponse>(
              ctx, ctx.client.ListFaults(iommu::v1::ListFaultsRequest()),
              [&](const iommu::v1::ListFaultsResponse& r) {
                Table table({"ID", "POINT", "MODE", "N/P", "CODE", "LATENCY", "SCOPE", "HITS",
                             "INJECTED"});
                for (const auto& f : r.faults()) {
                  const auto& s = f.spec();
                  std::string scope = s.group_id() != 0 ? absl::StrCat("group ", s.group_id())
                                                        : (s.device().empty() ? "-" : s.device());
                  table.AddRow({absl::StrCat(f.fault_id()), s.point(),
                                iommu::v1::FaultSpec::Mode_Name(s.mode()),
                                s.mode() == iommu::v1::FaultSpec::PROBABILITY
                                    ? absl::StrCat(s.probability())
                                    : absl::StrCat(s.n()),
                                s.latency_only() ? "-" : s.code(),
                                absl::FormatDuration(absl::Microseconds(s.latency_micros())),
                                scope, absl::StrCat(f.hits()), absl::StrCat(f.injected())});
                }
                ctx.out << table.Render() << "points: " << absl::StrJoin(r.points(), " ") << "\n";
              });
        }
        if (action == "clear") {
          return Print<iommu::v1::ClearFaultsResponse>(
              ctx, ctx.client.ClearFaults(iommu::v1::ClearFaultsRequest()),
              [&](const iommu::v1::ClearFaultsResponse& r) {
                ctx.out << "cleared " << r.cleared() << " fault(s)\n";
              });
        }
        if (action != "inject" || a.positional.size() != 2) {
          return UsageError("usage: iommuctl fault inject POINT [...] | fault list | fault clear");
        }
        iommu::v1::InjectFaultRequest request;
        iommu::v1::FaultSpec& spec = *request.mutable_spec();
        spec.set_point(a.positional[1]);
        if (!a.Option("every").empty()) {
          spec.set_mode(iommu::v1::FaultSpec::EVERY_KTH);
          spec.set_n(Number(a.Option("every"), "--every"));
        } else if (!a.Option("probability").empty()) {
          spec.set_mode(iommu::v1::FaultSpec::PROBABILITY);
          double p = 0;
          (void)absl::SimpleAtod(a.Option("probability"), &p);
          spec.set_probability(p);
          if (!a.Option("seed").empty()) spec.set_seed(Number(a.Option("seed"), "--seed"));
        } else {
          spec.set_mode(iommu::v1::FaultSpec::NTH);
          spec.set_n(a.Option("nth").empty() ? 1 : Number(a.Option("nth"), "--nth"));
        }
        spec.set_code(a.Option("code"));
        spec.set_latency_only(a.Option("fail", "yes") == "no");
        if (!a.Option("latency").empty()) {
          absl::Duration latency;
          (void)absl::ParseDuration(a.Option("latency"), &latency);
          spec.set_latency_micros(absl::ToInt64Microseconds(latency));
        }
        if (!a.Option("group").empty()) spec.set_group_id(Number(a.Option("group"), "--group"));
        spec.set_device(a.Option("device"));
        return Print<iommu::v1::InjectFaultResponse>(
            ctx, ctx.client.InjectFault(request), [&](const iommu::v1::InjectFaultResponse& r) {
              ctx.out << "fault " << r.fault_id() << " armed at " << spec.point() << "\n";
            });
      });
}

}  // namespace iommuctl
}  // namespace iommud

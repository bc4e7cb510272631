#include "clients/iommuctl/commands.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "clients/iommuctl/numbers.h"
#include "clients/iommuctl/table.h"
#include "core/error.h"
#include "core/error_reasons.h"

namespace iommud {

namespace {

// Options that are flags: given alone (--force), they take no value.
const std::set<std::string> kFlagOptions = {"force"};

// Arguments of one subcommand: positional words and --name value options (repeatable).
struct Args {
  std::vector<std::string> positional;
  std::multimap<std::string, std::string> options;

  std::string Option(const std::string& name, const std::string& fallback = "") const {
    auto it = options.find(name);
    return it == options.end() ? fallback : it->second;
  }
  std::vector<std::string> All(const std::string& name) const {
    std::vector<std::string> values;
    auto [begin, end] = options.equal_range(name);
    for (auto it = begin; it != end; ++it) values.push_back(it->second);
    return values;
  }
};

absl::Status UsageError(const std::string& message) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kUsage, message);
}

struct Context {
  IommuClient& client;
  const CliOptions& options;
  std::ostream& out;
  // The exit code of a command whose call succeeded (health sets kExitNotServing).
  int exit_code = kExitOk;
};

using Handler = std::function<absl::Status(Context&, const Args&)>;

struct Command {
  std::string usage;   // arguments, e.g. "GROUP DOMAIN"
  std::string help;    // one line
  std::set<std::string> option_names;
  size_t min_args = 0;
  size_t max_args = 0;
  Handler run;
};

std::string Json(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

// Enum names without their prefix: DOMAIN_TYPE_UNMANAGED -> UNMANAGED.
std::string Short(const std::string& name, absl::string_view prefix) {
  return absl::StartsWith(name, prefix) ? name.substr(prefix.size()) : name;
}
std::string TypeName(iommu::v1::DomainType type) {
  return Short(iommu::v1::DomainType_Name(type), "DOMAIN_TYPE_");
}
std::string ProtName(uint32_t prot) {
  std::string name;
  if (prot & iommu::v1::PROT_READ) name += "r";
  if (prot & iommu::v1::PROT_WRITE) name += "w";
  return name.empty() ? "-" : name;
}
std::string OrDash(const std::string& text) { return text.empty() ? "-" : text; }
// A page-size bitmap as sizes: 4K|2M|1G.
std::string PageSizes(uint64_t bitmap) {
  std::vector<std::string> sizes;
  for (int bit = 0; bit < 64; ++bit) {
    if (bitmap & (uint64_t{1} << bit)) sizes.push_back(HumanSize(uint64_t{1} << bit));
  }
  return OrDash(absl::StrJoin(sizes, "|"));
}
// A group's lease: "-" or its expiry (UTC) and TTL, e.g. "12:00:30Z (30s)".
std::string LeaseText(const iommu::v1::Group& group) {
  if (group.lease_ttl_millis() == 0) return "-";
  return absl::StrCat(absl::FormatTime("%H:%M:%SZ",
                                       absl::FromUnixNanos(group.lease_expiry_unix_nanos()),
                                       absl::UTCTimeZone()),
                      " (",
                      absl::FormatDuration(absl::Milliseconds(
                          static_cast<int64_t>(group.lease_ttl_millis()))),
                      ")");
}
// --lease DURATION (already validated: positive) in milliseconds, at least 1 (the daemon judges
// the range); 0 when not given.
uint64_t LeaseMillis(const std::string& text) {
  absl::Duration lease;
  if (text.empty() || !absl::ParseDuration(text, &lease)) return 0;
  return static_cast<uint64_t>(std::max<int64_t>(absl::ToInt64Milliseconds(lease), 1));
}

// Conversions of arguments RunCommand has already validated (ValidateArgs), so they cannot fail.
absl::StatusOr<uint64_t> CheckNumber(const std::string& text, const std::string& what) {
  return ParseNumber(text, what);
}
uint64_t Number(const std::string& text, const std::string& what) {
  return CheckNumber(text, what).value_or(0);
}

absl::StatusOr<uint32_t> CheckRid(const std::string& text) {
  absl::StatusOr<uint64_t> value = ParseNumber(text, "RID");
  if (!value.ok()) return value.status();
  if (*value > 0xffffffffu) return UsageError(absl::StrCat("RID ", text, " is too large"));
  return static_cast<uint32_t>(*value);
}
uint32_t Rid(const std::string& text) { return CheckRid(text).value_or(0); }

absl::StatusOr<uint32_t> CheckProt(const std::string& text, const std::string& what) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "r") return iommu::v1::PROT_READ;
  if (lower == "w") return iommu::v1::PROT_WRITE;
  if (lower == "rw" || lower == "wr") return iommu::v1::PROT_READ | iommu::v1::PROT_WRITE;
  return UsageError(absl::StrCat(what, " must be r, w or rw, not '", text, "'"));
}
uint32_t Prot(const std::string& text, const std::string& what) {
  return CheckProt(text, what).value_or(0);
}

absl::StatusOr<iommu::v1::DomainType> CheckDomainType(const std::string& text) {
  iommu::v1::DomainType type;
  if (iommu::v1::DomainType_Parse("DOMAIN_TYPE_" + absl::AsciiStrToUpper(text), &type) &&
      type != iommu::v1::DOMAIN_TYPE_UNSPECIFIED) {
    return type;
  }
  return UsageError(absl::StrCat("unknown domain type '", text,
                                 "' (BLOCKED, IDENTITY, UNMANAGED, DMA, DMA_FQ)"));
}
iommu::v1::DomainType DomainType(const std::string& text) {
  return CheckDomainType(text).value_or(iommu::v1::DOMAIN_TYPE_UNSPECIFIED);
}

absl::StatusOr<iommu::v1::EventKind> CheckEventKind(const std::string& text) {
  iommu::v1::EventKind kind;
  if (iommu::v1::EventKind_Parse("EVENT_KIND_" + absl::AsciiStrToUpper(text), &kind)) return kind;
  return UsageError(absl::StrCat("unknown event kind '", text, "'"));
}

absl::Status CheckDuration(const std::string& text, const std::string& what) {
  absl::Duration duration;
  if (absl::ParseDuration(text, &duration)) return absl::OkStatus();
  return UsageError(absl::StrCat(what, " takes a duration like 10s, not '", text, "'"));
}

// Checks every argument whose usage word or option name says it is a number, RID, protection,
// domain type, event kind or duration, before anything is sent.
absl::Status ValidateArgs(const std::string& usage, const Args& args) {
  static const std::set<std::string> kNumberWords = {"GROUP", "DOMAIN", "IOVA", "PADDR", "SIZE",
                                                     "UID", "GID"};
  std::vector<std::string> words;
  for (absl::string_view word : absl::StrSplit(usage, ' ')) {
    if (!word.empty() && word[0] != '[' && word[0] != '-' && absl::AsciiStrToUpper(word) == word &&
        word.find_first_of("|.]") == absl::string_view::npos) {
      words.emplace_back(word);
    }
  }
  for (size_t i = 0; i < args.positional.size() && i < words.size(); ++i) {
    if (words[i] == "RID") {
      if (absl::StatusOr<uint32_t> rid = CheckRid(args.positional[i]); !rid.ok()) {
        return rid.status();
      }
    } else if (kNumberWords.count(words[i]) != 0) {
      if (auto n = CheckNumber(args.positional[i], words[i]); !n.ok()) return n.status();
    }
  }
  for (const auto& [name, value] : args.options) {
    absl::Status status;
    if (name == "alias") {
      status = CheckRid(value).status();
    } else if (name == "group" || name == "max" || name == "count" || name == "nth" ||
               name == "every" || name == "seed") {
      status = CheckNumber(value, "--" + name).status();
    } else if (name == "prot" || name == "access") {
      status = CheckProt(value, "--" + name).status();
    } else if (name == "type" || name == "default-type") {
      status = CheckDomainType(value).status();
    } else if (name == "kind") {
      status = CheckEventKind(value).status();
    } else if (name == "for" || name == "latency") {
      status = CheckDuration(value, "--" + name);
    } else if (name == "lease" || name == "interval") {
      status = CheckDuration(value, "--" + name);
      absl::Duration positive;
      if (status.ok() && absl::ParseDuration(value, &positive) &&
          positive <= absl::ZeroDuration()) {
        status = UsageError(
            absl::StrCat("--", name, " takes a positive duration, not '", value, "'"));
      }
    } else if (name == "probability") {
      double p = 0;
      if (!absl::SimpleAtod(value, &p)) status = UsageError("--probability takes a number");
    } else if (name == "fail") {
      if (value != "yes" && value != "no") status = UsageError("--fail takes yes or no");
    }
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

// --- Output of resources ---

void PrintGroups(Context& ctx, const std::vector<iommu::v1::Group>& groups) {
  const bool wide = ctx.options.output == OutputFormat::kWide;
  std::vector<std::string> header = {"ID",    "UNIT",      "DOMAIN",  "DEFAULT", "BLOCKING",
                                     "OWNER", "OWNER_CNT", "DEVICES", "LEASE"};
  if (wide) header.insert(header.end(), {"CLAIMED", "LEASE_EXPIRY"});
  Table table(header);
  for (const auto& g : groups) {
    std::vector<std::string> row = {
        absl::StrCat(g.id()), g.unit(), absl::StrCat(g.domain_id()),
        absl::StrCat(g.default_domain_id()), absl::StrCat(g.blocking_domain_id()),
        g.handed_over()
            ? absl::StrCat(g.owner(), " (handed over to ", g.handover_uid(), ":",
                           g.handover_gid(), ")")
            : OrDash(g.owner()),
        absl::StrCat(g.owner_cnt()), absl::StrJoin(g.devices(), ","), LeaseText(g)};
    if (wide) {
      row.push_back(OrDash(absl::StrJoin(g.claimed_devices(), ",")));
      row.push_back(g.lease_ttl_millis() == 0
                        ? "-"
                        : absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ",
                                           absl::FromUnixNanos(g.lease_expiry_unix_nanos()),
                                           absl::UTCTimeZone()));
    }
    table.AddRow(row);
  }
  ctx.out << table.Render();
}

void PrintDevices(Context& ctx, const std::vector<iommu::v1::Device>& devices) {
  Table table({"NAME", "UNIT", "RID", "ALIASES", "GROUP", "DOMAIN", "BINDING"});
  for (const auto& d : devices) {
    std::vector<std::string> aliases;
    for (uint32_t alias : d.alias_rids()) aliases.push_back(Hex(alias));
    table.AddRow({d.name(), d.unit(), Hex(d.rid()), OrDash(absl::StrJoin(aliases, ",")),
                  absl::StrCat(d.group_id()), absl::StrCat(d.domain_id()),
                  Short(iommu::v1::DriverBinding_Name(d.binding()), "DRIVER_BINDING_")});
  }
  ctx.out << table.Render();
}

void PrintDomains(Context& ctx, const std::vector<iommu::v1::Domain>& domains) {
  const bool wide = ctx.options.output == OutputFormat::kWide;
  std::vector<std::string> header = {"ID",     "UNIT",     "TYPE",  "OWNER",
                                     "CORE",   "GROUPS",   "MAPPINGS", "MAPPED"};
  if (wide) header.insert(header.end(), {"PAGE_SIZES", "IOVA_BITS"});
  Table table(header);
  for (const auto& d : domains) {
    std::vector<std::string> groups;
    for (uint64_t group : d.attached_group_ids()) groups.push_back(absl::StrCat(group));
    std::vector<std::string> row = {absl::StrCat(d.id()), d.unit(), TypeName(d.type()),
                                    OrDash(d.owner()), d.core_owned() ? "yes" : "no",
                                    OrDash(absl::StrJoin(groups, ",")),
                                    absl::StrCat(d.mapping_count()), HumanSize(d.mapped_bytes())};
    if (wide) {
      row.push_back(PageSizes(d.pgsize_bitmap()));
      row.push_back(absl::StrCat(d.iova_bits()));
    }
    table.AddRow(row);
  }
  ctx.out << table.Render();
}

void PrintRegions(Context& ctx, const std::vector<iommu::v1::MemoryRegion>& regions) {
  Table table({"ID", "OWNER", "KIND", "SIZE", "BASE", "MAPPED"});
  for (const auto& r : regions) {
    table.AddRow({absl::StrCat(r.id()), OrDash(r.owner()),
                  r.kind() == iommu::v1::MemoryRegion::PROCESS_MEMORY ? "PROCESS_MEMORY"
                                                                      : "EMULATED",
                  HumanSize(r.size()), Hex(r.base()), HumanSize(r.mapped_bytes())});
  }
  ctx.out << table.Render();
}

template <typename Message>
absl::Status Print(Context& ctx, const absl::StatusOr<Message>& response,
                   const std::function<void(const Message&)>& human) {
  if (!response.ok()) return response.status();
  if (ctx.options.json) {
    ctx.out << Json(*response) << "\n";
  } else {
    human(*response);
  }
  return absl::OkStatus();
}

absl::Status PrintGroup(Context& ctx, const absl::StatusOr<iommu::v1::Group>& group) {
  return Print<iommu::v1::Group>(ctx, group, [&](const iommu::v1::Group& g) {
    PrintGroups(ctx, {g});
  });
}
absl::Status PrintDomain(Context& ctx, const absl::StatusOr<iommu::v1::Domain>& domain) {
  return Print<iommu::v1::Domain>(ctx, domain, [&](const iommu::v1::Domain& d) {
    PrintDomains(ctx, {d});
  });
}

// JSON output of a list: {"<field>": [...]} built from a response message of all pages.
template <typename Response, typename Item>
void PrintListJson(Context& ctx, const std::vector<Item>& items,
                   google::protobuf::RepeatedPtrField<Item>* (Response::*mutable_items)()) {
  Response response;
  for (const Item& item : items) *(response.*mutable_items)()->Add() = item;
  ctx.out << Json(response) << "\n";
}

void PrintLeaks(Context& ctx, const google::protobuf::RepeatedPtrField<iommu::v1::LeakedAttachment>& leaks) {
  Table table({"REASON", "UNIT", "GROUP", "DOMAIN", "RID", "DEVICE", "OWNER"});
  for (const auto& leak : leaks) {
    table.AddRow({leak.reason(), OrDash(leak.unit()), absl::StrCat(leak.group_id()),
                  absl::StrCat(leak.domain_id()), Hex(leak.rid()), OrDash(leak.device()),
                  OrDash(leak.owner())});
  }
  ctx.out << table.Render();
}

// --- The subcommands ---

std::map<std::string, Command> BuildCommands() {
  std::map<std::string, Command> commands;
  auto add = [&](std::string name, std::string usage, std::string help, size_t min_args,
                 size_t max_args, std::set<std::string> option_names, Handler run) {
    commands[std::move(name)] = Command{std::move(usage), std::move(help),
                                        std::move(option_names), min_args, max_args,
                                        std::move(run)};
  };

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

  // Device lifecycle.
  add("probe", "UNIT NAME RID [--alias RID]... [--default-type DMA|DMA_FQ|IDENTITY]",
      "hot-plug a device", 3, 3, {"alias", "default-type"}, [](Context& ctx, const Args& a) {
        iommu::v1::ProbeDeviceRequest request;
        request.set_unit(a.positional[0]);
        request.set_device(a.positional[1]);
        request.set_rid(Rid(a.positional[2]));
        for (const std::string& alias : a.All("alias")) request.add_alias_rids(Rid(alias));
        if (!a.Option("default-type").empty()) {
          request.set_default_domain_type(DomainType(a.Option("default-type")));
        }
        return Print<iommu::v1::Device>(ctx, ctx.client.ProbeDevice(request),
                                        [&](const iommu::v1::Device& d) { PrintDevices(ctx, {d}); });
      });
  add("release", "NAME", "hot-unplug a device", 1, 1, {}, [](Context& ctx, const Args& a) {
    iommu::v1::ReleaseDeviceRequest request;
    request.set_device(a.positional[0]);
    return Print<iommu::v1::ReleaseDeviceResponse>(
        ctx, ctx.client.ReleaseDevice(request), [&](const iommu::v1::ReleaseDeviceResponse& r) {
          ctx.out << "released " << a.positional[0]
                  << (r.leaked_attachment() ? " (leaked attachment recorded)" : "") << "\n";
        });
  });

  // Ownership.
  auto device_group_call = [&](const std::string& name, const std::string& help,
                               absl::StatusOr<iommu::v1::Group> (IommuClient::*call)(
                                   const iommu::v1::UseDefaultDomainRequest&)) {
    add(name, "NAME", help, 1, 1, {}, [call](Context& ctx, const Args& a) {
      iommu::v1::UseDefaultDomainRequest request;
      request.set_device(a.positional[0]);
      return PrintGroup(ctx, (ctx.client.*call)(request));
    });
  };
  device_group_call("use-default", "a kernel driver binds the device (owner_cnt++)",
                    &IommuClient::UseDefaultDomain);
  add("unuse-default", "NAME", "the kernel driver unbinds (owner_cnt--)", 1, 1, {},
      [](Context& ctx, const Args& a) {
        iommu::v1::UnuseDefaultDomainRequest request;
        request.set_device(a.positional[0]);
        return PrintGroup(ctx, ctx.client.UnuseDefaultDomain(request));
      });
  add("claim", "GROUP [--lease 30s]",
      "take DMA ownership of a group (--owner); with --lease it lapses unless renewed", 1, 1,
      {"lease"}, [](Context& ctx, const Args& a) {
        iommu::v1::ClaimOwnershipRequest request;
        request.set_group_id(Number(a.positional[0], "GROUP"));
        request.set_owner(ctx.options.owner);
        request.set_lease_ttl_millis(LeaseMillis(a.Option("lease")));
        return PrintGroup(ctx, ctx.client.ClaimOwnership(request));
      });
  add("renew", "GROUP [--lease 30s]",
      "renew the ownership lease of a group (--lease: a new TTL; default: the lease's own)", 1, 1,
      {"lease"}, [](Context& ctx, const Args& a) {
        iommu::v1::RenewLeaseRequest request;
        request.set_group_id(Number(a.positional[0], "GROUP"));
        request.set_owner(ctx.options.owner);
        request.set_lease_ttl_millis(LeaseMillis(a.Option("lease")));
        return PrintGroup(ctx, ctx.client.RenewLease(request));
      });
  add("keep-lease", "GROUP [--interval 10s] [--for 1m] [--lease 30s]",
      "keep a group's lease alive over one KeepLease stream: a renewal every --interval (default "
      "a third of the lease's TTL) until --for passes or ^C (the lease then lapses on its own)",
      1, 1, {"interval", "for", "lease"}, [](Context& ctx, const Args& a) -> absl::Status {
        iommu::v1::KeepLeaseRequest request;
        request.set_group_id(Number(a.positional[0], "GROUP"));
        request.set_owner(ctx.options.owner);
        request.set_lease_ttl_millis(LeaseMillis(a.Option("lease")));
        absl::Duration every, duration = absl::InfiniteDuration();
        if (!a.Option("for").empty()) absl::ParseDuration(a.Option("for"), &duration);
        if (!a.Option("interval").empty()) {
          absl::ParseDuration(a.Option("interval"), &every);
        } else {
          iommu::v1::GetGroupRequest get;
          get.set_group_id(request.group_id());
          absl::StatusOr<iommu::v1::Group> group = ctx.client.GetGroup(get);
          if (!group.ok()) return group.status();
          const uint64_t ttl = request.lease_ttl_millis() != 0 ? request.lease_ttl_millis()
                                                               : group->lease_ttl_millis();
          every = std::max(absl::Milliseconds(static_cast<int64_t>(ttl)) / 3,
                           absl::Milliseconds(100));
        }
        return ctx.client.KeepLease(
            request, every,
            [&](const iommu::v1::Group& group) {
              if (ctx.options.json) {
                ctx.out << Json(group) << "\n";
              } else {
                ctx.out << "renewed group " << group.id() << ": lease until " << LeaseText(group)
                        << "\n";
              }
              ctx.out.flush();
              return true;
            },
            duration);
      });
  add("release-ownership", "GROUP [--force]",
      "give a group back to its default domain (a handed-over group: taken back from its VMM, "
      "refused while the VMM holds it open unless --force)",
      1, 1, {"force"}, [](Context& ctx, const Args& a) {
        iommu::v1::ReleaseOwnershipRequest request;
        request.set_group_id(Number(a.positional[0], "GROUP"));
        request.set_owner(ctx.options.owner);
        request.set_force(!a.Option("force").empty());
        return PrintGroup(ctx, ctx.client.ReleaseOwnership(request));
      });
  add("hand-over", "GROUP UID [GID]",
      "hand a group to a VMM that opens VFIO itself (QEMU -device vfio-pci,host=...): its devices "
      "on vfio-pci, /dev/vfio/N owned by UID:GID (GID defaults to UID); release-ownership takes "
      "it back",
      2, 3, {}, [](Context& ctx, const Args& a) {
        iommu::v1::HandOverGroupRequest request;
        request.set_group_id(Number(a.positional[0], "GROUP"));
        request.set_owner(ctx.options.owner);
        request.set_uid(static_cast<uint32_t>(Number(a.positional[1], "UID")));
        request.set_gid(static_cast<uint32_t>(
            Number(a.positional.size() > 2 ? a.positional[2] : a.positional[1], "GID")));
        return PrintGroup(ctx, ctx.client.HandOverGroup(request));
      });
  add("claim-device", "NAME", "claim one device (iommufd style; same owner counts up)", 1, 1, {},
      [](Context& ctx, const Args& a) {
        iommu::v1::ClaimDeviceRequest request;
        request.set_device(a.positional[0]);
        request.set_owner(ctx.options.owner);
        return PrintGroup(ctx, ctx.client.ClaimDevice(request));
      });
  add("release-device-ownership", "NAME", "release a device claim", 1, 1, {},
      [](Context& ctx, const Args& a) {
        iommu::v1::ReleaseDeviceOwnershipRequest request;
        request.set_device(a.positional[0]);
        request.set_owner(ctx.options.owner);
        return PrintGroup(ctx, ctx.client.ReleaseDeviceOwnership(request));
      });

  // Domains and attachment.
  add("alloc", "UNIT [--type UNMANAGED|IDENTITY|BLOCKED]", "allocate a domain owned by --owner",
      1, 1, {"type"}, [](Context& ctx, const Args& a) {
        iommu::v1::AllocDomainRequest request;
        request.set_unit(a.positional[0]);
        request.set_type(DomainType(a.Option("type", "UNMANAGED")));
        request.set_owner(ctx.options.owner);
        return PrintDomain(ctx, ctx.client.AllocDomain(request));
      });
  add("free", "DOMAIN", "free a domain (refused while attached)", 1, 1, {},
      [](Context& ctx, const Args& a) {
        iommu::v1::FreeDomainRequest request;
        request.set_domain_id(Number(a.positional[0], "DOMAIN"));
        request.set_owner(ctx.options.owner);
        return PrintDomain(ctx, ctx.client.FreeDomain(request));
      });
  add("attach-device", "NAME DOMAIN", "attach a single-device group through its device", 2, 2, {},
      [](Context& ctx, const Args& a) {
        iommu::v1::AttachDeviceRequest request;
        request.set_device(a.positional[0]);
        request.set_domain_id(Number(a.positional[1], "DOMAIN"));
        request.set_owner(ctx.options.owner);
        return PrintGroup(ctx, ctx.client.AttachDevice(request));
      });
  add("attach", "GROUP DOMAIN", "attach a group to a domain", 2, 2, {},
      [](Context& ctx, const Args& a) {
        iommu::v1::AttachGroupRequest request;
        request.set_group_id(Number(a.positional[0], "GROUP"));
        request.set_domain_id(Number(a.positional[1], "DOMAIN"));
        request.set_owner(ctx.options.owner);
        return PrintGroup(ctx, ctx.client.AttachGroup(request));
      });
  add("detach", "GROUP DOMAIN", "detach a group (back to its blocking domain)", 2, 2, {},
      [](Context& ctx, const Args& a) {
        iommu::v1::DetachGroupRequest request;
        request.set_group_id(Number(a.positional[0], "GROUP"));
        request.set_domain_id(Number(a.positional[1], "DOMAIN"));
        request.set_owner(ctx.options.owner);
        return PrintGroup(ctx, ctx.client.DetachGroup(request));
      });

  // Memory regions.
  add("register-memory", "SIZE", "register an (emulated) memory region owned by --owner", 1, 1,
      {}, [](Context& ctx, const Args& a) {
        iommu::v1::RegisterMemoryRequest request;
        request.set_size(Number(a.positional[0], "SIZE"));
        request.set_owner(ctx.options.owner);
        return Print<iommu::v1::MemoryRegion>(
            ctx, ctx.client.RegisterMemory(request),
            [&](const iommu::v1::MemoryRegion& r) { PrintRegions(ctx, {r}); });
      });
  add("unregister-memory", "REGION", "unregister a memory region (refused while mapped)", 1, 1,
      {}, [](Context& ctx, const Args& a) {
        iommu::v1::UnregisterMemoryRequest request;
        request.set_region_id(Number(a.positional[0], "REGION"));
        request.set_owner(ctx.options.owner);
        return Print<iommu::v1::MemoryRegion>(
            ctx, ctx.client.UnregisterMemory(request),
            [&](const iommu::v1::MemoryRegion& r) { PrintRegions(ctx, {r}); });
      });
  add("regions", "", "list the registered memory regions", 0, 0, {},
      [](Context& ctx, const Args&) {
        iommu::v1::ListMemoryRegionsRequest request;
        request.set_page_size(1000);
        std::vector<iommu::v1::MemoryRegion> all;
        for (;;) {
          absl::StatusOr<iommu::v1::ListMemoryRegionsResponse> page =
              ctx.client.ListMemoryRegions(request);
          if (!page.ok()) return page.status();
          for (const auto& r : page->regions()) all.push_back(r);
          if (page->next_page_token().empty()) break;
          request.set_page_token(page->next_page_token());
        }
        if (ctx.options.json) {
          PrintListJson(ctx, all, &iommu::v1::ListMemoryRegionsResponse::mutable_regions);
        } else {
          PrintRegions(ctx, all);
        }
        return absl::OkStatus();
      });

  // Mappings and DMA.
  add("map-region", "DOMAIN IOVA REGION OFFSET SIZE [--prot rw|r|w]",
      "map IOVA -> a range of a memory region", 5, 5, {"prot"}, [](Context& ctx, const Args& a) {
        iommu::v1::MapRequest request;
        request.set_domain_id(Number(a.positional[0], "DOMAIN"));
        request.set_iova(Number(a.positional[1], "IOVA"));
        request.set_region_id(Number(a.positional[2], "REGION"));
        request.set_region_offset(Number(a.positional[3], "OFFSET"));
        request.set_size(Number(a.positional[4], "SIZE"));
        request.set_prot(Prot(a.Option("prot", "rw"), "--prot"));
        request.set_owner(ctx.options.owner);
        return Print<iommu::v1::MapResponse>(
            ctx, ctx.client.Map(request), [&](const iommu::v1::MapResponse& r) {
              ctx.out << "mapped " << Hex(r.mapping().iova()) << " -> region "
                      << request.region_id() << " + " << Hex(request.region_offset()) << " ("
                      << Hex(r.mapping().paddr()) << ") size " << HumanSize(r.mapping().size())
                      << " " << ProtName(r.mapping().prot()) << "\n";
            });
      });
  add("map", "DOMAIN IOVA PADDR SIZE [--prot rw|r|w]",
      "map IOVA -> a raw physical address (admins only; others use map-region)", 4, 4, {"prot"},
      [](Context& ctx, const Args& a) {
        iommu::v1::MapRequest request;
        request.set_domain_id(Number(a.positional[0], "DOMAIN"));
        request.set_iova(Number(a.positional[1], "IOVA"));
        request.set_paddr(Number(a.positional[2], "PADDR"));
        request.set_size(Number(a.positional[3], "SIZE"));
        request.set_prot(Prot(a.Option("prot", "rw"), "--prot"));
        request.set_owner(ctx.options.owner);
        return Print<iommu::v1::MapResponse>(
            ctx, ctx.client.Map(request), [&](const iommu::v1::MapResponse& r) {
              ctx.out << "mapped " << Hex(r.mapping().iova()) << " -> " << Hex(r.mapping().paddr())
                      << " size " << HumanSize(r.mapping().size()) << " "
                      << ProtName(r.mapping().prot()) << "\n";
            });
      });
  add("unmap", "DOMAIN IOVA SIZE", "unmap whole mappings in a range", 3, 3, {},
      [](Context& ctx, const Args& a) {
        iommu::v1::UnmapRequest request;
        request.set_domain_id(Number(a.positional[0], "DOMAIN"));
        request.set_iova(Number(a.positional[1], "IOVA"));
        request.set_size(Number(a.positional[2], "SIZE"));
        request.set_owner(ctx.options.owner);
        return Print<iommu::v1::UnmapResponse>(
            ctx, ctx.client.Unmap(request), [&](const iommu::v1::UnmapResponse& r) {
              ctx.out << "unmapped " << HumanSize(r.bytes_unmapped()) << "\n";
            });
      });
  add("translate", "NAME IOVA [--access r|w|rw]", "emulate a DMA by the device", 2, 2, {"access"},
      [](Context& ctx, const Args& a) {
        iommu::v1::TranslateRequest request;
        request.set_device(a.positional[0]);
        request.set_iova(Number(a.positional[1], "IOVA"));
        request.set_access(Prot(a.Option("access", "r"), "--access"));
        return Print<iommu::v1::TranslateResponse>(
            ctx, ctx.client.Translate(request), [&](const iommu::v1::TranslateResponse& r) {
              if (r.fault() == iommu::v1::FAULT_REASON_NONE) {
                ctx.out << Hex(request.iova()) << " -> " << Hex(r.paddr()) << " (domain "
                        << r.domain_id() << ")\n";
              } else {
                ctx.out << "fault " << Short(iommu::v1::FaultReason_Name(r.fault()), "FAULT_REASON_")
                        << " at " << Hex(request.iova()) << " (domain " << r.domain_id() << ")\n";
              }
            });
      });

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
  return commands;
}

const std::map<std::string, Command>& Commands() {
  static const auto* const commands = new std::map<std::string, Command>(BuildCommands());
  return *commands;
}

}  // namespace

std::string FormatError(const absl::Status& status) {
  std::string line = absl::StrCat("iommuctl: ", absl::StatusCodeToString(status.code()));
  const std::string reason = ErrorReason(status);
  if (!reason.empty()) absl::StrAppend(&line, " ", reason);
  absl::StrAppend(&line, ": ", status.message());
  const ErrorMetadata metadata = GetErrorMetadata(status);
  if (!metadata.empty()) {
    std::vector<std::string> pairs;
    for (const auto& [key, value] : metadata) pairs.push_back(absl::StrCat(key, "=", value));
    absl::StrAppend(&line, " (", absl::StrJoin(pairs, " "), ")");
  }
  return line;
}

std::string Usage() {
  std::string text =
      "usage: iommuctl [--target unix:PATH|HOST:PORT] [--owner OWNER] [--timeout 10s] "
      "[-o json|table|wide] COMMAND [ARGS]\n"
      "       iommuctl --version\n"
      "  --target   default $IOMMUD_TARGET, else unix:/run/iommud/iommud.sock\n"
      "  --owner    owner for claim/alloc/attach/map...: NAME becomes <your identity>/NAME;\n"
      "             default: your identity (uid:<your uid> on the unix socket)\n"
      "  --timeout  deadline of the call (and of connecting, at most 5s)\n"
      "  --tls-ca FILE --tls-cert FILE --tls-key FILE [--tls-server-name NAME]\n"
      "             mTLS for a HOST:PORT target (iommud's TCP listener requires it)\n"
      "  --request-id ID  idempotency key of a mutating command: a retry with the same ID is\n"
      "             answered with the first reply and acts once\n"
      "  --retries N  resend a mutating command up to N times while the daemon is unavailable,\n"
      "             with the same request id (random unless --request-id)\n"
      "  -o, --output json|table|wide  a table (default); a wide table (more columns for groups\n"
      "             and domains); or the response message as protobuf JSON\n"
      "  --json     the same as -o json\n"
      "Numbers: decimal, 0x hex, or sizes 4K 2M 1G.\n\ncommands:\n";
  // Two lines per command rather than a table: some argument lists are long.
  for (const auto& [name, command] : Commands()) {
    absl::StrAppend(&text, "  ", name, command.usage.empty() ? "" : " ", command.usage, "\n      ",
                    command.help, "\n");
  }
  absl::StrAppend(&text, "  help [COMMAND]\n      this text, or the help of COMMAND (also: "
                        "iommuctl COMMAND --help)\n",
                  "Exit codes: 0 ok, 1 refused or unreachable, 2 bad command line, 4 health: "
                  "not SERVING.\n");
  return text;
}

bool IsCommand(const std::string& name) { return name == "help" || Commands().count(name) != 0; }

std::string CommandHelp(const std::string& name) {
  auto found = Commands().find(name);
  if (found == Commands().end()) return "";
  const Command& command = found->second;
  std::string text = absl::StrCat("usage: iommuctl [GLOBAL OPTIONS] ", name,
                                  command.usage.empty() ? "" : " ", command.usage, "\n  ",
                                  command.help, "\n");
  if (!command.option_names.empty()) {
    std::vector<std::string> options;
    for (const std::string& option : command.option_names) options.push_back("--" + option);
    absl::StrAppend(&text, "options: ", absl::StrJoin(options, " "), "\n");
  }
  absl::StrAppend(&text,
                  "global options (--target, --owner, --timeout, -o/--output, --json, --tls-*, "
                  "--request-id, --retries): see iommuctl --help\n");
  return text;
}

bool IsHelpRequest(const std::vector<std::string>& command) {
  if (command.empty()) return false;
  if (command[0] == "help") return true;
  return std::any_of(command.begin() + 1, command.end(),
                     [](const std::string& arg) { return arg == "--help" || arg == "-h"; });
}

int RunHelp(const std::vector<std::string>& command, std::ostream& out, std::ostream& err) {
  std::string name;
  if (!command.empty() && command[0] != "help") {
    name = command[0];
  } else if (command.size() > 1) {
    name = command[1];
  }
  if (name.empty()) {
    out << Usage();
    return kExitOk;
  }
  const std::string help = CommandHelp(name);
  if (help.empty()) {
    err << FormatError(UsageError(absl::StrCat("unknown command '", name,
                                               "' (see iommuctl help)")))
        << "\n";
    return kExitUsage;
  }
  out << help;
  return kExitOk;
}

namespace {

// Sets the output format `value` ("json", "table", "wide") given as `given_as` (for the error);
// `*seen` is the first format given ("" before), which a later one must agree with.
absl::Status SetOutputFormat(const std::string& value, const std::string& given_as,
                             std::string* seen, CliOptions* options) {
  OutputFormat format;
  if (value == "json") {
    format = OutputFormat::kJson;
  } else if (value == "table") {
    format = OutputFormat::kTable;
  } else if (value == "wide") {
    format = OutputFormat::kWide;
  } else {
    return UsageError(absl::StrCat(given_as, " takes json, table or wide, not '", value, "'"));
  }
  if (!seen->empty() && format != options->output) {
    return UsageError(absl::StrCat(given_as, " conflicts with ", *seen));
  }
  if (seen->empty()) *seen = given_as;
  options->output = format;
  options->json = format == OutputFormat::kJson;
  return absl::OkStatus();
}

// An output option at argv[*i] (--json, -o F, -oF, --output F, --output=F): applies it, advances
// *i past its value and returns true; false when argv[*i] is not one.
absl::StatusOr<bool> ParseOutputOption(const std::vector<std::string>& argv, size_t* i,
                                       std::string* seen, CliOptions* options) {
  const std::string& arg = argv[*i];
  std::string value;
  if (arg == "--json") {
    value = "json";
  } else if (arg == "-o" || arg == "--output") {
    if (*i + 1 >= argv.size()) return UsageError(absl::StrCat(arg, " needs json, table or wide"));
    value = argv[++*i];
  } else if (absl::StartsWith(arg, "--output=")) {
    value = arg.substr(std::strlen("--output="));
  } else if (absl::StartsWith(arg, "-o") && !absl::StartsWith(arg, "--")) {
    value = arg.substr(2);
  } else {
    return false;
  }
  if (absl::Status set = SetOutputFormat(value, arg == "--json" ? "--json" : "-o " + value, seen,
                                         options);
      !set.ok()) {
    return set;
  }
  return true;
}

}  // namespace

absl::Status ParseGlobalOptions(const std::vector<std::string>& argv, CliOptions* options,
                                std::vector<std::string>* command) {
  command->clear();
  std::string output_seen;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    absl::StatusOr<bool> output = ParseOutputOption(argv, &i, &output_seen, options);
    if (!output.ok()) return output.status();
    if (*output) continue;
    if (!command->empty()) {
      command->push_back(arg);
      continue;
    }
    if (arg == "-h" || arg == "--help") {
      command->push_back("help");
      continue;
    }
    if (!absl::StartsWith(arg, "--")) {
      command->push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    const size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (i + 1 < argv.size()) {
      value = argv[++i];
    } else {
      return UsageError(absl::StrCat("--", name, " needs a value"));
    }
    if (name == "target") {
      options->target = value;
    } else if (name == "owner") {
      options->owner = value;
    } else if (name == "tls-ca") {
      options->tls_ca = value;
    } else if (name == "tls-cert") {
      options->tls_cert = value;
    } else if (name == "tls-key") {
      options->tls_key = value;
    } else if (name == "tls-server-name") {
      options->tls_server_name = value;
    } else if (name == "request-id") {
      options->request_id = value;
    } else if (name == "retries") {
      if (!absl::SimpleAtoi(value, &options->retries) || options->retries < 0 ||
          options->retries > 100) {
        return UsageError(absl::StrCat("--retries takes a count 0..100, not '", value, "'"));
      }
    } else if (name == "timeout") {
      if (!absl::ParseDuration(value, &options->timeout)) {
        return UsageError(absl::StrCat("--timeout takes a duration like 10s, not '", value, "'"));
      }
    } else {
      return UsageError(absl::StrCat("unknown option --", name, " (see iommuctl help)"));
    }
  }
  return absl::OkStatus();
}

int RunCommand(IommuClient& client, const CliOptions& options,
               const std::vector<std::string>& command, std::ostream& out, std::ostream& err) {
  if (command.empty()) {
    out << Usage();
    return kExitUsage;
  }
  if (IsHelpRequest(command)) return RunHelp(command, out, err);
  auto found = Commands().find(command[0]);
  if (found == Commands().end()) {
    err << FormatError(UsageError(absl::StrCat("unknown command '", command[0],
                                               "' (see iommuctl help)")))
        << "\n";
    return kExitUsage;
  }
  const Command& spec = found->second;
  const std::string usage = absl::StrCat("usage: iommuctl ", command[0], " ", spec.usage);
  Args args;
  for (size_t i = 1; i < command.size(); ++i) {
    const std::string& arg = command[i];
    if (!absl::StartsWith(arg, "--")) {
      args.positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    const size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (kFlagOptions.count(name) != 0) {
      value = "true";  // a flag: no value follows
    } else if (i + 1 < command.size()) {
      value = command[++i];
    } else {
      err << FormatError(UsageError(absl::StrCat("--", name, " needs a value; ", usage))) << "\n";
      return kExitUsage;
    }
    if (spec.option_names.count(name) == 0) {
      err << FormatError(UsageError(absl::StrCat("unknown option --", name, "; ", usage))) << "\n";
      return kExitUsage;
    }
    args.options.emplace(name, value);
  }
  if (args.positional.size() < spec.min_args || args.positional.size() > spec.max_args) {
    err << FormatError(UsageError(usage)) << "\n";
    return kExitUsage;
  }
  if (absl::Status valid = ValidateArgs(spec.usage, args); !valid.ok()) {
    err << FormatError(valid) << "\n";
    return kExitUsage;
  }
  Context ctx{client, options, out};
  const absl::Status status = spec.run(ctx, args);
  if (!status.ok()) {
    err << FormatError(status) << "\n";
    return kExitRpcError;
  }
  return ctx.exit_code;
}

}  // namespace iommud

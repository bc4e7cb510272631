#include "clients/iommuctl/command_table.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>

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
#include "core/error.h"
#include "core/error_reasons.h"

namespace iommud {
namespace iommuctl {

void CommandAdder::operator()(std::string name, std::string usage, std::string help,
                              size_t min_args, size_t max_args,
                              std::set<std::string> option_names, Handler run) const {
  commands_[std::move(name)] = Command{std::move(usage), std::move(help), std::move(option_names),
                                       min_args, max_args, std::move(run)};
}

absl::Status UsageError(const std::string& message) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kUsage, message);
}

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
                                                     "UID", "GID", "FROM_DOMAIN", "TO_DOMAIN"};
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
  if (wide) header.insert(header.end(), {"CLAIMED", "ATTACHED", "LEASE_EXPIRY"});
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
      row.push_back(OrDash(absl::StrJoin(g.attached_devices(), ",")));
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

void PrintLeaks(Context& ctx,
                const google::protobuf::RepeatedPtrField<iommu::v1::LeakedAttachment>& leaks) {
  Table table({"REASON", "UNIT", "GROUP", "DOMAIN", "RID", "DEVICE", "OWNER"});
  for (const auto& leak : leaks) {
    table.AddRow({leak.reason(), OrDash(leak.unit()), absl::StrCat(leak.group_id()),
                  absl::StrCat(leak.domain_id()), Hex(leak.rid()), OrDash(leak.device()),
                  OrDash(leak.owner())});
  }
  ctx.out << table.Render();
}

}  // namespace iommuctl
}  // namespace iommud

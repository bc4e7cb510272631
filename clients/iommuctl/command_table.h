// The pieces every iommuctl command area shares (internal to iommuctl_lib): a subcommand's
// arguments, what it runs with, its table entry, the argument conversions and the output helpers.
// Each area of subcommands lives in a file of its own (commands_<area>.cc) and adds its entries to
// the one table through Add<Area>Commands; commands.cc assembles the table and runs it.
#ifndef IOMMUD_CLIENTS_IOMMUCTL_COMMAND_TABLE_H_
#define IOMMUD_CLIENTS_IOMMUCTL_COMMAND_TABLE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "clients/cpp/iommud_client.h"
#include "clients/iommuctl/commands.h"

namespace iommud {
namespace iommuctl {

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

absl::Status UsageError(const std::string& message);

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

// Every subcommand by name.
using CommandTable = std::map<std::string, Command>;

// add(name, usage, help, min_args, max_args, option_names, run): one entry of `commands`.
class CommandAdder {
 public:
  explicit CommandAdder(CommandTable& commands) : commands_(commands) {}
  void operator()(std::string name, std::string usage, std::string help, size_t min_args,
                  size_t max_args, std::set<std::string> option_names, Handler run) const;

 private:
  CommandTable& commands_;
};

// The areas (one file each).
void AddInventoryCommands(CommandTable& commands);      // commands_inventory.cc
void AddDeviceCommands(CommandTable& commands);         // commands_devices.cc
void AddOwnershipCommands(CommandTable& commands);      // commands_ownership.cc (and leases)
void AddDomainCommands(CommandTable& commands);         // commands_domains.cc
void AddMemoryCommands(CommandTable& commands);         // commands_memory.cc (regions, mappings)
void AddObservabilityCommands(CommandTable& commands);  // commands_observability.cc
void AddFaultCommands(CommandTable& commands);          // commands_faults.cc (admin)

// --- Conversions and formatting (command_table.cc) ---
std::string Json(const google::protobuf::Message& message);
// Enum names without their prefix: DOMAIN_TYPE_UNMANAGED -> UNMANAGED.
std::string Short(const std::string& name, absl::string_view prefix);
std::string TypeName(iommu::v1::DomainType type);
std::string ProtName(uint32_t prot);
std::string OrDash(const std::string& text);
// A page-size bitmap as sizes: 4K|2M|1G ("-" for none).
std::string PageSizes(uint64_t bitmap);
// A group's lease: "-" or its expiry (UTC) and TTL, e.g. "12:00:30Z (30s)".
std::string LeaseText(const iommu::v1::Group& group);
// --lease DURATION (already validated: positive) in milliseconds, at least 1 (the daemon judges
// the range); 0 when not given.
uint64_t LeaseMillis(const std::string& text);
// Conversions of arguments RunCommand has already validated (ValidateArgs), so they cannot fail.
absl::StatusOr<uint64_t> CheckNumber(const std::string& text, const std::string& what);
uint64_t Number(const std::string& text, const std::string& what);
absl::StatusOr<uint32_t> CheckRid(const std::string& text);
uint32_t Rid(const std::string& text);
absl::StatusOr<uint32_t> CheckProt(const std::string& text, const std::string& what);
uint32_t Prot(const std::string& text, const std::string& what);
absl::StatusOr<iommu::v1::DomainType> CheckDomainType(const std::string& text);
iommu::v1::DomainType DomainType(const std::string& text);
absl::StatusOr<iommu::v1::EventKind> CheckEventKind(const std::string& text);
absl::Status CheckDuration(const std::string& text, const std::string& what);
// Checks every argument whose usage word or option name says it is a number, RID, protection,
// domain type, event kind or duration, before anything is sent.
absl::Status ValidateArgs(const std::string& usage, const Args& args);

// --- Output of resources ---
void PrintGroups(Context& ctx, const std::vector<iommu::v1::Group>& groups);
void PrintDevices(Context& ctx, const std::vector<iommu::v1::Device>& devices);
// One device: its PrintDevices row, then its reserved regions, one per line.
void PrintDeviceDetail(Context& ctx, const iommu::v1::Device& device);
// --reserved START:LENGTH:TYPE (TYPE direct, direct-relaxable, reserved, msi, sw-msi; numbers as
// for every other argument). USAGE for anything else.
absl::StatusOr<iommu::v1::ReservedRegion> ParseReservedRegion(const std::string& text);
void PrintDomains(Context& ctx, const std::vector<iommu::v1::Domain>& domains);
void PrintRegions(Context& ctx, const std::vector<iommu::v1::MemoryRegion>& regions);
absl::Status PrintGroup(Context& ctx, const absl::StatusOr<iommu::v1::Group>& group);
absl::Status PrintDomain(Context& ctx, const absl::StatusOr<iommu::v1::Domain>& domain);
void PrintLeaks(Context& ctx,
                const google::protobuf::RepeatedPtrField<iommu::v1::LeakedAttachment>& leaks);

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

// JSON output of a list: {"<field>": [...]} built from a response message of all pages.
template <typename Response, typename Item>
void PrintListJson(Context& ctx, const std::vector<Item>& items,
                   google::protobuf::RepeatedPtrField<Item>* (Response::*mutable_items)()) {
  Response response;
  for (const Item& item : items) *(response.*mutable_items)()->Add() = item;
  ctx.out << Json(response) << "\n";
}

}  // namespace iommuctl
}  // namespace iommud

#endif  // IOMMUD_CLIENTS_IOMMUCTL_COMMAND_TABLE_H_

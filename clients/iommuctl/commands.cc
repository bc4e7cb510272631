#include "clients/iommuctl/commands.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

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

namespace {

using iommuctl::Args;
using iommuctl::Command;
using iommuctl::CommandTable;
using iommuctl::Context;
using iommuctl::UsageError;
using iommuctl::ValidateArgs;

// Options that are flags: given alone (--force), they take no value.
const std::set<std::string> kFlagOptions = {"force", "hold", "bind"};

// The one table of subcommands, assembled from the areas (command_table.h).
CommandTable BuildCommands() {
  CommandTable commands;
  iommuctl::AddInventoryCommands(commands);
  iommuctl::AddDeviceCommands(commands);
  iommuctl::AddOwnershipCommands(commands);
  iommuctl::AddDomainCommands(commands);
  iommuctl::AddMemoryCommands(commands);
  iommuctl::AddObservabilityCommands(commands);
  iommuctl::AddFaultCommands(commands);
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

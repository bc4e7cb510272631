// iommuctl's subcommands, one per RPC of iommu.v1.Iommu, separated from main() so that tests can
// run them against any server and capture their output.
#ifndef IOMMUD_CLIENTS_IOMMUCTL_COMMANDS_H_
#define IOMMUD_CLIENTS_IOMMUCTL_COMMANDS_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "clients/cpp/iommud_client.h"

namespace iommud {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRpcError = 1;  // the daemon refused or could not be reached
inline constexpr int kExitUsage = 2;     // bad command line
// `health` only: the daemon answered, and the service is not SERVING (NOT_SERVING, UNKNOWN,
// SERVICE_UNKNOWN): the exit code grpc_health_probe uses for an unhealthy service.
inline constexpr int kExitNotServing = 4;

// -o/--output: a table (default), a wider table (more columns for groups and domains; the same
// table elsewhere), or the response message as protobuf JSON (= --json).
enum class OutputFormat { kTable, kWide, kJson };

struct CliOptions {
  std::string target;  // default: $IOMMUD_TARGET, else unix:/run/iommud/iommud.sock
  absl::Duration timeout = absl::Seconds(10);
  std::string owner;   // default: "" = the caller's identity (the daemon prefixes others with it)
  OutputFormat output = OutputFormat::kTable;
  bool json = false;  // output == kJson; ParseGlobalOptions keeps the two in step
  // mTLS for host:port targets: PEM files (see ClientOptions).
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  // --request-id ID: the id of the (mutating) call; --retries N: resend it on UNAVAILABLE up to N
  // times with the same id (a random one when --request-id is not given). See ClientOptions.
  std::string request_id;
  int retries = 0;
};

// Splits the command line into global options (before the subcommand; --json and -o/--output
// anywhere) and the subcommand with its arguments. `*command` is empty when none was given.
// INVALID_ARGUMENT (USAGE) for an unknown global option, a missing value, an output format other
// than json/table/wide, or two output formats that disagree (--json -o table).
absl::Status ParseGlobalOptions(const std::vector<std::string>& argv, CliOptions* options,
                                std::vector<std::string>* command);

// The help text: every subcommand with its arguments.
std::string Usage();
// Whether `name` is a subcommand (help included).
bool IsCommand(const std::string& name);
// The help of one subcommand: its usage line, what it does and its options.
// "" for an unknown subcommand.
std::string CommandHelp(const std::string& name);

// Whether `command` asks for help and needs no daemon: "help [COMMAND]", or a subcommand with
// -h/--help among its arguments.
bool IsHelpRequest(const std::vector<std::string>& command);
// Answers a help request (IsHelpRequest): the general usage for "help", the subcommand's help
// for "help COMMAND" and "COMMAND --help". kExitOk, or kExitUsage for an unknown subcommand.
int RunHelp(const std::vector<std::string>& command, std::ostream& out, std::ostream& err);

// Runs `command` (command[0] is the subcommand) through `client`; prints results to `out` (a table,
// or JSON with options.json) and errors to `err` as
//   iommuctl: <CODE> <REASON>: <message> (key=value ...)
// Returns kExitOk, kExitRpcError or kExitUsage (kExitNotServing: `health` of a service that is
// not SERVING). Help requests (IsHelpRequest) are answered without calling the daemon.
int RunCommand(IommuClient& client, const CliOptions& options,
               const std::vector<std::string>& command, std::ostream& out, std::ostream& err);

// The error line of a failed status (without the trailing newline).
std::string FormatError(const absl::Status& status);

}  // namespace iommud

#endif  // IOMMUD_CLIENTS_IOMMUCTL_COMMANDS_H_

// iommuctl: the command-line client of iommud. See `iommuctl help`.

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "clients/cpp/iommud_client.h"
#include "clients/iommuctl/commands.h"
#include "iommud_version.h"

int main(int argc, char** argv) {
  iommud::CliOptions options;
  const char* env_target = std::getenv("IOMMUD_TARGET");
  options.target = env_target != nullptr && *env_target != '\0' ? env_target
                                                                  : "unix:/run/iommud/iommud.sock";
  // Empty: the daemon uses the caller's own identity (uid:<n> on the unix socket).
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 1 && (args[0] == "--version" || args[0] == "-version")) {
    std::cout << iommud::VersionLine("iommuctl") << "\n";
    return iommud::kExitOk;
  }
  std::vector<std::string> command;
  absl::Status parsed = iommud::ParseGlobalOptions(args, &options, &command);
  if (!parsed.ok()) {
    std::cerr << iommud::FormatError(parsed) << "\n";
    return iommud::kExitUsage;
  }
  if (command.empty()) {
    std::cout << iommud::Usage();
    return iommud::kExitUsage;
  }
  // Help needs no daemon: answered before connecting.
  if (iommud::IsHelpRequest(command)) return iommud::RunHelp(command, std::cout, std::cerr);
  if (!iommud::IsCommand(command[0])) {
    std::cerr << "iommuctl: unknown command '" << command[0] << "' (see iommuctl help)\n";
    return iommud::kExitUsage;
  }
  iommud::ClientOptions client_options;
  client_options.target = options.target;
  client_options.rpc_timeout = options.timeout;
  client_options.tls_ca = options.tls_ca;
  client_options.tls_cert = options.tls_cert;
  client_options.tls_key = options.tls_key;
  client_options.tls_server_name = options.tls_server_name;
  client_options.request_id = options.request_id;
  client_options.retry_mutations = options.retries;
  client_options.connect_timeout = std::min(options.timeout, absl::Seconds(5));
  absl::StatusOr<std::unique_ptr<iommud::IommuClient>> client =
      iommud::IommuClient::Connect(client_options);
  if (!client.ok()) {
    std::cerr << iommud::FormatError(client.status()) << "\n";
    return iommud::kExitRpcError;
  }
  return iommud::RunCommand(**client, options, command, std::cout, std::cerr);
}

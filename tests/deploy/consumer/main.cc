// consumer TARGET: connects an IommuClient to the iommud at TARGET, prints the target and how many
// groups the daemon lists. Exit 0 when both worked, 1 otherwise. Built only against the installed
// headers and libraries (tests/deploy/install_test.sh).
#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clients/cpp/iommud_client.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: consumer TARGET\n");
    return 2;
  }
  iommud::ClientOptions options;
  options.target = argv[1];
  options.connect_timeout = absl::Seconds(10);
  absl::StatusOr<std::unique_ptr<iommud::IommuClient>> client =
      iommud::IommuClient::Connect(options);
  if (!client.ok()) {
    std::fprintf(stderr, "consumer: %s\n", client.status().ToString().c_str());
    return 1;
  }
  std::printf("target: %s\n", options.target.c_str());
  auto groups = (*client)->ListAllGroups();
  if (!groups.ok()) {
    std::fprintf(stderr, "consumer: ListAllGroups: %s\n", groups.status().ToString().c_str());
    return 1;
  }
  std::printf("groups: %zu\n", groups->size());
  return 0;
}

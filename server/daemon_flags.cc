#include "server/daemon_flags.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/error.h"
#include "core/error_reasons.h"

namespace iommud {
namespace {

absl::Status InvalidFlag(absl::string_view flag, absl::string_view value, absl::string_view why) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidFlag,
               absl::StrCat("--", flag, "=", value, ": ", why),
               {{"flag", std::string(flag)}, {"value", std::string(value)}});
}

}  // namespace

absl::StatusOr<BackendOptions> ParseBackendOptions(const std::vector<std::string>& entries) {
  BackendOptions options;
  for (const std::string& entry : entries) {
    const size_t equals = entry.find('=');
    if (equals == std::string::npos || equals == 0) {
      return InvalidFlag("backend_opt", entry, "expected key=value");
    }
    std::string key = entry.substr(0, equals);
    if (!options.emplace(key, entry.substr(equals + 1)).second) {
      return InvalidFlag("backend_opt", entry, absl::StrCat("key '", key, "' given twice"));
    }
  }
  return options;
}

absl::StatusOr<FdStoreMode> ParseFdStoreMode(absl::string_view value) {
  if (value == "auto") return FdStoreMode::kAuto;
  if (value == "off") return FdStoreMode::kOff;
  if (value == "required") return FdStoreMode::kRequired;
  return InvalidFlag("fd_store", value, "expected auto, off or required");
}

absl::StatusOr<DomainType> ParseDefaultDomainType(absl::string_view value) {
  const std::string upper = absl::AsciiStrToUpper(value);
  if (upper == "DMA") return DomainType::kDma;
  if (upper == "DMA_FQ") return DomainType::kDmaFq;
  if (upper == "IDENTITY") return DomainType::kIdentity;
  return InvalidFlag("default_domain_type", value, "expected DMA, DMA_FQ or IDENTITY");
}

void NormalizeFlagNames(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    char* arg = argv[i];
    if (arg[0] != '-' || arg[1] != '-') continue;
    if (arg[2] == '\0') return;  // "--": the rest is not flags
    if (!absl::ascii_isalpha(static_cast<unsigned char>(arg[2]))) continue;
    for (char* c = arg + 2; *c != '\0' && *c != '='; ++c) {
      if (*c == '-') *c = '_';
    }
  }
}

std::vector<std::string> ExtractRepeatedFlag(absl::string_view name, int* argc, char** argv) {
  std::vector<std::string> values;
  int out = 1;
  int in = 1;
  for (; in < *argc; ++in) {
    absl::string_view arg = argv[in];
    if (arg == "--") break;
    absl::string_view rest = arg;
    if (!absl::ConsumePrefix(&rest, "--")) absl::ConsumePrefix(&rest, "-");
    if (rest.size() == arg.size() || !absl::ConsumePrefix(&rest, name)) {
      argv[out++] = argv[in];
      continue;
    }
    if (absl::ConsumePrefix(&rest, "=")) {
      values.emplace_back(rest);
    } else if (rest.empty() && in + 1 < *argc) {
      values.emplace_back(argv[++in]);
    } else {
      argv[out++] = argv[in];  // another flag sharing the prefix, or no value: absl decides
    }
  }
  for (; in < *argc; ++in) argv[out++] = argv[in];
  *argc = out;
  argv[out] = nullptr;
  return values;
}

}  // namespace iommud

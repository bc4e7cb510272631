#include "core/backend/backend_factory.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "core/backend/emulated/emulated_backend.h"
#include "core/backend/software/software_backend.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/host/linux_backend.h"
#include "core/sync.h"

namespace iommud {
namespace {

struct FactoryTable {
  absl::Mutex mu;
  std::map<std::string, BackendFactory, std::less<>> factories ABSL_GUARDED_BY(mu);
};

FactoryTable& TableWithBuiltins() {
  static FactoryTable* const table = [] {
    FactoryTable* t = new FactoryTable;
    MutexLock lock(&t->mu);
    t->factories.emplace("software", [](const BackendOptions& options, const BackendHooks& hooks) {
      return NewSoftwareBackend(options, hooks.faults);  // nothing of it outlives the process
    });
    t->factories.emplace("emulated", &NewEmulatedBackend);
    t->factories.emplace("linux", &host::NewLinuxBackend);  // a real host, through VFIO
    return t;
  }();
  return *table;
}

}  // namespace

absl::Status RegisterBackend(absl::string_view name, BackendFactory factory) {
  FactoryTable& table = TableWithBuiltins();
  MutexLock lock(&table.mu);
  if (!table.factories.emplace(std::string(name), std::move(factory)).second) {
    return Error(absl::StatusCode::kAlreadyExists, reason::kBackendExists,
                 absl::StrCat("backend '", name, "' is already registered"), {{"backend", std::string(name)}});
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<IommuBackend>> CreateBackend(absl::string_view name,
                                                            const BackendOptions& options,
                                                            const BackendHooks& hooks) {
  BackendFactory factory;
  {
    FactoryTable& table = TableWithBuiltins();
    MutexLock lock(&table.mu);
    auto it = table.factories.find(name);
    if (it == table.factories.end()) {
      std::vector<std::string> names;
      for (const auto& [known, unused] : table.factories) names.push_back(known);
      return Error(absl::StatusCode::kNotFound, reason::kUnknownBackend,
                   absl::StrCat("no backend named '", name, "' (known: ", absl::StrJoin(names, ", "), ")"),
                   {{"backend", std::string(name)}});
    }
    factory = it->second;
  }
  return factory(options, hooks);
}

std::vector<std::string> BackendNames() {
  FactoryTable& table = TableWithBuiltins();
  MutexLock lock(&table.mu);
  std::vector<std::string> names;
  for (const auto& [name, unused] : table.factories) names.push_back(name);
  return names;
}

}  // namespace iommud

// kill -9 of the real iommud in the middle of a random workload, many times, for both backends.
//
// A client thread runs a seeded random workload of mutating RPCs (probe/release devices,
// claim/release ownership, alloc/free domains, attach/detach, map/unmap) and keeps a model of the
// state every acknowledged call left. The test waits for a random number of acknowledged calls,
// waits a random 0-2 ms more (so that calls are in flight) and SIGKILLs the
// daemon, then restarts it on the same state directory (and, for the emulated backend, the same
// memory file: the hardware outlives the daemon) and checks:
//   - the daemon state equals the model, or the model with the one call that was in flight applied
//     completely (never a part of it);
//   - registry and hardware agree: Audit finds no leak and Reconcile has nothing to repair;
//   - the call in flight, retried with its request_id, succeeds and leaves the model with that call
//     applied exactly once (replayed if it had been applied before the kill, run if not);
// then continues the workload. IOMMUD_CRASH_ROUNDS sets the kills per backend (default 15),
// IOMMUD_CRASH_SEED the seed (default: random, printed).
#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "clients/cpp/iommud_client.h"
#include "core/sync.h"
#include "gtest/gtest.h"
#include "tests/server/daemon_fixture.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::iommud::test::TempDir;
using ::iommud::test::TestDaemon;
using ::iommud::test::TestDaemonOptions;

constexpr char kOwner[] = "vmm";
constexpr uint64_t k2M = 0x200000;
constexpr int kDevices = 8;   // "0000:01:0N.0", RID 0x10 + 8N, each its own group
constexpr int kIovaSlots = 32;  // 2M-aligned slots a mapping may start at
constexpr int kMaxDomains = 4;

std::string DeviceName(int index) { return absl::StrFormat("0000:01:%02x.0", index); }
uint32_t DeviceRid(int index) { return 0x10 + 8 * index; }

std::string Topology() {
  std::string text = R"textpb(
units { name: "u0" caps { pgsize_bitmap: 0x201000 iova_bits: 32 max_rids: 256 } }
)textpb";
  // Half the devices come from the topology; the others are probed by the workload.
  for (int i = 0; i < kDevices / 2; ++i) {
    absl::StrAppend(&text, "devices { unit: \"u0\" name: \"", DeviceName(i), "\" rid: ",
                    DeviceRid(i), " }\n");
  }
  return text;
}

int EnvInt(const char* name, int fallback) {
  const char* value = std::getenv(name);
  int parsed = 0;
  return value != nullptr && absl::SimpleAtoi(value, &parsed) ? parsed : fallback;
}

// What the daemon holds, in the terms the workload uses (group ids are the daemon's business).
struct Model {
  struct Device {
    bool owned = false;
    uint64_t domain = 0;  // the user domain the group is attached to; 0 = none (default/blocking)
    bool operator==(const Device& o) const { return owned == o.owned && domain == o.domain; }
  };
  struct Domain {
    std::map<uint64_t, uint64_t> mappings;  // iova -> size (paddr is a function of the iova)
    bool operator==(const Domain& o) const { return mappings == o.mappings; }
  };
  std::map<std::string, Device> devices;  // probed devices
  std::map<uint64_t, Domain> domains;     // user domains

  bool operator==(const Model& o) const { return devices == o.devices && domains == o.domains; }
  std::string DebugString() const {
    std::string text;
    for (const auto& [name, device] : devices) {
      absl::StrAppend(&text, name, device.owned ? " owned" : "", " domain=", device.domain, "\n");
    }
    for (const auto& [id, domain] : domains) {
      absl::StrAppend(&text, "domain ", id, ":");
      for (const auto& [iova, size] : domain.mappings) {
        absl::StrAppend(&text, absl::StrFormat(" %#x+%#x", iova, size));
      }
      absl::StrAppend(&text, "\n");
    }
    return text;
  }
};

uint64_t PaddrOf(uint64_t iova) { return 0x40000000 + iova; }

// The daemon's state as a Model; also checks what the model does not capture (each device's RID,
// mapping addresses, domains' owner).
absl::StatusOr<Model> ReadModel(IommuClient& client) {
  Model model;
  ASSIGN_OR_RETURN(std::vector<iommu::v1::Device> devices, client.ListAllDevices());
  ASSIGN_OR_RETURN(std::vector<iommu::v1::Group> groups, client.ListAllGroups());
  ASSIGN_OR_RETURN(std::vector<iommu::v1::Domain> domains, client.ListAllDomains());
  std::map<uint64_t, const iommu::v1::Group*> group_by_id;
  for (const auto& group : groups) group_by_id[group.id()] = &group;
  for (const auto& device : devices) {
    Model::Device& entry = model.devices[device.name()];
    auto group = group_by_id.find(device.group_id());
    if (group == group_by_id.end()) return absl::InternalError("device without group");
    entry.owned = !group->second->owner().empty();
    // An owned group not attached to a user domain is on its blocking domain.
    const uint64_t domain = group->second->domain_id();
    entry.domain = domain == group->second->default_domain_id() ||
                           domain == group->second->blocking_domain_id()
                       ? 0
                       : domain;
  }
  for (const auto& domain : domains) {
    if (domain.core_owned()) continue;
    if (domain.owner() != test::OwnOwner(kOwner)) {
      return absl::InternalError(absl::StrCat("domain owner ", domain.owner()));
    }
    Model::Domain& entry = model.domains[domain.id()];
    iommu::v1::ListMappingsRequest request;
    request.set_domain_id(domain.id());
    request.set_page_size(1000);
    ASSIGN_OR_RETURN(iommu::v1::ListMappingsResponse mappings, client.ListMappings(request));
    for (const auto& mapping : mappings.mappings()) {
      if (mapping.paddr() != PaddrOf(mapping.iova())) {
        return absl::InternalError(absl::StrFormat("mapping %#x has paddr %#x", mapping.iova(),
                                                   mapping.paddr()));
      }
      entry.mappings[mapping.iova()] = mapping.size();
    }
  }
  return model;
}

// One mutating call of the workload and what it does to the model once acknowledged.
struct Op {
  enum Kind { kProbe, kRelease, kClaim, kUnclaim, kAlloc, kFree, kAttach, kDetach, kMap, kUnmap };
  Kind kind = kProbe;
  std::string device;
  uint64_t domain = 0;
  uint64_t iova = 0;
  uint64_t size = 0;
  std::string request_id;  // every call carries one: its retry after a kill must not act twice

  std::string DebugString() const {
    return absl::StrFormat("op %d device=%s domain=%d iova=%#x size=%#x id=%s", kind, device,
                           domain, iova, size, request_id);
  }

  // Applies the op to `model`; `allocated` is the id of an allocated domain.
  void Apply(Model& model, uint64_t allocated) const {
    switch (kind) {
      case kProbe: model.devices[device] = {}; break;
      case kRelease: model.devices.erase(device); break;
      case kClaim: model.devices[device].owned = true; break;
      case kUnclaim: model.devices[device].owned = false; break;
      case kAlloc: model.domains[allocated] = {}; break;
      case kFree: model.domains.erase(domain); break;
      case kAttach: model.devices[device].domain = domain; break;
      case kDetach: model.devices[device].domain = 0; break;
      case kMap: model.domains[domain].mappings[iova] = size; break;
      case kUnmap: model.domains[domain].mappings.erase(iova); break;
    }
  }
};

// Picks a call that the model says must succeed.
class Workload {
 public:
  explicit Workload(uint64_t seed) : random_(seed) {}

  Op Next(const Model& model) {
    for (;;) {
      std::optional<Op> op = Try(model, static_cast<Op::Kind>(Pick(10)));
      if (op.has_value()) return *op;
    }
  }

  uint64_t Pick(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(random_); }

 private:
  template <typename Container, typename Predicate>
  std::optional<typename Container::key_type> PickKey(const Container& items, Predicate ok) {
    std::vector<typename Container::key_type> keys;
    for (const auto& [key, value] : items) {
      if (ok(value)) keys.push_back(key);
    }
    if (keys.empty()) return std::nullopt;
    return keys[Pick(keys.size())];
  }

  std::optional<Op> Try(const Model& model, Op::Kind kind) {
    Op op;
    op.kind = kind;
    auto any = [](const auto&) { return true; };
    switch (kind) {
      case Op::kProbe: {
        std::vector<std::string> absent;
        for (int i = 0; i < kDevices; ++i) {
          if (model.devices.count(DeviceName(i)) == 0) absent.push_back(DeviceName(i));
        }
        if (absent.empty()) return std::nullopt;
        op.device = absent[Pick(absent.size())];
        return op;
      }
      case Op::kRelease:
      case Op::kClaim: {
        auto device = PickKey(model.devices, [](const Model::Device& d) { return !d.owned; });
        if (!device) return std::nullopt;
        op.device = *device;
        return op;
      }
      case Op::kUnclaim:
      case Op::kAttach: {
        auto device = PickKey(model.devices,
                              [](const Model::Device& d) { return d.owned && d.domain == 0; });
        if (!device) return std::nullopt;
        op.device = *device;
        if (kind == Op::kUnclaim) return op;
        auto domain = PickKey(model.domains, any);
        if (!domain) return std::nullopt;
        op.domain = *domain;
        return op;
      }
      case Op::kDetach: {
        auto device = PickKey(model.devices, [](const Model::Device& d) { return d.domain != 0; });
        if (!device) return std::nullopt;
        op.device = *device;
        op.domain = model.devices.at(*device).domain;
        return op;
      }
      case Op::kAlloc:
        if (model.domains.size() >= kMaxDomains) return std::nullopt;
        return op;
      case Op::kFree: {
        std::set<uint64_t> attached;
        for (const auto& [name, device] : model.devices) attached.insert(device.domain);
        auto domain = PickKey(model.domains, [](const Model::Domain&) { return true; });
        if (!domain || attached.count(*domain) != 0) return std::nullopt;
        op.domain = *domain;
        return op;
      }
      case Op::kMap: {
        auto domain = PickKey(model.domains, any);
        if (!domain) return std::nullopt;
        op.domain = *domain;
        op.iova = Pick(kIovaSlots) * k2M;
        if (model.domains.at(*domain).mappings.count(op.iova) != 0) return std::nullopt;
        op.size = Pick(2) == 0 ? 0x1000 : k2M;
        return op;
      }
      case Op::kUnmap: {
        auto domain = PickKey(model.domains,
                              [](const Model::Domain& d) { return !d.mappings.empty(); });
        if (!domain) return std::nullopt;
        const auto& mappings = model.domains.at(*domain).mappings;
        auto it = mappings.begin();
        std::advance(it, Pick(mappings.size()));
        op.domain = *domain;
        op.iova = it->first;
        op.size = it->second;
        return op;
      }
    }
    return std::nullopt;
  }

  std::mt19937_64 random_;
};

// Sends `op`; on OK returns the allocated domain id (0 for other ops).
absl::StatusOr<uint64_t> Send(IommuClient& client, const Op& op, const Model& model) {
  auto group_of = [&](const std::string& device) -> absl::StatusOr<uint64_t> {
    iommu::v1::GetDeviceRequest request;
    request.set_device(device);
    ASSIGN_OR_RETURN(iommu::v1::Device found, client.GetDevice(request));
    return found.group_id();
  };
  switch (op.kind) {
    case Op::kProbe: {
      iommu::v1::ProbeDeviceRequest request;
      request.set_request_id(op.request_id);
      request.set_unit("u0");
      request.set_device(op.device);
      int index = 0;
      while (DeviceName(index) != op.device) ++index;
      request.set_rid(DeviceRid(index));
      RETURN_IF_ERROR(client.ProbeDevice(request).status());
      return 0;
    }
    case Op::kRelease: {
      iommu::v1::ReleaseDeviceRequest request;
      request.set_request_id(op.request_id);
      request.set_device(op.device);
      RETURN_IF_ERROR(client.ReleaseDevice(request).status());
      return 0;
    }
    case Op::kClaim:
    case Op::kUnclaim: {
      ASSIGN_OR_RETURN(uint64_t group, group_of(op.device));
      if (op.kind == Op::kClaim) {
        iommu::v1::ClaimOwnershipRequest request;
      request.set_request_id(op.request_id);
        request.set_group_id(group);
        request.set_owner(kOwner);
        RETURN_IF_ERROR(client.ClaimOwnership(request).status());
      } else {
        iommu::v1::ReleaseOwnershipRequest request;
      request.set_request_id(op.request_id);
        request.set_group_id(group);
        request.set_owner(kOwner);
        RETURN_IF_ERROR(client.ReleaseOwnership(request).status());
      }
      return 0;
    }
    case Op::kAlloc: {
      iommu::v1::AllocDomainRequest request;
      request.set_request_id(op.request_id);
      request.set_unit("u0");
      request.set_owner(kOwner);
      ASSIGN_OR_RETURN(iommu::v1::Domain domain, client.AllocDomain(request));
      return domain.id();
    }
    case Op::kFree: {
      iommu::v1::FreeDomainRequest request;
      request.set_request_id(op.request_id);
      request.set_domain_id(op.domain);
      request.set_owner(kOwner);
      RETURN_IF_ERROR(client.FreeDomain(request).status());
      return 0;
    }
    case Op::kAttach:
    case Op::kDetach: {
      ASSIGN_OR_RETURN(uint64_t group, group_of(op.device));
      if (op.kind == Op::kAttach) {
        iommu::v1::AttachGroupRequest request;
      request.set_request_id(op.request_id);
        request.set_group_id(group);
        request.set_domain_id(op.domain);
        request.set_owner(kOwner);
        RETURN_IF_ERROR(client.AttachGroup(request).status());
      } else {
        iommu::v1::DetachGroupRequest request;
      request.set_request_id(op.request_id);
        request.set_group_id(group);
        request.set_domain_id(op.domain);
        request.set_owner(kOwner);
        RETURN_IF_ERROR(client.DetachGroup(request).status());
      }
      return 0;
    }
    case Op::kMap: {
      iommu::v1::MapRequest request;
      request.set_request_id(op.request_id);
      request.set_domain_id(op.domain);
      request.set_iova(op.iova);
      request.set_paddr(PaddrOf(op.iova));
      request.set_size(op.size);
      request.set_owner(kOwner);
      RETURN_IF_ERROR(client.Map(request).status());
      return 0;
    }
    case Op::kUnmap: {
      iommu::v1::UnmapRequest request;
      request.set_request_id(op.request_id);
      request.set_domain_id(op.domain);
      request.set_iova(op.iova);
      request.set_size(op.size);
      request.set_owner(kOwner);
      ASSIGN_OR_RETURN(iommu::v1::UnmapResponse response, client.Unmap(request));
      if (response.bytes_unmapped() != op.size) {
        return absl::InternalError(absl::StrCat("unmapped ", response.bytes_unmapped()));
      }
      return 0;
    }
  }
  (void)model;
  return absl::InternalError("unknown op");
}

// The workload thread's shared state.
struct Progress {
  absl::Mutex mu;
  absl::CondVar changed;  // signalled when acknowledged or stopped changes
  Model model ABSL_GUARDED_BY(mu);
  std::optional<Op> in_flight ABSL_GUARDED_BY(mu);  // sent, not acknowledged
  uint64_t acknowledged ABSL_GUARDED_BY(mu) = 0;
  uint64_t sent ABSL_GUARDED_BY(mu) = 0;            // names the calls' request ids
  uint64_t kill_after ABSL_GUARDED_BY(mu) = 0;      // acknowledged calls before the kill
  std::string unexpected ABSL_GUARDED_BY(mu);       // an error a live daemon must not give
  bool stopped ABSL_GUARDED_BY(mu) = false;         // the loop ended (a call failed)
  std::atomic<bool> killing{false};                 // set just before the SIGKILL
};

// Runs ops until one fails (the daemon died). A failure while the daemon still runs is recorded.
void RunWorkload(IommuClient* client, Workload* workload, Progress* progress) {
  for (;;) {
    Op op;
    Model model;
    {
      MutexLock lock(&progress->mu);
      op = workload->Next(progress->model);
      op.request_id = absl::StrCat("op-", ++progress->sent);
      progress->in_flight = op;
      model = progress->model;
    }
    absl::StatusOr<uint64_t> result = Send(*client, op, model);
    MutexLock lock(&progress->mu);
    if (!result.ok()) {
      if (!progress->killing.load()) {
        progress->unexpected = absl::StrCat(op.DebugString(), ": ", result.status().ToString());
      }
      progress->stopped = true;
      progress->changed.SignalAll();
      return;
    }
    op.Apply(progress->model, *result);
    progress->in_flight.reset();
    ++progress->acknowledged;
    progress->changed.SignalAll();
  }
}

class CrashRecoveryTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CrashRecoveryTest, EveryAcknowledgedCallSurvivesKill9) {
  const int rounds = EnvInt("IOMMUD_CRASH_ROUNDS", 15);
  const uint64_t seed = EnvInt("IOMMUD_CRASH_SEED", static_cast<int>(std::random_device()() >> 1));
  SCOPED_TRACE(absl::StrCat("IOMMUD_CRASH_SEED=", seed));
  std::printf("crash test (%s): seed %llu, %d kills\n", GetParam().c_str(),
              static_cast<unsigned long long>(seed), rounds);
  TempDir dir;
  TestDaemonOptions options;
  options.state_dir = dir.path() + "/state";
  options.topology = Topology();
  options.flags = {"--audit_interval=0", absl::StrCat("--backend=", GetParam())};
  if (GetParam() == "emulated") {
    options.flags.push_back(absl::StrCat("--backend_opt=memory_file=", dir.path(), "/hw.mem"));
    options.flags.push_back("--backend_opt=memory_bytes=16M");
  }
  Workload workload(seed);
  Progress progress;
  {
    MutexLock lock(&progress.mu);
    for (int i = 0; i < kDevices / 2; ++i) progress.model.devices[DeviceName(i)] = {};
  }
  absl::Duration recovery_total;
  int in_flight_applied = 0;  // kills after which the call in flight turned out applied
  int in_flight_lost = 0;     // ... and not applied
  int retried = 0;            // calls in flight retried with their request_id after the restart
  for (int round = 0; round <= rounds; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    const absl::Time start = absl::Now();
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestDaemon> daemon, TestDaemon::Start(options));
    if (round > 0) recovery_total += absl::Now() - start;
    ClientOptions client_options;
    client_options.target = daemon->target();
    client_options.rpc_timeout = absl::Seconds(20);
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client,
                         IommuClient::Connect(client_options));

    // 1. The state is the model, or the model with the call in flight applied whole.
    ASSERT_OK_AND_ASSIGN(Model actual, ReadModel(*client));
    std::optional<Op> retry;   // the call in flight at the kill
    Model acknowledged_model;  // the state every acknowledged call left
    {
      MutexLock lock(&progress.mu);
      retry = progress.in_flight;
      acknowledged_model = progress.model;
      bool matches = actual == progress.model;
      if (matches && progress.in_flight.has_value()) ++in_flight_lost;
      if (!matches && progress.in_flight.has_value()) {
        Model applied = progress.model;
        uint64_t allocated = 0;
        for (const auto& [id, domain] : actual.domains) {
          if (progress.model.domains.count(id) == 0) allocated = id;
        }
        progress.in_flight->Apply(applied, allocated);
        matches = actual == applied;
        if (matches) {
          progress.model = applied;
          ++in_flight_applied;
        }
      }
      ASSERT_TRUE(matches) << "after " << progress.acknowledged << " acknowledged calls; in flight: "
                           << (progress.in_flight ? progress.in_flight->DebugString() : "none")
                           << "\nexpected:\n" << progress.model.DebugString() << "actual:\n"
                           << actual.DebugString() << "log:\n" << daemon->Log();
      progress.in_flight.reset();
      progress.stopped = false;
    }
    // 1b. The call in flight, retried with its request_id, acts once in all: the state is the
    // acknowledged model with that call applied exactly once (a second run would allocate a
    // second domain, fail an overlapping Map, unmap nothing, ...).
    if (retry.has_value()) {
      absl::StatusOr<uint64_t> result = Send(*client, *retry, acknowledged_model);
      ASSERT_TRUE(result.ok()) << retry->DebugString() << ": " << result.status()
                               << "\nlog:\n" << daemon->Log();
      Model expected = acknowledged_model;
      retry->Apply(expected, *result);
      ASSERT_OK_AND_ASSIGN(Model after_retry, ReadModel(*client));
      ASSERT_TRUE(after_retry == expected)
          << "retry of " << retry->DebugString() << "\nexpected:\n" << expected.DebugString()
          << "actual:\n" << after_retry.DebugString();
      ++retried;
      MutexLock lock(&progress.mu);
      progress.model = expected;
    }
    // 2. Registry and hardware agree.
    ASSERT_OK_AND_ASSIGN(iommu::v1::AuditResponse audit, client->Audit(iommu::v1::AuditRequest()));
    EXPECT_EQ(audit.leaks_size(), 0) << audit.ShortDebugString();
    ASSERT_OK_AND_ASSIGN(iommu::v1::ReconcileResponse reconcile,
                         client->Reconcile(iommu::v1::ReconcileRequest()));
    EXPECT_EQ(reconcile.repaired_size(), 0) << reconcile.ShortDebugString();
    if (round == rounds) break;

    // 3. More workload, then kill -9 after a random number of acknowledged calls, mid-call.
    absl::Duration delay;
    {
      MutexLock lock(&progress.mu);
      progress.kill_after = progress.acknowledged + 1 + workload.Pick(40);
      delay = absl::Microseconds(workload.Pick(2000));
    }
    progress.killing = false;
    std::thread worker(RunWorkload, client.get(), &workload, &progress);
    {
      MutexLock lock(&progress.mu);
      while (progress.acknowledged < progress.kill_after && !progress.stopped) {
        WaitWithDeadline(&progress.changed, &progress.mu, absl::InfiniteFuture());
      }
    }
    absl::SleepFor(delay);  // the kill lands at a random point of the next calls
    progress.killing = true;
    ASSERT_OK_AND_ASSIGN(int status, daemon->Stop(SIGKILL));
    EXPECT_EQ(status, 128 + SIGKILL);
    worker.join();
    MutexLock lock(&progress.mu);
    ASSERT_EQ(progress.unexpected, "");
  }
  MutexLock lock(&progress.mu);
  std::printf(
      "crash test (%s): %llu calls acknowledged; the call in flight at a kill was applied %d "
      "times, not applied %d times, retried with its request id %d times; mean "
      "restart-to-serving %s\n",
      GetParam().c_str(), static_cast<unsigned long long>(progress.acknowledged),
      in_flight_applied, in_flight_lost, retried,
      absl::FormatDuration(recovery_total / std::max(rounds, 1)).c_str());
}

INSTANTIATE_TEST_SUITE_P(Backends, CrashRecoveryTest, ::testing::Values("software", "emulated"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace iommud

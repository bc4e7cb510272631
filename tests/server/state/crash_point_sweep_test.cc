// The crash-point sweep: the real iommud killed at every durable step of a path, then restarted.
//
// In the spirit of crash-consistency checkers (ALICE, CrashMonkey), but on the daemon itself: the
// daemon's --test_crash_before_step=N (core/crash_points.h) makes it SIGKILL itself just before its
// N-th durable step (a state-store write, a write to the emulated backend's memory file, the
// topology marker), so every state a crash can leave is visited, deterministically. A count run
// first learns how many steps the path has (the daemon prints "durable steps counted: K" when it
// stops); then for N = 1..K the path runs from the same starting files, dies at step N, and a plain
// restart on the same state directory (and memory file: the emulated hardware outlives the daemon)
// must:
//   - start and serve, by itself;
//   - hold the state before the path or the state after it, nothing in between (for the first
//     start: the topology, whole);
//   - agree with the hardware: Audit finds no leak and Reconcile has nothing to repair;
//   - for a call: answer the call, retried with its request id, as if it ran exactly once.
// Paths: the first start (applying the topology to a new state directory), a recovery start (a
// store with owned groups, attached domains and mappings over fresh hardware, as after a host
// reboot) and one call of each mutating kind from a state that makes it do real work. Each test
// prints the crash points it covered. IOMMUD_CRASH_SWEEP_STRIDE=S visits every S-th point only
// (default 1: every point).
#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "clients/cpp/iommud_client.h"
#include "core/error.h"
#include "gtest/gtest.h"
#include "tests/server/daemon_fixture.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::iommud::test::SpawnDaemon;
using ::iommud::test::Subprocess;
using ::iommud::test::TempDir;
using ::iommud::test::TestDaemonOptions;

namespace fs = std::filesystem;

constexpr char kOwner[] = "vmm";
constexpr uint64_t k2M = 0x200000;
constexpr uint64_t k4K = 0x1000;
// kTestTopology's devices: A alone in its group on u0, B and C sharing RID 0x20 (one group).
constexpr char kDeviceA[] = "0000:01:00.0";
constexpr char kDeviceB[] = "0000:02:00.0";
constexpr char kDeviceC[] = "0000:02:00.1";
constexpr absl::Duration kExitTimeout = absl::Seconds(30);

int Stride() {
  const char* value = std::getenv("IOMMUD_CRASH_SWEEP_STRIDE");
  int stride = 1;
  return value != nullptr && absl::SimpleAtoi(value, &stride) && stride > 0 ? stride : 1;
}

// Makes `to` a copy of the regular files of `from` (the state file, its WAL, the memory file);
// sockets and what `to` held before are left out.
void CopyFiles(const std::string& from, const std::string& to) {
  fs::remove_all(to);
  fs::create_directories(to);
  fs::permissions(to, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
  for (const fs::directory_entry& entry : fs::directory_iterator(from)) {
    if (entry.is_regular_file()) fs::copy_file(entry.path(), fs::path(to) / entry.path().filename());
  }
}

// The daemon's state in terms that do not depend on the ids a crash may skip: groups are named by
// their devices, core-owned domains by their role, user domains by their rank (oldest first).
absl::StatusOr<std::string> DumpState(IommuClient& client) {
  ASSIGN_OR_RETURN(std::vector<iommu::v1::IommuUnit> units, client.ListAllUnits());
  ASSIGN_OR_RETURN(std::vector<iommu::v1::Device> devices, client.ListAllDevices());
  ASSIGN_OR_RETURN(std::vector<iommu::v1::Group> groups, client.ListAllGroups());
  ASSIGN_OR_RETURN(std::vector<iommu::v1::Domain> domains, client.ListAllDomains());
  std::map<uint64_t, std::string> domain_names;  // id -> canonical name
  int rank = 0;
  for (const iommu::v1::Domain& domain : domains) {  // in id order
    if (!domain.core_owned()) domain_names[domain.id()] = absl::StrCat("user", rank++);
  }
  std::string text;
  for (const iommu::v1::IommuUnit& unit : units) absl::StrAppend(&text, "unit ", unit.name(), "\n");
  std::map<uint64_t, std::string> group_names;
  for (const iommu::v1::Group& group : groups) {
    group_names[group.id()] = absl::StrCat("{", absl::StrJoin(group.devices(), ","), "}");
  }
  for (const iommu::v1::Device& device : devices) {
    absl::StrAppend(&text, "device ", device.name(), " unit=", device.unit(), " rid=", device.rid(),
                    " group=", group_names[device.group_id()], " binding=", device.binding(),
                    " attached=", device.attached(), "\n");
  }
  for (const iommu::v1::Group& group : groups) {
    std::string domain = "other";
    if (group.domain_id() == group.default_domain_id()) domain = "default";
    if (group.domain_id() == group.blocking_domain_id()) domain = "blocking";
    if (domain_names.count(group.domain_id()) != 0) domain = domain_names[group.domain_id()];
    std::vector<std::string> claimed(group.claimed_devices().begin(),
                                     group.claimed_devices().end());
    absl::StrAppend(&text, "group ", group_names[group.id()], " domain=", domain,
                    " owner=", group.owner(), " owner_cnt=", group.owner_cnt(),
                    " claimed=", absl::StrJoin(claimed, ","), " attached_devices=",
                    absl::StrJoin(group.attached_devices(), ","),
                    " lease_ttl_ms=", group.lease_ttl_millis(), "\n");
  }
  for (const iommu::v1::Domain& domain : domains) {
    if (domain.core_owned()) continue;
    iommu::v1::ListMappingsRequest request;
    request.set_domain_id(domain.id());
    ASSIGN_OR_RETURN(iommu::v1::ListMappingsResponse mappings, client.ListMappings(request));
    std::vector<std::string> attached;
    for (uint64_t group : domain.attached_group_ids()) attached.push_back(group_names[group]);
    absl::StrAppend(&text, "domain ", domain_names[domain.id()], " unit=", domain.unit(),
                    " type=", domain.type(), " owner=", domain.owner(),
                    " attached=", absl::StrJoin(attached, ","), " mappings=");
    for (const iommu::v1::Mapping& mapping : mappings.mappings()) {
      absl::StrAppend(&text, absl::StrFormat("%#x+%#x->%#x/%u ", mapping.iova(), mapping.size(),
                                             mapping.paddr(), mapping.prot()));
    }
    absl::StrAppend(&text, "\n");
  }
  return text;
}

// Registry and hardware agree: nothing leaked, nothing to repair. "" when so, else what is wrong.
std::string Disagreements(IommuClient& client) {
  absl::StatusOr<iommu::v1::AuditResponse> audit = client.Audit(iommu::v1::AuditRequest());
  if (!audit.ok()) return absl::StrCat("Audit: ", audit.status().ToString());
  if (audit->leaks_size() != 0) return absl::StrCat("Audit: ", audit->ShortDebugString());
  absl::StatusOr<iommu::v1::ReconcileResponse> reconcile =
      client.Reconcile(iommu::v1::ReconcileRequest());
  if (!reconcile.ok()) return absl::StrCat("Reconcile: ", reconcile.status().ToString());
  if (reconcile->repaired_size() != 0) {
    return absl::StrCat("Reconcile: ", reconcile->ShortDebugString());
  }
  return "";
}

// Ids of the objects the setup of a call made (the same in every run: each starts from the same
// files).
struct Ids {
  uint64_t group_a = 0;   // the group of kDeviceA
  uint64_t group_bc = 0;  // the group of kDeviceB and kDeviceC
  uint64_t domain = 0;    // the user domain the setup allocated, if any
  uint64_t domain2 = 0;   // a second one (ReplaceDomain's target), if any
};

// One mutating call of the sweep: what it needs first (run once, by a daemon without crash
// points), and the call itself.
struct CallCase {
  std::string name;
  std::function<absl::Status(IommuClient&, Ids*)> setup;
  std::function<absl::Status(IommuClient&, const Ids&)> call;
};

absl::StatusOr<uint64_t> GroupOf(IommuClient& client, const std::string& device) {
  iommu::v1::GetDeviceRequest request;
  request.set_device(device);
  ASSIGN_OR_RETURN(iommu::v1::Device found, client.GetDevice(request));
  return found.group_id();
}

absl::Status Claim(IommuClient& client, uint64_t group, uint64_t lease_ttl_millis = 0) {
  iommu::v1::ClaimOwnershipRequest request;
  request.set_group_id(group);
  request.set_owner(kOwner);
  request.set_lease_ttl_millis(lease_ttl_millis);
  return client.ClaimOwnership(request).status();
}

absl::Status Alloc(IommuClient& client, Ids* ids) {
  iommu::v1::AllocDomainRequest request;
  request.set_unit("u0");
  request.set_type(iommu::v1::DOMAIN_TYPE_UNMANAGED);
  request.set_owner(kOwner);
  ASSIGN_OR_RETURN(iommu::v1::Domain domain, client.AllocDomain(request));
  ids->domain = domain.id();
  return absl::OkStatus();
}

absl::Status AttachGroup(IommuClient& client, uint64_t group, uint64_t domain) {
  iommu::v1::AttachGroupRequest request;
  request.set_group_id(group);
  request.set_domain_id(domain);
  request.set_owner(kOwner);
  return client.AttachGroup(request).status();
}

// A mapping that takes a 2M leaf and two 4K leaves.
absl::Status MapSome(IommuClient& client, uint64_t domain) {
  iommu::v1::MapRequest request;
  request.set_domain_id(domain);
  request.set_iova(k2M);
  request.set_paddr(0x40000000 + k2M);
  request.set_size(k2M + 2 * k4K);
  request.set_owner(kOwner);
  return client.Map(request).status();
}

absl::Status Nothing(IommuClient&, Ids*) { return absl::OkStatus(); }

// Claims the shared-RID group, allocates a domain and attaches the group to it, with a mapping.
absl::Status OwnedAttachedMapped(IommuClient& client, Ids* ids) {
  RETURN_IF_ERROR(Claim(client, ids->group_bc));
  RETURN_IF_ERROR(Alloc(client, ids));
  RETURN_IF_ERROR(AttachGroup(client, ids->group_bc, ids->domain));
  return MapSome(client, ids->domain);
}

std::vector<CallCase> CallCases() {
  std::vector<CallCase> cases;
  cases.push_back({"ProbeDevice", Nothing, [](IommuClient& client, const Ids&) {
                     iommu::v1::ProbeDeviceRequest request;
                     request.set_unit("u0");
                     request.set_device("0000:03:00.0");
                     request.set_rid(0x30);
                     request.add_alias_rids(0x31);
                     return client.ProbeDevice(request).status();
                   }});
  cases.push_back({"ReleaseDevice", OwnedAttachedMapped, [](IommuClient& client, const Ids&) {
                     iommu::v1::ReleaseDeviceRequest request;
                     request.set_device(kDeviceC);
                     return client.ReleaseDevice(request).status();
                   }});
  cases.push_back({"UseDefaultDomain", Nothing, [](IommuClient& client, const Ids&) {
                     iommu::v1::UseDefaultDomainRequest request;
                     request.set_device(kDeviceA);
                     return client.UseDefaultDomain(request).status();
                   }});
  cases.push_back({"UnuseDefaultDomain",
                   [](IommuClient& client, Ids*) {
                     iommu::v1::UseDefaultDomainRequest request;
                     request.set_device(kDeviceA);
                     return client.UseDefaultDomain(request).status();
                   },
                   [](IommuClient& client, const Ids&) {
                     iommu::v1::UnuseDefaultDomainRequest request;
                     request.set_device(kDeviceA);
                     return client.UnuseDefaultDomain(request).status();
                   }});
  cases.push_back({"ClaimOwnership", Nothing, [](IommuClient& client, const Ids& ids) {
                     return Claim(client, ids.group_bc, /*lease_ttl_millis=*/3600000);
                   }});
  cases.push_back({"ReleaseOwnership", OwnedAttachedMapped, [](IommuClient& client, const Ids& ids) {
                     iommu::v1::ReleaseOwnershipRequest request;
                     request.set_group_id(ids.group_bc);
                     request.set_owner(kOwner);
                     return client.ReleaseOwnership(request).status();
                   }});
  cases.push_back({"ClaimDevice", Nothing, [](IommuClient& client, const Ids&) {
                     iommu::v1::ClaimDeviceRequest request;
                     request.set_device(kDeviceB);
                     request.set_owner(kOwner);
                     return client.ClaimDevice(request).status();
                   }});
  cases.push_back({"ReleaseDeviceOwnership",
                   [](IommuClient& client, Ids*) {
                     iommu::v1::ClaimDeviceRequest request;
                     request.set_device(kDeviceB);
                     request.set_owner(kOwner);
                     return client.ClaimDevice(request).status();
                   },
                   [](IommuClient& client, const Ids&) {
                     iommu::v1::ReleaseDeviceOwnershipRequest request;
                     request.set_device(kDeviceB);
                     request.set_owner(kOwner);
                     return client.ReleaseDeviceOwnership(request).status();
                   }});
  cases.push_back({"RenewLease",
                   [](IommuClient& client, Ids* ids) {
                     return Claim(client, ids->group_a, /*lease_ttl_millis=*/3600000);
                   },
                   [](IommuClient& client, const Ids& ids) {
                     iommu::v1::RenewLeaseRequest request;
                     request.set_group_id(ids.group_a);
                     request.set_owner(kOwner);
                     request.set_lease_ttl_millis(7200000);
                     return client.RenewLease(request).status();
                   }});
  cases.push_back({"AllocDomain", Nothing, [](IommuClient& client, const Ids&) {
                     Ids ignored;
                     return Alloc(client, &ignored);
                   }});
  cases.push_back({"FreeDomain", Alloc, [](IommuClient& client, const Ids& ids) {
                     iommu::v1::FreeDomainRequest request;
                     request.set_domain_id(ids.domain);
                     request.set_owner(kOwner);
                     return client.FreeDomain(request).status();
                   }});
  cases.push_back({"AttachDevice",
                   [](IommuClient& client, Ids* ids) {
                     RETURN_IF_ERROR(Claim(client, ids->group_a));
                     return Alloc(client, ids);
                   },
                   [](IommuClient& client, const Ids& ids) {
                     iommu::v1::AttachDeviceRequest request;
                     request.set_device(kDeviceA);
                     request.set_domain_id(ids.domain);
                     request.set_owner(kOwner);
                     return client.AttachDevice(request).status();
                   }});
  // The shared-RID group: kDeviceB attaches it (every RID), then kDeviceC joins (a record only).
  cases.push_back({"AttachDeviceFirstOfSharedGroup",
                   [](IommuClient& client, Ids* ids) {
                     RETURN_IF_ERROR(Claim(client, ids->group_bc));
                     RETURN_IF_ERROR(Alloc(client, ids));
                     return MapSome(client, ids->domain);
                   },
                   [](IommuClient& client, const Ids& ids) {
                     iommu::v1::AttachDeviceRequest request;
                     request.set_device(kDeviceB);
                     request.set_domain_id(ids.domain);
                     request.set_owner(kOwner);
                     return client.AttachDevice(request).status();
                   }});
  cases.push_back({"AttachDeviceJoin",
                   [](IommuClient& client, Ids* ids) {
                     RETURN_IF_ERROR(Claim(client, ids->group_bc));
                     RETURN_IF_ERROR(Alloc(client, ids));
                     iommu::v1::AttachDeviceRequest request;
                     request.set_device(kDeviceB);
                     request.set_domain_id(ids->domain);
                     request.set_owner(kOwner);
                     return client.AttachDevice(request).status();
                   },
                   [](IommuClient& client, const Ids& ids) {
                     iommu::v1::AttachDeviceRequest request;
                     request.set_device(kDeviceC);
                     request.set_domain_id(ids.domain);
                     request.set_owner(kOwner);
                     return client.AttachDevice(request).status();
                   }});
  // OwnedAttachedMapped attaches both devices (AttachGroup): kDeviceB leaves; then the last one
  // detaches the group.
  cases.push_back({"DetachDeviceNotLast", OwnedAttachedMapped,
                   [](IommuClient& client, const Ids& ids) {
                     iommu::v1::DetachDeviceRequest request;
                     request.set_device(kDeviceB);
                     request.set_domain_id(ids.domain);
                     request.set_owner(kOwner);
                     return client.DetachDevice(request).status();
                   }});
  cases.push_back({"DetachDeviceLast",
                   [](IommuClient& client, Ids* ids) {
                     RETURN_IF_ERROR(OwnedAttachedMapped(client, ids));
                     iommu::v1::DetachDeviceRequest request;
                     request.set_device(kDeviceB);
                     request.set_domain_id(ids->domain);
                     request.set_owner(kOwner);
                     return client.DetachDevice(request).status();
                   },
                   [](IommuClient& client, const Ids& ids) {
                     iommu::v1::DetachDeviceRequest request;
                     request.set_device(kDeviceC);
                     request.set_domain_id(ids.domain);
                     request.set_owner(kOwner);
                     return client.DetachDevice(request).status();
                   }});
  cases.push_back({"AttachGroup",
                   [](IommuClient& client, Ids* ids) {
                     RETURN_IF_ERROR(Claim(client, ids->group_bc));
                     RETURN_IF_ERROR(Alloc(client, ids));
                     return MapSome(client, ids->domain);
                   },
                   [](IommuClient& client, const Ids& ids) {
                     return AttachGroup(client, ids.group_bc, ids.domain);
                   }});
  cases.push_back({"DetachGroup", OwnedAttachedMapped, [](IommuClient& client, const Ids& ids) {
                     iommu::v1::DetachGroupRequest request;
                     request.set_group_id(ids.group_bc);
                     request.set_domain_id(ids.domain);
                     request.set_owner(kOwner);
                     return client.DetachGroup(request).status();
                   }});
  cases.push_back({"ReplaceDomain",
                   [](IommuClient& client, Ids* ids) {
                     RETURN_IF_ERROR(Alloc(client, ids));
                     ids->domain2 = ids->domain;
                     return OwnedAttachedMapped(client, ids);
                   },
                   [](IommuClient& client, const Ids& ids) {
                     iommu::v1::ReplaceDomainRequest request;
                     request.set_group_id(ids.group_bc);
                     request.set_from_domain_id(ids.domain);
                     request.set_to_domain_id(ids.domain2);
                     request.set_owner(kOwner);
                     return client.ReplaceDomain(request).status();
                   }});
  cases.push_back({"Map", Alloc, [](IommuClient& client, const Ids& ids) {
                     return MapSome(client, ids.domain);
                   }});
  cases.push_back({"Unmap",
                   [](IommuClient& client, Ids* ids) {
                     RETURN_IF_ERROR(Alloc(client, ids));
                     return MapSome(client, ids->domain);
                   },
                   [](IommuClient& client, const Ids& ids) {
                     iommu::v1::UnmapRequest request;
                     request.set_domain_id(ids.domain);
                     request.set_iova(k2M);
                     request.set_size(k2M + 2 * k4K);
                     request.set_owner(kOwner);
                     return client.Unmap(request).status();
                   }});
  cases.push_back({"UnmapAll",
                   [](IommuClient& client, Ids* ids) {
                     RETURN_IF_ERROR(Alloc(client, ids));
                     RETURN_IF_ERROR(MapSome(client, ids->domain));
                     iommu::v1::MapRequest request;
                     request.set_domain_id(ids->domain);
                     request.set_iova(0x40000000);
                     request.set_paddr(0x80000000);
                     request.set_size(k4K);
                     request.set_owner(kOwner);
                     return client.Map(request).status();
                   },
                   [](IommuClient& client, const Ids& ids) {
                     iommu::v1::UnmapRequest request;
                     request.set_domain_id(ids.domain);
                     request.set_iova(0);
                     request.set_size(std::numeric_limits<uint64_t>::max());
                     request.set_owner(kOwner);
                     return client.Unmap(request).status();
                   }});
  return cases;
}

// One backend's sweep: every daemon runs on a state directory of `dir_` with the same flags.
class CrashPointSweep {
 public:
  explicit CrashPointSweep(std::string backend) : backend_(std::move(backend)) {}

  const std::string& dir() const { return dir_.path(); }

  // Starts iommud on `state_dir` with `extra` flags; waits until it serves unless
  // `expect_serving` is false. The log is kept beside the state directory as `log_name`.
  absl::StatusOr<std::unique_ptr<Subprocess>> Start(const std::string& state_dir,
                                                    std::vector<std::string> extra,
                                                    const std::string& log_name,
                                                    bool wait_serving = true) const {
    TestDaemonOptions options;
    options.topology = test::kTestTopology;
    options.flags = {"--audit_interval=0", "--lease_reap_interval=0",
                     absl::StrCat("--backend=", backend_)};
    if (backend_ == "emulated") {
      options.flags.push_back(absl::StrCat("--backend_opt=memory_file=", state_dir, "/hw.mem"));
      options.flags.push_back("--backend_opt=memory_bytes=16M");
    }
    options.flags.insert(options.flags.end(), extra.begin(), extra.end());
    fs::create_directories(state_dir);
    ASSIGN_OR_RETURN(std::unique_ptr<Subprocess> process,
                     SpawnDaemon(options, state_dir, dir(), log_name));
    if (wait_serving) {
      RETURN_IF_ERROR(process->WaitForLog(
          absl::StrCat("iommud: serving on unix:", state_dir, "/iommud.sock\n"), kExitTimeout));
    }
    return process;
  }

  static absl::StatusOr<std::unique_ptr<IommuClient>> Connect(const std::string& state_dir,
                                                              const std::string& request_id = "") {
    ClientOptions options;
    options.target = absl::StrCat("unix:", state_dir, "/iommud.sock");
    options.rpc_timeout = absl::Seconds(20);
    options.request_id = request_id;
    return IommuClient::Connect(options);
  }

  // Stops a daemon with SIGTERM; an error unless it exits with status 0.
  static absl::Status StopCleanly(Subprocess& process) {
    RETURN_IF_ERROR(process.Signal(SIGTERM));
    ASSIGN_OR_RETURN(int status, process.WaitForExit(kExitTimeout));
    if (status != 0) {
      return absl::InternalError(absl::StrCat("exit status ", status, "\n", process.Log()));
    }
    return absl::OkStatus();
  }

  // Stops a daemon with SIGTERM and returns the durable steps it counted.
  static absl::StatusOr<uint64_t> StopAndCount(Subprocess& process) {
    RETURN_IF_ERROR(StopCleanly(process));
    const std::string log = process.Log();
    const std::string prefix = "iommud: durable steps counted: ";
    const size_t at = log.find(prefix);
    uint64_t steps = 0;
    if (at == std::string::npos ||
        !absl::SimpleAtoi(log.substr(at + prefix.size(),
                                     log.find('\n', at) - at - prefix.size()),
                          &steps)) {
      return absl::InternalError(absl::StrCat("no step count in the log:\n", log));
    }
    return steps;
  }

  // Waits for a daemon that was to crash at `step` and checks it died there. "" when it did.
  static std::string CheckCrashed(Subprocess& process, uint64_t step) {
    absl::StatusOr<int> status = process.WaitForExit(kExitTimeout);
    if (!status.ok()) return absl::StrCat("did not die: ", status.status().ToString());
    if (*status != 128 + SIGKILL) return absl::StrCat("exit status ", *status, "\n", process.Log());
    if (!absl::StrContains(process.Log(), absl::StrCat("iommud: crash point ", step, ": "))) {
      return absl::StrCat("died elsewhere than crash point ", step, ":\n", process.Log());
    }
    return "";
  }

 private:
  const std::string backend_;
  TempDir dir_;
};

std::vector<std::string> CrashFlags(uint64_t step, const char* phase) {
  return {absl::StrCat("--test_crash_before_step=", step),
          absl::StrCat("--test_crash_phase=", phase)};
}

void Report(const std::string& backend, const std::string& path, uint64_t steps,
            uint64_t covered) {
  std::printf("crash-point sweep (%s) %s: %llu durable steps, %llu crash points covered\n",
              backend.c_str(), path.c_str(), static_cast<unsigned long long>(steps),
              static_cast<unsigned long long>(covered));
  std::fflush(stdout);
}

// Sweeps the start of a daemon over the files of `initial` (an empty directory: the first start):
// each start killed at a crash point must come back with the state a start that was not killed
// leaves. `writes` says whether the start is expected to write at all (a recovery over software
// hardware only reads the store).
void SweepStart(const CrashPointSweep& sweep, const std::string& backend, const std::string& path,
                const std::string& initial, bool writes = true) {
  // Count run: the steps of the start, and the state it leaves.
  const std::string count_dir = sweep.dir() + "/" + path + "-count";
  CopyFiles(initial, count_dir);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> counted,
                       sweep.Start(count_dir, CrashFlags(std::numeric_limits<uint64_t>::max(),
                                                         "start"),
                                   path + "-count.log"));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, CrashPointSweep::Connect(count_dir));
  ASSERT_OK_AND_ASSIGN(const std::string expected, DumpState(*client));
  ASSERT_EQ(Disagreements(*client), "");
  client.reset();
  ASSERT_OK_AND_ASSIGN(const uint64_t steps, CrashPointSweep::StopAndCount(*counted));
  if (!writes) {
    EXPECT_EQ(steps, 0u) << "a start that should only read wrote";
    Report(backend, path, steps, 0);
    return;
  }
  ASSERT_GT(steps, 0u) << "a start with no durable step: the sweep would test nothing";

  uint64_t covered = 0;
  const std::string run_dir = sweep.dir() + "/" + path + "-run";
  for (uint64_t step = 1; step <= steps; step += Stride()) {
    SCOPED_TRACE(absl::StrCat(path, ": crash point ", step, " of ", steps));
    CopyFiles(initial, run_dir);
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> crashing,
                         sweep.Start(run_dir, CrashFlags(step, "start"), path + "-crash.log",
                                     /*wait_serving=*/false));
    ASSERT_EQ(CrashPointSweep::CheckCrashed(*crashing, step), "");
    crashing.reset();
    absl::StatusOr<std::unique_ptr<Subprocess>> restarted =
        sweep.Start(run_dir, {}, path + "-restart.log");
    ASSERT_TRUE(restarted.ok()) << "the daemon did not come back after crash point " << step
                                << ": " << restarted.status();
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> after, CrashPointSweep::Connect(run_dir));
    ASSERT_OK_AND_ASSIGN(const std::string state, DumpState(*after));
    ASSERT_EQ(state, expected) << (*restarted)->Log();
    ASSERT_EQ(Disagreements(*after), "") << (*restarted)->Log();
    ++covered;
  }
  Report(backend, path, steps, covered);
}

class CrashPointSweepTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CrashPointSweepTest, FirstStartComesBackFromEveryCrashPoint) {
  CrashPointSweep sweep(GetParam());
  const std::string empty = sweep.dir() + "/empty";
  fs::create_directories(empty);
  SweepStart(sweep, GetParam(), "first-start", empty);
}

TEST_P(CrashPointSweepTest, RecoveryStartComesBackFromEveryCrashPoint) {
  CrashPointSweep sweep(GetParam());
  // A store with an owned, attached, mapped group and a lease, then a host reboot: the hardware
  // (the emulated memory file) is gone, so the recovery programs everything again.
  const std::string initial = sweep.dir() + "/recovery-initial";
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> daemon,
                         sweep.Start(initial, {}, "recovery-setup.log"));
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, CrashPointSweep::Connect(initial));
    Ids ids;
    ASSERT_OK_AND_ASSIGN(ids.group_bc, GroupOf(*client, kDeviceB));
    ASSERT_OK_AND_ASSIGN(ids.group_a, GroupOf(*client, kDeviceA));
    ASSERT_OK(OwnedAttachedMapped(*client, &ids));
    ASSERT_OK(Claim(*client, ids.group_a, /*lease_ttl_millis=*/3600000));
    client.reset();
    ASSERT_OK(CrashPointSweep::StopCleanly(*daemon));
  }
  fs::remove(initial + "/hw.mem");
  // The software backend's hardware never survives, so its recovery reprograms it without writing
  // anything durable: only the emulated one has crash points here.
  SweepStart(sweep, GetParam(), "recovery-start", initial,
             /*writes=*/GetParam() == "emulated");
}

// One call of each mutating kind, each crash point of it.
class CallSweepTest
    : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(CallSweepTest, CallIsAllOrNothingAtEveryCrashPoint) {
  const std::string backend = std::get<0>(GetParam());
  const std::string name = std::get<1>(GetParam());
  std::vector<CallCase> cases = CallCases();
  auto found = std::find_if(cases.begin(), cases.end(),
                            [&](const CallCase& c) { return c.name == name; });
  ASSERT_NE(found, cases.end());
  const CallCase& call_case = *found;
  CrashPointSweep sweep(backend);
  const std::string request_id = absl::StrCat("sweep-", name);

  // The starting files: the topology and the call's setup, stopped cleanly.
  const std::string initial = sweep.dir() + "/initial";
  Ids ids;
  std::string before;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> daemon,
                         sweep.Start(initial, {}, "setup.log"));
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, CrashPointSweep::Connect(initial));
    ASSERT_OK_AND_ASSIGN(ids.group_a, GroupOf(*client, kDeviceA));
    ASSERT_OK_AND_ASSIGN(ids.group_bc, GroupOf(*client, kDeviceB));
    ASSERT_OK(call_case.setup(*client, &ids));
    ASSERT_OK_AND_ASSIGN(before, DumpState(*client));
    client.reset();
    ASSERT_OK(CrashPointSweep::StopCleanly(*daemon));
  }

  // Count run: the call's steps and the state after it.
  std::string after;
  uint64_t steps = 0;
  {
    const std::string count_dir = sweep.dir() + "/count";
    CopyFiles(initial, count_dir);
    ASSERT_OK_AND_ASSIGN(
        std::unique_ptr<Subprocess> daemon,
        sweep.Start(count_dir, CrashFlags(std::numeric_limits<uint64_t>::max(), "serving"),
                    "count.log"));
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> caller,
                         CrashPointSweep::Connect(count_dir, request_id));
    ASSERT_OK(call_case.call(*caller, ids));
    ASSERT_OK_AND_ASSIGN(after, DumpState(*caller));
    ASSERT_NE(after, before) << "the call changed nothing: the sweep would test nothing";
    caller.reset();
    ASSERT_OK_AND_ASSIGN(steps, CrashPointSweep::StopAndCount(*daemon));
    ASSERT_GT(steps, 0u);
  }

  uint64_t covered = 0, found_before = 0, found_after = 0;
  const std::string run_dir = sweep.dir() + "/run";
  for (uint64_t step = 1; step <= steps; step += Stride()) {
    SCOPED_TRACE(absl::StrCat(name, ": crash point ", step, " of ", steps));
    CopyFiles(initial, run_dir);
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> crashing,
                         sweep.Start(run_dir, CrashFlags(step, "serving"), "crash.log"));
    bool acknowledged = false;
    {
      ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> caller,
                           CrashPointSweep::Connect(run_dir, request_id));
      acknowledged = call_case.call(*caller, ids).ok();
    }
    ASSERT_EQ(CrashPointSweep::CheckCrashed(*crashing, step), "");
    crashing.reset();

    absl::StatusOr<std::unique_ptr<Subprocess>> restarted =
        sweep.Start(run_dir, {}, "restart.log");
    ASSERT_TRUE(restarted.ok()) << "the daemon did not come back after crash point " << step
                                << ": " << restarted.status();
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, CrashPointSweep::Connect(run_dir));
    ASSERT_OK_AND_ASSIGN(const std::string state, DumpState(*client));
    if (acknowledged) {
      ASSERT_EQ(state, after) << "an acknowledged call was lost\n" << (*restarted)->Log();
    } else {
      ASSERT_TRUE(state == before || state == after)
          << "the call in flight was applied in part\nbefore:\n" << before << "after:\n" << after
          << "found:\n" << state << (*restarted)->Log();
    }
    ++(state == before ? found_before : found_after);
    ASSERT_EQ(Disagreements(*client), "") << (*restarted)->Log();
    // The call, retried with its request id, acts once in all.
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> retrier,
                         CrashPointSweep::Connect(run_dir, request_id));
    ASSERT_OK(call_case.call(*retrier, ids));
    ASSERT_OK_AND_ASSIGN(const std::string retried, DumpState(*client));
    ASSERT_EQ(retried, after);
    ++covered;
  }
  Report(backend, name, steps, covered);
  std::printf("crash-point sweep (%s) %s: after a crash the call was not applied %llu times, "
              "applied %llu times\n",
              backend.c_str(), name.c_str(), static_cast<unsigned long long>(found_before),
              static_cast<unsigned long long>(found_after));
}

std::vector<std::string> CallNames() {
  std::vector<std::string> names;
  for (const CallCase& call_case : CallCases()) names.push_back(call_case.name);
  return names;
}

INSTANTIATE_TEST_SUITE_P(Backends, CrashPointSweepTest,
                         ::testing::Values("software", "emulated"),
                         [](const auto& info) { return info.param; });

INSTANTIATE_TEST_SUITE_P(Calls, CallSweepTest,
                         ::testing::Combine(::testing::Values("software", "emulated"),
                                            ::testing::ValuesIn(CallNames())),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_" + std::get<1>(info.param);
                         });

}  // namespace
}  // namespace iommud

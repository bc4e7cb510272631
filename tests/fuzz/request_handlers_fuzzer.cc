// request_handlers_fuzzer: what a client can send. The input is a sequence of calls, each
// [selector byte][length byte][length bytes]: the selector picks an RPC of iommu.v1.Iommu, the
// bytes are parsed as its request message (as gRPC would; bytes that do not parse are skipped) and
// the real handler runs — RequestHandlers for the registry RPCs; for the RPCs the service
// implements itself, the same calls it makes (request decoding, fault-injector validation on an
// injector no backend consults, audit/reconcile/contention) — against a Registry on the software
// backend with a small topology. After every call: every error has a reason that survives the
// wire (ToGrpcStatus -> ErrorInfo), a failed call changed nothing, a response serializes, and the
// registry's invariants and audit are clean.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/backend/backend_factory.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/fault_injector.h"
#include "core/registry.h"
#include "proto/status_codec.h"
#include "server/api/fault_injection_convert.h"
#include "server/api/observability_convert.h"
#include "server/api/request_handlers.h"
#include "tests/fuzz/fuzz_checks.h"

namespace iommud {
namespace fuzz {
namespace {

namespace v1 = ::iommu::v1;

// Unit u0: 4K pages, a 24-bit aperture, a reserved page at 1M, 64 RIDs; d1 and d2 share a RID (one
// group), d3 has an alias. u1: 4K|2M|1G pages and a 30-bit aperture (so that the largest map a
// request can ask for stays small).
struct Fixture {
  Fixture() {
    absl::StatusOr<std::unique_ptr<IommuBackend>> created = CreateBackend("software");
    if (!created.ok()) Fail("cannot create the backend", created.status().ToString());
    backend = *std::move(created);
    RegistryOptions options;
    options.backend = backend.get();
    options.clock = &clock;
    options.fault_log_capacity = 16;
    absl::StatusOr<std::unique_ptr<Registry>> made = Registry::Create(options);
    if (!made.ok()) Fail("cannot create the registry", made.status().ToString());
    registry = *std::move(made);
    UnitCaps u0;
    u0.pgsize_bitmap = kPage4K;
    u0.iova_bits = 24;
    u0.max_rids = 64;
    u0.reserved_regions = {{0x100000, 0x1000}};
    UnitCaps u1;
    u1.iova_bits = 30;
    for (const auto& [name, caps] : {std::make_pair("u0", u0), std::make_pair("u1", u1)}) {
      if (!registry->AddUnit(name, caps).ok()) Fail("cannot add a unit", name);
    }
    for (const auto& [unit, name, rid, alias] :
         std::vector<std::tuple<std::string, std::string, Rid, int>>{
             {"u0", "d0", 1, -1}, {"u0", "d1", 2, -1}, {"u0", "d2", 2, -1}, {"u0", "d3", 3, 4},
             {"u1", "e0", 1, -1}}) {
      ProbeRequest probe;
      probe.unit = unit;
      probe.device = name;
      probe.rid = rid;
      if (alias >= 0) probe.alias_rids.push_back(alias);
      if (!registry->ProbeDevice(probe).ok()) Fail("cannot probe", name);
    }
    handlers = std::make_unique<RequestHandlers>(registry.get());
  }

  ManualClock clock;  // leases expire only when the input moves it
  std::unique_ptr<IommuBackend> backend;
  std::unique_ptr<Registry> registry;
  std::unique_ptr<RequestHandlers> handlers;
  FaultInjector injector;  // never consulted by the backend: validation only
};

// A call whose bytes did not parse (gRPC would have refused them before the service).
const absl::Status& Unparsed() {
  static const absl::Status* const status = new absl::Status(absl::CancelledError("unparsed"));
  return *status;
}

template <typename Request>
bool Parse(absl::string_view bytes, Request* request) {
  return request->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
}

// A RequestHandlers method on parsed `bytes`; the response must serialize. Mutating handlers
// also take a CallContext*: null (no request record), as a call without request_id.
template <typename Request, typename Response, typename... Context>
absl::Status Handle(absl::Status (RequestHandlers::*method)(const Request&, Response*, Context...)
                        const,
                    const RequestHandlers& handlers, absl::string_view bytes) {
  Request request;
  if (!Parse(bytes, &request)) return Unparsed();
  Response response;
  absl::Status status = (handlers.*method)(request, &response, Context()...);
  if (status.ok()) {
    std::string wire;
    if (!response.SerializeToString(&wire)) Fail("a response does not serialize", "");
  }
  return status;
}

absl::Status InjectFault(Fixture& fixture, absl::string_view bytes) {
  v1::InjectFaultRequest request;
  if (!Parse(bytes, &request)) return Unparsed();
  absl::StatusOr<FaultSpec> spec = FaultSpecFromProto(request.spec());
  if (!spec.ok()) return spec.status();
  absl::StatusOr<uint64_t> id = fixture.injector.Add(*spec);
  if (!id.ok()) return id.status();
  v1::ListFaultsResponse listed;
  for (const FaultState& fault : fixture.injector.List()) {
    FaultStateToProto(fault, listed.add_faults());
  }
  if (fixture.injector.List().size() > 8) fixture.injector.Clear();
  return absl::OkStatus();
}

absl::Status WatchEvents(Fixture& fixture, absl::string_view bytes) {
  v1::WatchEventsRequest request;
  if (!Parse(bytes, &request)) return Unparsed();
  absl::StatusOr<WatchSpec> spec = WatchSpecFromProto(request);
  if (!spec.ok()) return spec.status();
  for (const v1::Event& event : SnapshotEvents(*fixture.registry, spec->filter)) {
    std::string wire;
    if (!event.SerializeToString(&wire)) Fail("an event does not serialize", "");
  }
  return absl::OkStatus();
}

absl::Status Call(Fixture& fixture, int rpc, absl::string_view bytes, std::string* name) {
  const RequestHandlers& h = *fixture.handlers;
#define IOMMUD_FUZZ_RPC(index, method) \
  case index:                          \
    *name = #method;                   \
    return Handle(&RequestHandlers::method, h, bytes);
  switch (rpc) {
    IOMMUD_FUZZ_RPC(0, ListUnits)
    IOMMUD_FUZZ_RPC(1, ListGroups)
    IOMMUD_FUZZ_RPC(2, GetGroup)
    IOMMUD_FUZZ_RPC(3, ListDevices)
    IOMMUD_FUZZ_RPC(4, GetDevice)
    IOMMUD_FUZZ_RPC(5, ListDomains)
    IOMMUD_FUZZ_RPC(6, GetDomain)
    IOMMUD_FUZZ_RPC(7, ProbeDevice)
    IOMMUD_FUZZ_RPC(8, ReleaseDevice)
    IOMMUD_FUZZ_RPC(9, UseDefaultDomain)
    IOMMUD_FUZZ_RPC(10, UnuseDefaultDomain)
    IOMMUD_FUZZ_RPC(11, ClaimOwnership)
    IOMMUD_FUZZ_RPC(12, ReleaseOwnership)
    IOMMUD_FUZZ_RPC(13, ClaimDevice)
    IOMMUD_FUZZ_RPC(14, ReleaseDeviceOwnership)
    IOMMUD_FUZZ_RPC(15, AllocDomain)
    IOMMUD_FUZZ_RPC(16, FreeDomain)
    IOMMUD_FUZZ_RPC(17, AttachDevice)
    IOMMUD_FUZZ_RPC(18, AttachGroup)
    IOMMUD_FUZZ_RPC(19, DetachGroup)
    IOMMUD_FUZZ_RPC(20, Map)
    IOMMUD_FUZZ_RPC(21, Unmap)
    IOMMUD_FUZZ_RPC(22, ListMappings)
    IOMMUD_FUZZ_RPC(23, Translate)
    IOMMUD_FUZZ_RPC(24, ListTranslationFaults)
    case 25:
      *name = "InjectFault";
      return InjectFault(fixture, bytes);
    case 26:
      *name = "WatchEvents";
      return WatchEvents(fixture, bytes);
    case 27: {
      *name = "ListContendedGroups";
      v1::ListContendedGroupsRequest request;
      if (!Parse(bytes, &request)) return Unparsed();
      const size_t max_groups = request.max_groups() == 0 ? 10 : request.max_groups();
      fixture.registry->MostContendedGroups(max_groups);
      return absl::OkStatus();
    }
    case 28: {
      *name = "Audit";
      v1::AuditRequest request;
      if (!Parse(bytes, &request)) return Unparsed();
      v1::AuditResponse response;
      for (const LeakRecord& leak : fixture.registry->Audit()) {
        LeakToProto(leak, response.add_leaks());
      }
      return absl::OkStatus();
    }
    case 30:
      *name = "RenewLease";
      return Handle(&RequestHandlers::RenewLease, h, bytes);
    IOMMUD_FUZZ_RPC(32, RegisterMemory)
    IOMMUD_FUZZ_RPC(33, UnregisterMemory)
    IOMMUD_FUZZ_RPC(34, ListMemoryRegions)
    IOMMUD_FUZZ_RPC(35, HandOverGroup)
    IOMMUD_FUZZ_RPC(36, MapBatch)
    IOMMUD_FUZZ_RPC(37, ReplaceDomain)
    IOMMUD_FUZZ_RPC(38, GetIovaRanges)
    IOMMUD_FUZZ_RPC(39, DetachDevice)
    case 31: {
      // What the daemon's lease reaper does as time passes: the bytes are the milliseconds.
      *name = "Advance+ExpireLeases";
      uint64_t millis = 0;
      for (char c : bytes.substr(0, 3)) millis = millis << 8 | static_cast<uint8_t>(c);
      fixture.clock.Advance(absl::Milliseconds(millis));
      if (!fixture.registry->ExpireLeases().failed.empty()) Fail("a lease release failed", "");
      return absl::OkStatus();
    }
    case 29: {
      *name = "Reconcile";
      v1::ReconcileRequest request;
      if (!Parse(bytes, &request)) return Unparsed();
      const Registry::ReconcileResult result = fixture.registry->Reconcile();
      if (!result.repaired.empty() || !result.remaining.empty()) {
        Fail("Reconcile repaired a consistent registry", "");
      }
      return absl::OkStatus();
    }
#undef IOMMUD_FUZZ_RPC
    default:
      Fail("no RPC", absl::StrCat(rpc));
  }
}
constexpr int kRpcs = 40;

// The wire form of an error keeps its reason (the client reads it back from the ErrorInfo).
void CheckWireError(const absl::Status& status, absl::string_view step) {
  CheckErrorHasReason(status, step);
  if (status.ok()) return;
  const grpc::Status wire = ToGrpcStatus(status);
  google::rpc::ErrorInfo info;
  if (!ExtractErrorInfo(wire, &info) || info.reason() != ErrorReason(status) ||
      static_cast<int>(wire.error_code()) != static_cast<int>(status.code())) {
    Fail(absl::StrCat("the wire form of the error of ", step, " lost its reason or code"),
         status.ToString());
  }
  if (status.code() == absl::StatusCode::kUnknown || status.code() == absl::StatusCode::kInternal) {
    Fail(absl::StrCat(step, " failed with an internal error on client input"), status.ToString());
  }
}

}  // namespace
}  // namespace fuzz
}  // namespace iommud

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace iommud;        // NOLINT
  using namespace iommud::fuzz;  // NOLINT
  Fixture fixture;
  size_t at = 0;
  for (int calls = 0; calls < 32 && size - at >= 2; ++calls) {
    const int rpc = data[at] % kRpcs;
    const size_t length = std::min<size_t>(data[at + 1], size - at - 2);
    const absl::string_view bytes(reinterpret_cast<const char*>(data + at + 2), length);
    at += 2 + length;
    const std::string before = Snapshot(*fixture.registry);
    std::string name;
    const absl::Status status = Call(fixture, rpc, bytes, &name);
    if (status == Unparsed()) continue;
    Trace(name, status);
    CheckWireError(status, name);
    CheckUnchangedOnError(status, before, *fixture.registry, name);
    CheckConsistent(*fixture.registry, name);
  }
  return 0;
}

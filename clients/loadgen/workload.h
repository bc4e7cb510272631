// A load run against iommud: N channels (separate connections) x M outstanding calls each, every
// call slot issuing its next call from the previous one's completion (gRPC callback API), for a
// fixed duration or count. The mix decides the calls; the run sets up the devices, groups and
// domains its mix needs and tears them down afterwards.
#ifndef IOMMUD_CLIENTS_LOADGEN_WORKLOAD_H_
#define IOMMUD_CLIENTS_LOADGEN_WORKLOAD_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clients/loadgen/latency_stats.h"

namespace iommud {

enum class Mix {
  kHealth,        // grpc.health.v1.Health/Check: the RPC floor
  kAttachDetach,  // AttachGroup / DetachGroup cycles, one claimed group per call slot
  kUseUnuse,      // UseDefaultDomain / UnuseDefaultDomain, a device per slot over --groups groups
  kMapUnmap,      // Map / Unmap of a 4K page in the slot's own attached domain
  kRead,          // ListGroups (first page)
};
// "health", "attach_detach", "use_unuse", "map_unmap", "read".
absl::StatusOr<Mix> ParseMix(const std::string& name);

struct LoadOptions {
  std::string target;
  int channels = 4;
  int outstanding = 8;                         // per channel
  absl::Duration duration = absl::Seconds(5);  // stop issuing after this
  uint64_t count = 0;                          // or after this many calls (0: no limit)
  Mix mix = Mix::kHealth;
  int groups = 0;                // use_unuse: groups the slots' devices share (0: one per slot)
  std::string unit = "smmu0";    // where the run probes its devices
  uint32_t rid_base = 0xa000;    // RIDs rid_base.. are the run's
  std::string owner = "loadgen";
  // Give every mutating call a fresh request_id (what a client that retries safely sends): the
  // daemon then also stores each call's reply (server/api/idempotency.h).
  bool request_ids = false;
};

// INVALID_ARGUMENT for bad options; the setup's error if the daemon refuses it.
absl::StatusOr<LatencySummary> RunLoad(const LoadOptions& options);

}  // namespace iommud

#endif  // IOMMUD_CLIENTS_LOADGEN_WORKLOAD_H_

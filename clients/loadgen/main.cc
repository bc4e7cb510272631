// loadgen: drives iommud with N channels x M outstanding calls of one mix and prints throughput
// and latency percentiles (a table, or --json). Loopback / unix sockets only.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "clients/loadgen/workload.h"
#include "core/error.h"

ABSL_FLAG(std::string, target, "unix:/run/iommud/iommud.sock", "iommud address");
ABSL_FLAG(std::string, mix, "health", "health | attach_detach | use_unuse | map_unmap | read");
ABSL_FLAG(int, channels, 4, "connections");
ABSL_FLAG(int, outstanding, 8, "calls in flight per connection");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(5), "how long to issue calls");
ABSL_FLAG(uint64_t, count, 0, "stop after this many calls (0: duration only)");
ABSL_FLAG(int, groups, 0, "use_unuse: groups the devices share (0: one per call slot)");
ABSL_FLAG(std::string, unit, "smmu0", "unit to probe the run's devices on");
ABSL_FLAG(uint32_t, rid_base, 0xa000, "first RID of the run's devices");
ABSL_FLAG(bool, json, false, "print JSON instead of a table");
ABSL_FLAG(bool, request_ids, false, "give every mutating call a fresh request_id");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("load generator for iommud; see --help");
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<iommud::Mix> mix = iommud::ParseMix(absl::GetFlag(FLAGS_mix));
  if (!mix.ok()) {
    std::fprintf(stderr, "loadgen: %s\n", std::string(mix.status().message()).c_str());
    return 2;
  }
  iommud::LoadOptions options;
  options.target = absl::GetFlag(FLAGS_target);
  options.mix = *mix;
  options.channels = absl::GetFlag(FLAGS_channels);
  options.outstanding = absl::GetFlag(FLAGS_outstanding);
  options.duration = absl::GetFlag(FLAGS_duration);
  options.count = absl::GetFlag(FLAGS_count);
  options.groups = absl::GetFlag(FLAGS_groups);
  options.unit = absl::GetFlag(FLAGS_unit);
  options.rid_base = absl::GetFlag(FLAGS_rid_base);
  options.request_ids = absl::GetFlag(FLAGS_request_ids);
  absl::StatusOr<iommud::LatencySummary> summary = iommud::RunLoad(options);
  if (!summary.ok()) {
    std::fprintf(stderr, "loadgen: %s (%s)\n", std::string(summary.status().message()).c_str(),
                 iommud::ErrorReason(summary.status()).c_str());
    return 1;
  }
  auto us = [](absl::Duration d) { return absl::ToDoubleMicroseconds(d); };
  if (absl::GetFlag(FLAGS_json)) {
    std::printf(
        "{\"mix\": \"%s\", \"channels\": %d, \"outstanding\": %d, \"ok\": %llu, \"errors\": %llu, "
        "\"seconds\": %.3f, \"ops_per_second\": %.1f, \"p50_us\": %.1f, \"p90_us\": %.1f, "
        "\"p99_us\": %.1f, \"p999_us\": %.1f, \"max_us\": %.1f}\n",
        absl::GetFlag(FLAGS_mix).c_str(), options.channels, options.outstanding,
        static_cast<unsigned long long>(summary->ok),
        static_cast<unsigned long long>(summary->errors), absl::ToDoubleSeconds(summary->elapsed),
        summary->ops_per_second, us(summary->p50), us(summary->p90), us(summary->p99),
        us(summary->p999), us(summary->max));
  } else {
    std::printf("MIX            CONNS  INFLIGHT  OK        ERRORS  OPS/S      P50us   P90us   "
                "P99us   P99.9us\n");
    std::printf("%-14s %-6d %-9d %-9llu %-7llu %-10.0f %-7.1f %-7.1f %-7.1f %.1f\n",
                absl::GetFlag(FLAGS_mix).c_str(), options.channels, options.outstanding,
                static_cast<unsigned long long>(summary->ok),
                static_cast<unsigned long long>(summary->errors), summary->ops_per_second,
                us(summary->p50), us(summary->p90), us(summary->p99), us(summary->p999));
  }
  return summary->errors == 0 ? 0 : 1;
}

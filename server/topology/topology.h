// The topology iommud starts with (proto/iommu/v1/topology.proto, text format): reading and parsing
// it with file:line errors. topology_apply.h applies it to a Registry.
#ifndef IOMMUD_SERVER_TOPOLOGY_TOPOLOGY_H_
#define IOMMUD_SERVER_TOPOLOGY_TOPOLOGY_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "iommu/v1/topology.pb.h"

namespace iommud {

// A parsed topology and where each entry came from, for error messages.
struct LoadedTopology {
  iommu::v1::Topology topology;
  std::string source;             // the file name, or "<embedded demo topology>"
  std::vector<int> unit_lines;    // 1-based line of topology.units(i)
  std::vector<int> device_lines;  // 1-based line of topology.devices(i)
};

// Parses `text`. Errors are INVALID_ARGUMENT (INVALID_TOPOLOGY) with the message
// "<source>:<line>:<column>: <what>" and metadata {"source", "line"}.
absl::StatusOr<LoadedTopology> ParseTopology(absl::string_view text, absl::string_view source);

// Reads and parses the file at `path`. NOT_FOUND (TOPOLOGY_UNREADABLE) if it cannot be read.
absl::StatusOr<LoadedTopology> LoadTopologyFile(const std::string& path);

// The topology compiled into the daemon (the content of deploy/demo-topology.textpb).
absl::StatusOr<LoadedTopology> LoadDemoTopology();

}  // namespace iommud

#endif  // IOMMUD_SERVER_TOPOLOGY_TOPOLOGY_H_

// The demo topology compiled into the daemon: the text of deploy/demo-topology.textpb
// (tests/server/topology/topology_test.cc checks that the two are the same topology).
#ifndef IOMMUD_SERVER_TOPOLOGY_DEMO_TOPOLOGY_H_
#define IOMMUD_SERVER_TOPOLOGY_DEMO_TOPOLOGY_H_

#include "absl/strings/string_view.h"

namespace iommud {

inline constexpr absl::string_view kDemoTopologySource = "<embedded demo topology>";

// Text-format iommu.v1.Topology.
absl::string_view DemoTopologyText();

}  // namespace iommud

#endif  // IOMMUD_SERVER_TOPOLOGY_DEMO_TOPOLOGY_H_

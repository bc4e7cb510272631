#include "server/topology/topology.h"

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "core/error.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "server/topology/demo_topology.h"

namespace iommud {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

const std::string kDeployDemo = std::string(IOMMUD_SOURCE_DIR) + "/deploy/demo-topology.textpb";

TEST(TopologyTest, EmbeddedDemoIsTheDeployFile) {
  const std::string file = ReadFile(kDeployDemo);
  ASSERT_FALSE(file.empty()) << kDeployDemo;
  EXPECT_EQ(DemoTopologyText(), file);  // byte for byte, so line numbers in errors agree
  absl::StatusOr<LoadedTopology> embedded = LoadDemoTopology();
  absl::StatusOr<LoadedTopology> deployed = LoadTopologyFile(kDeployDemo);
  ASSERT_TRUE(embedded.ok()) << embedded.status();
  ASSERT_TRUE(deployed.ok()) << deployed.status();
  EXPECT_TRUE(
      google::protobuf::util::MessageDifferencer::Equals(embedded->topology, deployed->topology));
  EXPECT_EQ(embedded->source, kDemoTopologySource);
  EXPECT_EQ(deployed->source, kDeployDemo);
}

TEST(TopologyTest, DemoHasTwoUnitsAndMultiDeviceGroups) {
  absl::StatusOr<LoadedTopology> demo = LoadDemoTopology();
  ASSERT_TRUE(demo.ok()) << demo.status();
  const iommu::v1::Topology& topology = demo->topology;
  ASSERT_EQ(topology.units_size(), 2);
  EXPECT_EQ(topology.units(0).name(), "smmu0");
  EXPECT_EQ(topology.units(1).name(), "smmu1");
  EXPECT_EQ(topology.devices_size(), 8);
  std::multiset<uint32_t> rids;
  int with_alias = 0;
  for (const auto& device : topology.devices()) {
    rids.insert(device.rid());
    with_alias += device.alias_rids_size() > 0;
  }
  EXPECT_EQ(rids.count(0x0500), 2u);  // the multi-function pair sharing a RID
  EXPECT_GE(with_alias, 1);
}

TEST(TopologyTest, RecordsTheLineOfEachEntry) {
  absl::StatusOr<LoadedTopology> loaded = ParseTopology(
      "units { name: \"u0\" }\n"
      "\n"
      "units {\n"
      "  name: \"u1\"\n"
      "}\n"
      "devices { unit: \"u0\" name: \"d0\" rid: 1 }\n"
      "# comment\n"
      "devices { unit: \"u1\" name: \"d1\" rid: 2 alias_rids: 3 alias_rids: 4 }\n",
      "test.textpb");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_THAT(loaded->unit_lines, ElementsAre(1, 3));
  EXPECT_THAT(loaded->device_lines, ElementsAre(6, 8));
  EXPECT_THAT(loaded->topology.devices(1).alias_rids(), ElementsAre(3u, 4u));
}

TEST(TopologyTest, SyntaxErrorNamesFileLineAndColumn) {
  absl::StatusOr<LoadedTopology> loaded = ParseTopology(
      "units { name: \"u0\" }\n"
      "devices {\n"
      "  unit: \"u0\" name \"d0\"\n"
      "}\n",
      "bad.textpb");
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorReason(loaded.status()), "INVALID_TOPOLOGY");
  EXPECT_THAT(std::string(loaded.status().message()), StartsWith("bad.textpb:3:"));
  EXPECT_EQ(GetErrorMetadata(loaded.status()).at("line"), "3");
  EXPECT_EQ(GetErrorMetadata(loaded.status()).at("source"), "bad.textpb");
}

TEST(TopologyTest, UnknownFieldAndEnumAreErrors) {
  absl::StatusOr<LoadedTopology> loaded =
      ParseTopology("units { name: \"u0\" colour: 3 }\n", "f.textpb");
  EXPECT_EQ(ErrorReason(loaded.status()), "INVALID_TOPOLOGY");
  EXPECT_THAT(std::string(loaded.status().message()), HasSubstr("colour"));
  loaded = ParseTopology(
      "\ndevices { unit: \"u\" name: \"d\" default_domain_type: DOMAIN_TYPE_PURPLE }\n",
      "f.textpb");
  EXPECT_EQ(ErrorReason(loaded.status()), "INVALID_TOPOLOGY");
  EXPECT_THAT(std::string(loaded.status().message()), StartsWith("f.textpb:2:"));
}

TEST(TopologyTest, UnreadableFile) {
  for (const std::string& path :
       {std::string("/nonexistent/topology.textpb"), std::string("/tmp")}) {
    absl::StatusOr<LoadedTopology> loaded = LoadTopologyFile(path);
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kNotFound) << path;
    EXPECT_EQ(ErrorReason(loaded.status()), "TOPOLOGY_UNREADABLE") << path;
    EXPECT_THAT(std::string(loaded.status().message()), HasSubstr(path));
  }
}

}  // namespace
}  // namespace iommud

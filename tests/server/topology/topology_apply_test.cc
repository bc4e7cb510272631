#include "server/topology/topology_apply.h"

#include <memory>
#include <string>

#include "core/backend/backend_factory.h"
#include "core/error.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/topology/topology.h"

namespace iommud {
namespace {

using ::testing::ElementsAre;
using ::testing::StartsWith;

// Through a real registry on the software backend.
class ApplyTopologyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<IommuBackend>> backend = CreateBackend("software");
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(*backend);
    RegistryOptions options;
    options.backend = backend_.get();
    absl::StatusOr<std::unique_ptr<Registry>> registry = Registry::Create(options);
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = std::move(*registry);
  }

  std::unique_ptr<IommuBackend> backend_;
  std::unique_ptr<Registry> registry_;
};

TEST_F(ApplyTopologyTest, DemoTopologyBuildsTheExpectedGroups) {
  absl::StatusOr<LoadedTopology> demo = LoadDemoTopology();
  ASSERT_TRUE(demo.ok());
  ASSERT_TRUE(ApplyTopology(*demo, registry_.get()).ok());

  std::vector<UnitInfo> units = registry_->ListUnits();
  ASSERT_EQ(units.size(), 2u);
  EXPECT_EQ(units[1].caps.iova_bits, 39u);
  EXPECT_EQ(units[1].caps.pgsize_bitmap, kPage4K | kPage2M);
  EXPECT_EQ(registry_->ListDevices().size(), 8u);
  EXPECT_EQ(registry_->ListGroups().size(), 6u);

  // Shared RID -> one group; shared alias -> one group.
  absl::StatusOr<DeviceInfo> f0 = registry_->GetDevice("0000:05:00.0");
  absl::StatusOr<DeviceInfo> f1 = registry_->GetDevice("0000:05:00.1");
  ASSERT_TRUE(f0.ok() && f1.ok());
  EXPECT_EQ(f0->group, f1->group);
  absl::StatusOr<GroupInfo> pair = registry_->GetGroup(f0->group);
  ASSERT_TRUE(pair.ok());
  EXPECT_THAT(pair->devices, ElementsAre("0000:05:00.0", "0000:05:00.1"));
  absl::StatusOr<DeviceInfo> b0 = registry_->GetDevice("0000:08:01.0");
  absl::StatusOr<DeviceInfo> b1 = registry_->GetDevice("0000:08:02.0");
  ASSERT_TRUE(b0.ok() && b1.ok());
  EXPECT_EQ(b0->group, b1->group);
  EXPECT_THAT(b0->alias_rids, ElementsAre(0x0800u));

  // Per-device default-domain type, else the policy (DMA).
  absl::StatusOr<DeviceInfo> identity = registry_->GetDevice("0000:82:00.0");
  absl::StatusOr<DeviceInfo> dma = registry_->GetDevice("0000:81:00.0");
  ASSERT_TRUE(identity.ok() && dma.ok());
  EXPECT_EQ(registry_->GetDomain(identity->domain)->type, DomainType::kIdentity);
  EXPECT_EQ(registry_->GetDomain(dma->domain)->type, DomainType::kDma);
  EXPECT_TRUE(registry_->CheckInvariants().empty());
}

TEST_F(ApplyTopologyTest, RegistryErrorKeepsCodeAndReasonAndNamesTheLine) {
  absl::StatusOr<LoadedTopology> loaded = ParseTopology(
      "units { name: \"u0\" }\n"
      "devices { unit: \"u0\" name: \"d0\" rid: 1 }\n"
      "devices { unit: \"u0\" name: \"d0\" rid: 2 }\n",
      "dup.textpb");
  ASSERT_TRUE(loaded.ok());
  absl::Status status = ApplyTopology(*loaded, registry_.get());
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ErrorReason(status), "DEVICE_EXISTS");
  EXPECT_THAT(std::string(status.message()), StartsWith("dup.textpb:3: device 'd0': "));
  EXPECT_EQ(GetErrorMetadata(status).at("topology_line"), "3");
  EXPECT_EQ(GetErrorMetadata(status).at("topology_source"), "dup.textpb");
  // The first device stays; the failed probe changed nothing.
  EXPECT_EQ(registry_->ListDevices().size(), 1u);
  EXPECT_EQ(registry_->GetDevice("d0")->rid, 1u);
}

TEST_F(ApplyTopologyTest, UnknownUnitIsNotFound) {
  absl::StatusOr<LoadedTopology> loaded =
      ParseTopology("devices { unit: \"nope\" name: \"d0\" rid: 1 }\n", "t.textpb");
  ASSERT_TRUE(loaded.ok());
  absl::Status status = ApplyTopology(*loaded, registry_.get());
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(status.message()), StartsWith("t.textpb:1: device 'd0'"));
  EXPECT_TRUE(registry_->ListDevices().empty());
}

TEST_F(ApplyTopologyTest, MissingNamesAreReportedWithTheirLine) {
  absl::StatusOr<LoadedTopology> loaded =
      ParseTopology("units { name: \"u0\" }\n\ndevices { unit: \"u0\" rid: 1 }\n", "t.textpb");
  ASSERT_TRUE(loaded.ok());
  absl::Status status = ApplyTopology(*loaded, registry_.get());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorReason(status), "MISSING_FIELD");
  EXPECT_EQ(GetErrorMetadata(status).at("topology_line"), "3");

  loaded = ParseTopology("units { caps { iova_bits: 32 } }\n", "t.textpb");
  ASSERT_TRUE(loaded.ok());
  status = ApplyTopology(*loaded, registry_.get());
  EXPECT_EQ(ErrorReason(status), "MISSING_FIELD");
  EXPECT_EQ(GetErrorMetadata(status).at("topology_line"), "1");
  EXPECT_EQ(registry_->ListUnits().size(), 1u);  // only u0 from the first topology
}

TEST_F(ApplyTopologyTest, EmptyTopologyIsFine) {
  EXPECT_TRUE(ApplyTopology(LoadedTopology{}, registry_.get()).ok());
  EXPECT_TRUE(registry_->ListUnits().empty());
}

}  // namespace
}  // namespace iommud

// Request bounds (server/api/request_bounds.h) and their use by RequestHandlers: oversized strings
// and repeated fields anywhere in a request (nested too), Map sizes, page sizes clamped (AIP-158).
// Every refused request is checked to reach the registry with nothing.
#include "server/api/request_bounds.h"

#include <memory>
#include <string>

#include "core/backend/backend_factory.h"
#include "gtest/gtest.h"
#include "server/api/pagination.h"
#include "server/api/request_handlers.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

TEST(RequestBoundsTest, StringsUpToTheLimitPass) {
  RequestBounds bounds;
  bounds.max_string_bytes = 8;
  iommu::v1::ProbeDeviceRequest request;
  request.set_unit("u0");
  request.set_device(std::string(8, 'd'));
  EXPECT_OK(CheckFieldBounds(request, bounds));
  request.set_device(std::string(9, 'd'));
  const absl::Status status = CheckFieldBounds(request, bounds);
  EXPECT_ERROR(status, kInvalidArgument, "FIELD_TOO_LONG");
  const ErrorMetadata metadata = GetErrorMetadata(status);
  EXPECT_EQ(metadata.at("field"), "device");
  EXPECT_EQ(metadata.at("length"), "9");
  EXPECT_EQ(metadata.at("limit"), "8");
}

TEST(RequestBoundsTest, EveryStringFieldIsChecked) {
  RequestBounds bounds;
  bounds.max_string_bytes = 16;
  const std::string long_name(17, 'x');
  iommu::v1::ClaimOwnershipRequest claim;
  claim.set_group_id(1);
  claim.set_owner(long_name);
  EXPECT_ERROR(CheckFieldBounds(claim, bounds), kInvalidArgument, "FIELD_TOO_LONG");
  iommu::v1::ListGroupsRequest list;
  list.set_unit(long_name);
  EXPECT_ERROR(CheckFieldBounds(list, bounds), kInvalidArgument, "FIELD_TOO_LONG");
  list.set_unit("u0");
  list.set_page_token(long_name);
  EXPECT_ERROR(CheckFieldBounds(list, bounds), kInvalidArgument, "FIELD_TOO_LONG");
}

TEST(RequestBoundsTest, NestedMessagesAreCheckedAndNamedDotted) {
  RequestBounds bounds;
  bounds.max_string_bytes = 4;
  iommu::v1::InjectFaultRequest request;
  request.mutable_spec()->set_point("map");
  EXPECT_OK(CheckFieldBounds(request, bounds));
  request.mutable_spec()->set_device("0000:01:00.0");
  const absl::Status status = CheckFieldBounds(request, bounds);
  EXPECT_ERROR(status, kInvalidArgument, "FIELD_TOO_LONG");
  EXPECT_EQ(GetErrorMetadata(status).at("field"), "spec.device");
}

TEST(RequestBoundsTest, RepeatedFieldsAreBounded) {
  RequestBounds bounds;
  bounds.max_repeated = 3;
  iommu::v1::ProbeDeviceRequest probe;
  probe.set_unit("u0");
  probe.set_device("d");
  for (uint32_t rid = 1; rid <= 3; ++rid) probe.add_alias_rids(rid);
  EXPECT_OK(CheckFieldBounds(probe, bounds));
  probe.add_alias_rids(4);
  const absl::Status status = CheckFieldBounds(probe, bounds);
  EXPECT_ERROR(status, kInvalidArgument, "TOO_MANY_ELEMENTS");
  EXPECT_EQ(GetErrorMetadata(status).at("field"), "alias_rids");
  EXPECT_EQ(GetErrorMetadata(status).at("count"), "4");

  iommu::v1::WatchEventsRequest watch;
  for (int i = 0; i < 4; ++i) watch.add_kinds(iommu::v1::EVENT_KIND_MAPPED);
  EXPECT_ERROR(CheckFieldBounds(watch, bounds), kInvalidArgument, "TOO_MANY_ELEMENTS");
}

TEST(RequestBoundsTest, MapSizeIsResourceExhausted) {
  RequestBounds bounds;
  bounds.max_map_bytes = 1 << 20;
  EXPECT_OK(CheckMapSize(1 << 20, bounds));
  const absl::Status status = CheckMapSize((1 << 20) + 4096, bounds);
  EXPECT_ERROR(status, kResourceExhausted, "REQUEST_TOO_LARGE");
  EXPECT_EQ(GetErrorMetadata(status).at("limit"), "1048576");
  EXPECT_EQ(GetErrorMetadata(status).at("size"), "1052672");
}

TEST(RequestBoundsTest, PageSizesAreClampedNotRefused) {
  EXPECT_EQ(EffectivePageSize(0), kDefaultPageSize);
  EXPECT_EQ(EffectivePageSize(5000), kMaxPageSize);
  EXPECT_EQ(EffectivePageSize(0xffffffffu, 10), 10u);
  EXPECT_EQ(EffectivePageSize(7, 10), 7u);
  EXPECT_EQ(EffectivePageSize(0, 10), 10u);  // the default never exceeds the maximum
  EXPECT_EQ(EffectivePageSize(0, 0), 1u);    // a nonsense maximum still makes progress
}

class BoundedHandlersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(backend_, CreateBackend("software"));
    RegistryOptions options;
    options.backend = backend_.get();
    ASSERT_OK_AND_ASSIGN(registry_, Registry::Create(options));
    ASSERT_OK(registry_->AddUnit("u0", UnitCaps()));
    for (Rid rid : {1, 2, 3}) {
      ProbeRequest probe;
      probe.unit = "u0";
      probe.device = "d" + std::to_string(rid);
      probe.rid = rid;
      ASSERT_OK(registry_->ProbeDevice(probe));
    }
    RequestBounds bounds;
    bounds.max_page_size = 2;
    bounds.max_map_bytes = 1 << 21;
    handlers_ = std::make_unique<RequestHandlers>(registry_.get(), bounds);
  }

  std::unique_ptr<IommuBackend> backend_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<RequestHandlers> handlers_;
};

TEST_F(BoundedHandlersTest, HugePageSizeIsClampedToTheMaximum) {
  iommu::v1::ListDevicesRequest request;
  request.set_page_size(0xffffffffu);
  iommu::v1::ListDevicesResponse first;
  ASSERT_OK(handlers_->ListDevices(request, &first));
  EXPECT_EQ(first.devices_size(), 2);
  ASSERT_FALSE(first.next_page_token().empty());
  request.set_page_token(first.next_page_token());
  iommu::v1::ListDevicesResponse second;
  ASSERT_OK(handlers_->ListDevices(request, &second));
  EXPECT_EQ(second.devices_size(), 1);
  EXPECT_TRUE(second.next_page_token().empty());
}

TEST_F(BoundedHandlersTest, OversizedMapIsRefusedAndMapsNothing) {
  ASSERT_OK_AND_ASSIGN(DomainInfo domain,
                       registry_->AllocDomain("u0", DomainType::kUnmanaged, "vmm"));
  iommu::v1::MapRequest request;
  request.set_domain_id(domain.id);
  request.set_iova(0);
  request.set_paddr(0x1000);  // misaligned for blocks: the worst case, 4K leaves
  request.set_size((1 << 21) + 4096);
  request.set_owner("vmm");
  iommu::v1::MapResponse response;
  EXPECT_ERROR(handlers_->Map(request, &response), kResourceExhausted, "REQUEST_TOO_LARGE");
  EXPECT_EQ(registry_->GetDomain(domain.id)->mapping_count, 0u);
  request.set_size(1 << 21);
  EXPECT_OK(handlers_->Map(request, &response));
  EXPECT_EQ(registry_->GetDomain(domain.id)->mapping_count, 1u);
}

}  // namespace
}  // namespace iommud

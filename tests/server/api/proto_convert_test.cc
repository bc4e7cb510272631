#include "server/api/proto_convert.h"

#include "core/error.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace iommud {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

TEST(ProtoConvertTest, DomainTypesRoundTrip) {
  for (DomainType type : {DomainType::kBlocked, DomainType::kIdentity, DomainType::kUnmanaged,
                          DomainType::kDma, DomainType::kDmaFq}) {
    absl::StatusOr<std::optional<DomainType>> back =
        DomainTypeFromProto(DomainTypeToProto(type), "type");
    ASSERT_TRUE(back.ok()) << back.status();
    ASSERT_TRUE(back->has_value());
    EXPECT_EQ(**back, type) << DomainTypeName(type);
  }
  EXPECT_EQ(DomainTypeToProto(DomainType::kDmaFq), iommu::v1::DOMAIN_TYPE_DMA_FQ);
}

TEST(ProtoConvertTest, UnspecifiedDomainTypeMeansDefault) {
  absl::StatusOr<std::optional<DomainType>> type =
      DomainTypeFromProto(iommu::v1::DOMAIN_TYPE_UNSPECIFIED, "type");
  ASSERT_TRUE(type.ok());
  EXPECT_FALSE(type->has_value());
}

TEST(ProtoConvertTest, UnknownDomainTypeIsInvalidEnumValue) {
  absl::StatusOr<std::optional<DomainType>> type = DomainTypeFromProto(42, "default_domain_type");
  EXPECT_EQ(type.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorReason(type.status()), "INVALID_ENUM_VALUE");
  EXPECT_EQ(GetErrorMetadata(type.status()).at("field"), "default_domain_type");
  EXPECT_EQ(GetErrorMetadata(type.status()).at("value"), "42");
}

TEST(ProtoConvertTest, EnumsToProto) {
  EXPECT_EQ(DriverBindingToProto(DriverBinding::kNone), iommu::v1::DRIVER_BINDING_NONE);
  EXPECT_EQ(DriverBindingToProto(DriverBinding::kKernelDriver),
            iommu::v1::DRIVER_BINDING_KERNEL_DRIVER);
  EXPECT_EQ(DriverBindingToProto(DriverBinding::kUserOwned), iommu::v1::DRIVER_BINDING_USER_OWNED);
  EXPECT_EQ(FaultReasonToProto(FaultReason::kNone), iommu::v1::FAULT_REASON_NONE);
  EXPECT_EQ(FaultReasonToProto(FaultReason::kUnknownRid), iommu::v1::FAULT_REASON_UNKNOWN_RID);
  EXPECT_EQ(FaultReasonToProto(FaultReason::kBlocked), iommu::v1::FAULT_REASON_BLOCKED);
  EXPECT_EQ(FaultReasonToProto(FaultReason::kNoMapping), iommu::v1::FAULT_REASON_NO_MAPPING);
  EXPECT_EQ(FaultReasonToProto(FaultReason::kPermission), iommu::v1::FAULT_REASON_PERMISSION);
}

TEST(ProtoConvertTest, UnitToProto) {
  UnitInfo unit;
  unit.name = "smmu0";
  unit.backend = "software";
  unit.caps.pgsize_bitmap = kPage4K | kPage2M;
  unit.caps.iova_bits = 39;
  unit.caps.max_rids = 256;
  unit.caps.domain_types = {DomainType::kBlocked, DomainType::kDma};
  unit.caps.reserved_regions = {{0xfee00000, 0x100000}, {0x1000, 0x2000}};
  unit.device_count = 3;
  unit.group_count = 2;
  unit.domain_count = 5;
  iommu::v1::IommuUnit proto;
  proto.set_name("stale");
  proto.add_domain_types(iommu::v1::DOMAIN_TYPE_IDENTITY);
  UnitToProto(unit, &proto);
  EXPECT_EQ(proto.name(), "smmu0");
  EXPECT_EQ(proto.backend(), "software");
  EXPECT_EQ(proto.pgsize_bitmap(), kPage4K | kPage2M);
  EXPECT_EQ(proto.iova_bits(), 39u);
  EXPECT_EQ(proto.max_rids(), 256u);
  EXPECT_THAT(proto.domain_types(),
              ElementsAre(iommu::v1::DOMAIN_TYPE_BLOCKED, iommu::v1::DOMAIN_TYPE_DMA));
  ASSERT_EQ(proto.reserved_regions_size(), 2);
  EXPECT_EQ(proto.reserved_regions(1).start(), 0x1000u);
  EXPECT_EQ(proto.reserved_regions(1).size(), 0x2000u);
  EXPECT_EQ(proto.device_count(), 3u);
  EXPECT_EQ(proto.group_count(), 2u);
  EXPECT_EQ(proto.domain_count(), 5u);
}

TEST(ProtoConvertTest, DeviceToProto) {
  DeviceInfo device{
      "0000:03:00.0", "smmu0", 0x300, {0x280, 0x281}, 7, DriverBinding::kUserOwned, 12};
  iommu::v1::Device proto;
  DeviceToProto(device, &proto);
  EXPECT_EQ(proto.name(), "0000:03:00.0");
  EXPECT_EQ(proto.unit(), "smmu0");
  EXPECT_EQ(proto.rid(), 0x300u);
  EXPECT_THAT(proto.alias_rids(), ElementsAre(0x280u, 0x281u));
  EXPECT_EQ(proto.group_id(), 7u);
  EXPECT_EQ(proto.binding(), iommu::v1::DRIVER_BINDING_USER_OWNED);
  EXPECT_EQ(proto.domain_id(), 12u);
}

TEST(ProtoConvertTest, GroupToProto) {
  GroupInfo group;
  group.id = 4;
  group.unit = "smmu1";
  group.devices = {"0000:05:00.0", "0000:05:00.1"};
  group.domain = 9;
  group.default_domain = 8;
  group.blocking_domain = 9;
  group.owner = "vmm-1";
  group.owner_cnt = 2;
  group.claimed_devices = {"0000:05:00.0"};
  iommu::v1::Group proto;
  GroupToProto(group, &proto);
  EXPECT_EQ(proto.id(), 4u);
  EXPECT_EQ(proto.unit(), "smmu1");
  EXPECT_THAT(proto.devices(), ElementsAre("0000:05:00.0", "0000:05:00.1"));
  EXPECT_EQ(proto.domain_id(), 9u);
  EXPECT_EQ(proto.default_domain_id(), 8u);
  EXPECT_EQ(proto.blocking_domain_id(), 9u);
  EXPECT_EQ(proto.owner(), "vmm-1");
  EXPECT_EQ(proto.owner_cnt(), 2u);
  EXPECT_THAT(proto.claimed_devices(), ElementsAre("0000:05:00.0"));
}

TEST(ProtoConvertTest, DomainToProto) {
  DomainInfo domain;
  domain.id = 11;
  domain.unit = "smmu0";
  domain.type = DomainType::kUnmanaged;
  domain.owner = "vmm-1";
  domain.core_owned = false;
  domain.caps.pgsize_bitmap = kPage4K;
  domain.caps.iova_bits = 32;
  domain.attached_groups = {2, 5};
  domain.mapping_count = 3;
  domain.mapped_bytes = 3 * kPage4K;
  iommu::v1::Domain proto;
  proto.set_core_owned(true);
  DomainToProto(domain, &proto);
  EXPECT_EQ(proto.id(), 11u);
  EXPECT_EQ(proto.unit(), "smmu0");
  EXPECT_EQ(proto.type(), iommu::v1::DOMAIN_TYPE_UNMANAGED);
  EXPECT_EQ(proto.owner(), "vmm-1");
  EXPECT_FALSE(proto.core_owned());
  EXPECT_EQ(proto.pgsize_bitmap(), kPage4K);
  EXPECT_EQ(proto.iova_bits(), 32u);
  EXPECT_THAT(proto.attached_group_ids(), ElementsAre(2u, 5u));
  EXPECT_EQ(proto.mapping_count(), 3u);
  EXPECT_EQ(proto.mapped_bytes(), 3 * kPage4K);
}

TEST(ProtoConvertTest, MappingAndFaultToProto) {
  iommu::v1::Mapping mapping;
  MappingToProto({0x10000, 0x80000, 0x2000, kProtRead}, &mapping);
  EXPECT_EQ(mapping.iova(), 0x10000u);
  EXPECT_EQ(mapping.paddr(), 0x80000u);
  EXPECT_EQ(mapping.size(), 0x2000u);
  EXPECT_EQ(mapping.prot(), static_cast<uint32_t>(kProtRead));

  FaultRecord fault{"smmu0", 0x300, 0xdead000, kProtWrite, FaultReason::kPermission, 1234};
  iommu::v1::FaultRecord proto;
  FaultToProto(fault, "0000:03:00.0", &proto);
  EXPECT_EQ(proto.unit(), "smmu0");
  EXPECT_EQ(proto.rid(), 0x300u);
  EXPECT_EQ(proto.device(), "0000:03:00.0");
  EXPECT_EQ(proto.iova(), 0xdead000u);
  EXPECT_EQ(proto.access(), static_cast<uint32_t>(kProtWrite));
  EXPECT_EQ(proto.reason(), iommu::v1::FAULT_REASON_PERMISSION);
  EXPECT_EQ(proto.time_unix_nanos(), 1234);
}

TEST(ProtoConvertTest, ProbeRequestFromProto) {
  iommu::v1::ProbeDeviceRequest request;
  request.set_unit("smmu0");
  request.set_device("0000:03:00.0");
  request.set_rid(0x300);
  request.add_alias_rids(0x280);
  request.set_default_domain_type(iommu::v1::DOMAIN_TYPE_IDENTITY);
  absl::StatusOr<ProbeRequest> probe = ProbeRequestFromProto(request);
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->unit, "smmu0");
  EXPECT_EQ(probe->device, "0000:03:00.0");
  EXPECT_EQ(probe->rid, 0x300u);
  EXPECT_THAT(probe->alias_rids, ElementsAre(0x280u));
  EXPECT_EQ(probe->default_domain_type, DomainType::kIdentity);

  request.clear_default_domain_type();
  probe = ProbeRequestFromProto(request);
  ASSERT_TRUE(probe.ok());
  EXPECT_FALSE(probe->default_domain_type.has_value());
}

TEST(ProtoConvertTest, ProbeRequestNeedsUnitAndDevice) {
  iommu::v1::ProbeDeviceRequest request;
  request.set_device("0000:03:00.0");
  absl::StatusOr<ProbeRequest> probe = ProbeRequestFromProto(request);
  EXPECT_EQ(probe.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorReason(probe.status()), "MISSING_FIELD");
  EXPECT_EQ(GetErrorMetadata(probe.status()).at("field"), "unit");

  request.set_unit("smmu0");
  request.clear_device();
  probe = ProbeRequestFromProto(request);
  EXPECT_EQ(ErrorReason(probe.status()), "MISSING_FIELD");
  EXPECT_EQ(GetErrorMetadata(probe.status()).at("field"), "device");

  request.set_device("0000:03:00.0");
  request.set_default_domain_type(static_cast<iommu::v1::DomainType>(17));
  probe = ProbeRequestFromProto(request);
  EXPECT_EQ(ErrorReason(probe.status()), "INVALID_ENUM_VALUE");
}

TEST(ProtoConvertTest, ProbeRequestFromTopology) {
  iommu::v1::Topology::Device device;
  device.set_unit("smmu1");
  device.set_name("0000:81:00.0");
  device.set_rid(0x8100);
  device.add_alias_rids(0x8000);
  absl::StatusOr<ProbeRequest> probe = ProbeRequestFromTopology(device);
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->unit, "smmu1");
  EXPECT_EQ(probe->device, "0000:81:00.0");
  EXPECT_EQ(probe->rid, 0x8100u);
  EXPECT_THAT(probe->alias_rids, ElementsAre(0x8000u));
  EXPECT_FALSE(probe->default_domain_type.has_value());

  device.clear_name();
  EXPECT_EQ(GetErrorMetadata(ProbeRequestFromTopology(device).status()).at("field"), "name");
}

TEST(ProtoConvertTest, UnitCapsDefaultsForZeroFields) {
  absl::StatusOr<UnitCaps> caps = UnitCapsFromProto(iommu::v1::Topology::UnitCaps());
  ASSERT_TRUE(caps.ok());
  const UnitCaps defaults;
  EXPECT_EQ(caps->pgsize_bitmap, defaults.pgsize_bitmap);
  EXPECT_EQ(caps->iova_bits, defaults.iova_bits);
  EXPECT_EQ(caps->max_rids, defaults.max_rids);
  EXPECT_EQ(caps->domain_types, defaults.domain_types);
  ASSERT_EQ(caps->reserved_regions.size(), defaults.reserved_regions.size());
  EXPECT_EQ(caps->reserved_regions[0].start, defaults.reserved_regions[0].start);
}

TEST(ProtoConvertTest, UnitCapsOverrides) {
  iommu::v1::Topology::UnitCaps proto;
  proto.set_pgsize_bitmap(kPage4K);
  proto.set_iova_bits(32);
  proto.set_max_rids(64);
  proto.add_domain_types(iommu::v1::DOMAIN_TYPE_BLOCKED);
  proto.add_domain_types(iommu::v1::DOMAIN_TYPE_UNMANAGED);
  iommu::v1::IovaRange* region = proto.add_reserved_regions();
  region->set_start(0x8000000);
  region->set_size(0x10000);
  absl::StatusOr<UnitCaps> caps = UnitCapsFromProto(proto);
  ASSERT_TRUE(caps.ok()) << caps.status();
  EXPECT_EQ(caps->pgsize_bitmap, kPage4K);
  EXPECT_EQ(caps->iova_bits, 32u);
  EXPECT_EQ(caps->max_rids, 64u);
  EXPECT_THAT(caps->domain_types, ElementsAre(DomainType::kBlocked, DomainType::kUnmanaged));
  ASSERT_EQ(caps->reserved_regions.size(), 1u);
  EXPECT_EQ(caps->reserved_regions[0].start, 0x8000000u);
  EXPECT_EQ(caps->reserved_regions[0].size, 0x10000u);
}

TEST(ProtoConvertTest, UnitCapsRejectUnspecifiedAndUnknownDomainTypes) {
  iommu::v1::Topology::UnitCaps proto;
  proto.add_domain_types(iommu::v1::DOMAIN_TYPE_UNSPECIFIED);
  EXPECT_EQ(ErrorReason(UnitCapsFromProto(proto).status()), "INVALID_ENUM_VALUE");
  proto.set_domain_types(0, static_cast<iommu::v1::DomainType>(9));
  absl::Status status = UnitCapsFromProto(proto).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorReason(status), "INVALID_ENUM_VALUE");
}

TEST(ProtoConvertTest, ProtBits) {
  EXPECT_EQ(*ProtFromProto(0, kProtRead | kProtWrite, "prot"), kProtRead | kProtWrite);
  EXPECT_EQ(*ProtFromProto(0, kProtRead, "access"), static_cast<uint32_t>(kProtRead));
  EXPECT_EQ(*ProtFromProto(kProtWrite, kProtRead, "access"), static_cast<uint32_t>(kProtWrite));
  absl::StatusOr<uint32_t> bad = ProtFromProto(kProtRead | 4, kProtRead, "prot");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorReason(bad.status()), "INVALID_PROT");
  EXPECT_THAT(GetErrorMetadata(bad.status()),
              ElementsAre(Pair("field", "prot"), Pair("value", "5")));
}

TEST(ProtoConvertTest, RequiredFields) {
  EXPECT_TRUE(RequireField("x", "device").ok());
  EXPECT_TRUE(RequireId(3, "group_id").ok());
  absl::Status missing = RequireId(0, "group_id");
  EXPECT_EQ(missing.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorReason(missing), "MISSING_FIELD");
  EXPECT_EQ(GetErrorMetadata(missing).at("field"), "group_id");
  EXPECT_EQ(ErrorReason(RequireField("", "device")), "MISSING_FIELD");
}

}  // namespace
}  // namespace iommud

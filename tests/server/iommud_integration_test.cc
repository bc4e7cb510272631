// The real iommud binary on a unix socket, driven through the C++ client library: the whole device
// walkthrough, misuse (each error's gRPC code and ErrorInfo reason, and that it changed nothing),
// pagination and health.
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "clients/cpp/iommud_client.h"
#include "core/error.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/status_codec.h"
#include "tests/server/daemon_fixture.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::iommud::test::TestDaemon;
using ::iommud::test::TestDaemonOptions;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr char kSingle[] = "0000:01:00.0";  // alone in its group on u0
constexpr char kPairA[] = "0000:02:00.0";   // shares RID 0x20 with kPairB on u0
constexpr char kPairB[] = "0000:02:00.1";
constexpr char kOwner[] = "vmm-a";
constexpr char kOther[] = "vmm-b";

class IommudIntegrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<TestDaemon>> daemon = TestDaemon::Start();
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = daemon->release();
  }
  static void TearDownTestSuite() {
    if (daemon_ == nullptr) return;
    absl::StatusOr<int> exit_status = daemon_->Stop();
    EXPECT_TRUE(exit_status.ok()) << exit_status.status();
    if (exit_status.ok()) EXPECT_EQ(*exit_status, 0) << daemon_->Log();
    delete daemon_;
    daemon_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(daemon_, nullptr);
    absl::StatusOr<std::unique_ptr<IommuClient>> client = daemon_->Connect();
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }

  // --- Small helpers; each asserts success and returns the response. ---
  iommu::v1::Device Device(const std::string& name) {
    iommu::v1::GetDeviceRequest request;
    request.set_device(name);
    absl::StatusOr<iommu::v1::Device> device = client_->GetDevice(request);
    EXPECT_TRUE(device.ok()) << name << ": " << device.status();
    return device.value_or(iommu::v1::Device());
  }
  iommu::v1::Group Group(uint64_t id) {
    iommu::v1::GetGroupRequest request;
    request.set_group_id(id);
    absl::StatusOr<iommu::v1::Group> group = client_->GetGroup(request);
    EXPECT_TRUE(group.ok()) << id << ": " << group.status();
    return group.value_or(iommu::v1::Group());
  }
  iommu::v1::Domain Domain(uint64_t id) {
    iommu::v1::GetDomainRequest request;
    request.set_domain_id(id);
    absl::StatusOr<iommu::v1::Domain> domain = client_->GetDomain(request);
    EXPECT_TRUE(domain.ok()) << id << ": " << domain.status();
    return domain.value_or(iommu::v1::Domain());
  }
  absl::StatusOr<iommu::v1::Group> Claim(uint64_t group, const std::string& owner) {
    iommu::v1::ClaimOwnershipRequest request;
    request.set_group_id(group);
    request.set_owner(owner);
    return client_->ClaimOwnership(request);
  }
  absl::StatusOr<iommu::v1::Group> Release(uint64_t group, const std::string& owner) {
    iommu::v1::ReleaseOwnershipRequest request;
    request.set_group_id(group);
    request.set_owner(owner);
    return client_->ReleaseOwnership(request);
  }
  absl::StatusOr<iommu::v1::Domain> Alloc(const std::string& unit, const std::string& owner) {
    iommu::v1::AllocDomainRequest request;
    request.set_unit(unit);
    request.set_type(iommu::v1::DOMAIN_TYPE_UNMANAGED);
    request.set_owner(owner);
    return client_->AllocDomain(request);
  }
  absl::StatusOr<iommu::v1::Domain> Free(uint64_t domain, const std::string& owner) {
    iommu::v1::FreeDomainRequest request;
    request.set_domain_id(domain);
    request.set_owner(owner);
    return client_->FreeDomain(request);
  }
  absl::StatusOr<iommu::v1::Group> AttachDevice(const std::string& device, uint64_t domain,
                                                const std::string& owner) {
    iommu::v1::AttachDeviceRequest request;
    request.set_device(device);
    request.set_domain_id(domain);
    request.set_owner(owner);
    return client_->AttachDevice(request);
  }
  absl::StatusOr<iommu::v1::Group> Detach(uint64_t group, uint64_t domain,
                                          const std::string& owner) {
    iommu::v1::DetachGroupRequest request;
    request.set_group_id(group);
    request.set_domain_id(domain);
    request.set_owner(owner);
    return client_->DetachGroup(request);
  }
  absl::StatusOr<iommu::v1::MapResponse> Map(uint64_t domain, uint64_t iova, uint64_t paddr,
                                             uint64_t size, const std::string& owner) {
    iommu::v1::MapRequest request;
    request.set_domain_id(domain);
    request.set_iova(iova);
    request.set_paddr(paddr);
    request.set_size(size);
    request.set_owner(owner);
    return client_->Map(request);
  }
  absl::StatusOr<iommu::v1::UnmapResponse> Unmap(uint64_t domain, uint64_t iova, uint64_t size,
                                                 const std::string& owner) {
    iommu::v1::UnmapRequest request;
    request.set_domain_id(domain);
    request.set_iova(iova);
    request.set_size(size);
    request.set_owner(owner);
    return client_->Unmap(request);
  }
  absl::StatusOr<iommu::v1::TranslateResponse> Translate(const std::string& device, uint64_t iova,
                                                         uint32_t access = 0) {
    iommu::v1::TranslateRequest request;
    request.set_device(device);
    request.set_iova(iova);
    request.set_access(access);
    return client_->Translate(request);
  }
  std::vector<iommu::v1::Mapping> Mappings(uint64_t domain) {
    iommu::v1::ListMappingsRequest request;
    request.set_domain_id(domain);
    request.set_page_size(1000);
    absl::StatusOr<iommu::v1::ListMappingsResponse> response = client_->ListMappings(request);
    EXPECT_TRUE(response.ok()) << response.status();
    if (!response.ok()) return {};
    return {response->mappings().begin(), response->mappings().end()};
  }
  absl::StatusOr<iommu::v1::Device> Probe(const std::string& unit, const std::string& name,
                                          uint32_t rid) {
    iommu::v1::ProbeDeviceRequest request;
    request.set_unit(unit);
    request.set_device(name);
    request.set_rid(rid);
    return client_->ProbeDevice(request);
  }
  absl::StatusOr<iommu::v1::ReleaseDeviceResponse> ReleaseDevice(const std::string& name) {
    iommu::v1::ReleaseDeviceRequest request;
    request.set_device(name);
    return client_->ReleaseDevice(request);
  }

  static TestDaemon* daemon_;
  std::unique_ptr<IommuClient> client_;
};

TestDaemon* IommudIntegrationTest::daemon_ = nullptr;

TEST_F(IommudIntegrationTest, ServesTheTopologyItWasGiven) {
  ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::IommuUnit> units, client_->ListAllUnits());
  ASSERT_THAT(units, SizeIs(2));
  EXPECT_EQ(units[0].name(), "u0");
  EXPECT_EQ(units[0].backend(), "software");
  EXPECT_EQ(units[0].iova_bits(), 32u);
  EXPECT_EQ(units[0].pgsize_bitmap(), 0x201000u);
  EXPECT_EQ(units[0].max_rids(), 256u);
  EXPECT_EQ(units[1].name(), "u1");
  EXPECT_EQ(units[1].iova_bits(), 48u);  // defaults for a unit without caps

  const iommu::v1::Device a = Device(kPairA);
  const iommu::v1::Device b = Device(kPairB);
  EXPECT_EQ(a.group_id(), b.group_id());
  EXPECT_NE(a.group_id(), Device(kSingle).group_id());
  EXPECT_THAT(Group(a.group_id()).devices(), ElementsAre(kPairA, kPairB));
  const iommu::v1::Domain default_domain = Domain(a.domain_id());
  EXPECT_EQ(default_domain.type(), iommu::v1::DOMAIN_TYPE_DMA);
  EXPECT_TRUE(default_domain.core_owned());
}

TEST_F(IommudIntegrationTest, FullWalkthrough) {
  // Hot-plug a device: it gets its own group on its default (DMA) domain.
  ASSERT_OK_AND_ASSIGN(iommu::v1::Device device, Probe("u0", "0000:03:00.0", 0x30));
  EXPECT_EQ(device.unit(), "u0");
  EXPECT_EQ(device.rid(), 0x30u);
  EXPECT_EQ(device.binding(), iommu::v1::DRIVER_BINDING_NONE);
  const uint64_t group_id = device.group_id();
  iommu::v1::Group group = Group(group_id);
  EXPECT_THAT(group.devices(), ElementsAre("0000:03:00.0"));
  EXPECT_EQ(group.domain_id(), group.default_domain_id());
  EXPECT_EQ(device.domain_id(), group.default_domain_id());

  // A VMM claims the group: it moves to the blocking domain.
  ASSERT_OK_AND_ASSIGN(group, Claim(group_id, kOwner));
  EXPECT_EQ(group.owner(), test::OwnOwner(kOwner));
  EXPECT_EQ(group.owner_cnt(), 1u);
  EXPECT_EQ(group.domain_id(), group.blocking_domain_id());
  EXPECT_EQ(Device("0000:03:00.0").binding(), iommu::v1::DRIVER_BINDING_USER_OWNED);
  ASSERT_OK_AND_ASSIGN(iommu::v1::TranslateResponse blocked, Translate("0000:03:00.0", 0x200000));
  EXPECT_EQ(blocked.fault(), iommu::v1::FAULT_REASON_BLOCKED);

  // Its own paging domain, attached.
  ASSERT_OK_AND_ASSIGN(iommu::v1::Domain domain, Alloc("u0", kOwner));
  EXPECT_EQ(domain.type(), iommu::v1::DOMAIN_TYPE_UNMANAGED);
  EXPECT_EQ(domain.owner(), test::OwnOwner(kOwner));
  EXPECT_FALSE(domain.core_owned());
  ASSERT_OK_AND_ASSIGN(group, AttachDevice("0000:03:00.0", domain.id(), kOwner));
  EXPECT_EQ(group.domain_id(), domain.id());
  EXPECT_THAT(Domain(domain.id()).attached_group_ids(), ElementsAre(group_id));

  // Map 2 MiB + 4 KiB, translate inside it.
  constexpr uint64_t kIova = 0x200000, kPaddr = 0x40000000, kSize = 0x201000;
  ASSERT_OK_AND_ASSIGN(iommu::v1::MapResponse mapped,
                       Map(domain.id(), kIova, kPaddr, kSize, kOwner));
  EXPECT_EQ(mapped.mapping().iova(), kIova);
  EXPECT_EQ(mapped.mapping().paddr(), kPaddr);
  EXPECT_EQ(mapped.mapping().size(), kSize);
  EXPECT_EQ(mapped.mapping().prot(), 3u);  // 0 on the wire = READ|WRITE
  ASSERT_OK_AND_ASSIGN(iommu::v1::TranslateResponse hit,
                       Translate("0000:03:00.0", kIova + 0x1234, 2));
  EXPECT_EQ(hit.fault(), iommu::v1::FAULT_REASON_NONE);
  EXPECT_EQ(hit.paddr(), kPaddr + 0x1234);
  EXPECT_EQ(hit.domain_id(), domain.id());
  ASSERT_OK_AND_ASSIGN(hit, Translate("0000:03:00.0", kIova + 0x200010));  // the 4K tail
  EXPECT_EQ(hit.paddr(), kPaddr + 0x200010);
  uint64_t mapped_bytes = 0;
  for (const iommu::v1::Mapping& mapping : Mappings(domain.id())) mapped_bytes += mapping.size();
  EXPECT_EQ(mapped_bytes, kSize);
  EXPECT_EQ(Domain(domain.id()).mapped_bytes(), kSize);

  // Unmap: the range no longer translates, and the fault is recorded with the device's name.
  ASSERT_OK_AND_ASSIGN(iommu::v1::UnmapResponse unmapped, Unmap(domain.id(), kIova, kSize, kOwner));
  EXPECT_EQ(unmapped.bytes_unmapped(), kSize);
  EXPECT_THAT(Mappings(domain.id()), IsEmpty());
  ASSERT_OK_AND_ASSIGN(iommu::v1::TranslateResponse miss,
                       Translate("0000:03:00.0", kIova + 0x1234));
  EXPECT_EQ(miss.fault(), iommu::v1::FAULT_REASON_NO_MAPPING);
  ASSERT_OK_AND_ASSIGN(iommu::v1::ListTranslationFaultsResponse faults,
                       client_->ListTranslationFaults(iommu::v1::ListTranslationFaultsRequest()));
  ASSERT_GE(faults.faults_size(), 2);
  EXPECT_GE(faults.total(), 2u);
  EXPECT_EQ(faults.faults(0).device(), "0000:03:00.0");  // most recent first
  EXPECT_EQ(faults.faults(0).unit(), "u0");
  EXPECT_EQ(faults.faults(0).rid(), 0x30u);
  EXPECT_EQ(faults.faults(0).iova(), kIova + 0x1234);
  EXPECT_EQ(faults.faults(0).reason(), iommu::v1::FAULT_REASON_NO_MAPPING);
  EXPECT_EQ(faults.faults(1).reason(), iommu::v1::FAULT_REASON_BLOCKED);

  // Detach (back to blocking: still owned), free, release ownership (back to default), unplug.
  ASSERT_OK_AND_ASSIGN(group, Detach(group_id, domain.id(), kOwner));
  EXPECT_EQ(group.domain_id(), group.blocking_domain_id());
  ASSERT_OK_AND_ASSIGN(iommu::v1::Domain freed, Free(domain.id(), kOwner));
  EXPECT_EQ(freed.id(), domain.id());
  iommu::v1::GetDomainRequest get_domain;
  get_domain.set_domain_id(domain.id());
  EXPECT_ERROR(client_->GetDomain(get_domain), kNotFound, "DOMAIN_NOT_FOUND");
  ASSERT_OK_AND_ASSIGN(group, Release(group_id, kOwner));
  EXPECT_EQ(group.owner(), "");
  EXPECT_EQ(group.owner_cnt(), 0u);
  EXPECT_EQ(group.domain_id(), group.default_domain_id());
  ASSERT_OK_AND_ASSIGN(iommu::v1::ReleaseDeviceResponse released, ReleaseDevice("0000:03:00.0"));
  EXPECT_FALSE(released.leaked_attachment());

  iommu::v1::GetDeviceRequest get_device;
  get_device.set_device("0000:03:00.0");
  EXPECT_ERROR(client_->GetDevice(get_device), kNotFound, "DEVICE_NOT_FOUND");
  EXPECT_ERROR(Translate("0000:03:00.0", kIova), kNotFound, "DEVICE_NOT_FOUND");
  iommu::v1::GetGroupRequest get_group;
  get_group.set_group_id(group_id);
  EXPECT_ERROR(client_->GetGroup(get_group), kNotFound, "GROUP_NOT_FOUND");
}

TEST_F(IommudIntegrationTest, DuplicateProbeIsDeviceExists) {
  const iommu::v1::Device before = Device(kSingle);
  EXPECT_ERROR(Probe("u1", kSingle, 0x99), kAlreadyExists, "DEVICE_EXISTS");
  const iommu::v1::Device after = Device(kSingle);
  EXPECT_EQ(after.SerializeAsString(), before.SerializeAsString());
  iommu::v1::ListDevicesRequest on_u1;
  on_u1.set_unit("u1");
  ASSERT_OK_AND_ASSIGN(iommu::v1::ListDevicesResponse devices, client_->ListDevices(on_u1));
  EXPECT_THAT(devices.devices(), SizeIs(1));
}

TEST_F(IommudIntegrationTest, UnknownDeviceUnitGroupDomainAreNotFound) {
  iommu::v1::GetDeviceRequest device;
  device.set_device("0000:ff:00.0");
  EXPECT_ERROR(client_->GetDevice(device), kNotFound, "DEVICE_NOT_FOUND");
  EXPECT_ERROR(AttachDevice("0000:ff:00.0", 1, kOwner), kNotFound, "DEVICE_NOT_FOUND");
  EXPECT_ERROR(ReleaseDevice("0000:ff:00.0"), kNotFound, "DEVICE_NOT_FOUND");
  EXPECT_ERROR(Probe("u9", "0000:ff:00.0", 1), kNotFound, "UNIT_NOT_FOUND");
  EXPECT_ERROR(Claim(999999, kOwner), kNotFound, "GROUP_NOT_FOUND");
  EXPECT_ERROR(Free(999999, kOwner), kNotFound, "DOMAIN_NOT_FOUND");
  iommu::v1::ListGroupsRequest groups;
  groups.set_unit("u9");
  EXPECT_ERROR(client_->ListGroups(groups), kNotFound, "UNIT_NOT_FOUND");
}

TEST_F(IommudIntegrationTest, ClaimWhileKernelDriverBoundIsGroupInUse) {
  const uint64_t group_id = Device(kSingle).group_id();
  iommu::v1::UseDefaultDomainRequest use;
  use.set_device(kSingle);
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group bound, client_->UseDefaultDomain(use));
  EXPECT_EQ(bound.owner_cnt(), 1u);

  EXPECT_ERROR(Claim(group_id, kOwner), kFailedPrecondition, "GROUP_IN_USE");
  const iommu::v1::Group unchanged = Group(group_id);
  EXPECT_EQ(unchanged.owner(), "");
  EXPECT_EQ(unchanged.owner_cnt(), 1u);
  EXPECT_EQ(unchanged.domain_id(), unchanged.default_domain_id());

  iommu::v1::UnuseDefaultDomainRequest unuse;
  unuse.set_device(kSingle);
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group unbound, client_->UnuseDefaultDomain(unuse));
  EXPECT_EQ(unbound.owner_cnt(), 0u);
}

TEST_F(IommudIntegrationTest, ReleaseByAnotherOwnerIsPermissionDenied) {
  const uint64_t group_id = Device(kSingle).group_id();
  ASSERT_TRUE(Claim(group_id, kOwner).ok());
  EXPECT_ERROR(Claim(group_id, kOther), kFailedPrecondition, "GROUP_IN_USE");
  EXPECT_ERROR(Release(group_id, kOther), kPermissionDenied, "NOT_OWNER");
  EXPECT_EQ(Group(group_id).owner(), test::OwnOwner(kOwner));
  ASSERT_TRUE(Release(group_id, kOwner).ok());
  EXPECT_ERROR(Release(group_id, kOwner), kFailedPrecondition, "GROUP_NOT_OWNED");
}

TEST_F(IommudIntegrationTest, FreeingAnAttachedDomainIsDomainInUse) {
  const uint64_t group_id = Device(kSingle).group_id();
  ASSERT_TRUE(Claim(group_id, kOwner).ok());
  ASSERT_OK_AND_ASSIGN(iommu::v1::Domain domain, Alloc("u0", kOwner));
  ASSERT_TRUE(AttachDevice(kSingle, domain.id(), kOwner).ok());

  EXPECT_ERROR(Free(domain.id(), kOwner), kFailedPrecondition, "DOMAIN_IN_USE");
  EXPECT_THAT(Domain(domain.id()).attached_group_ids(), ElementsAre(group_id));
  EXPECT_EQ(Group(group_id).domain_id(), domain.id());

  ASSERT_TRUE(Detach(group_id, domain.id(), kOwner).ok());
  ASSERT_TRUE(Free(domain.id(), kOwner).ok());
  ASSERT_TRUE(Release(group_id, kOwner).ok());
}

// Per-device attach over the wire: the first device attaches the shared group, the second joins,
// another domain is GROUP_ATTACHED_ELSEWHERE; DetachDevice takes them off one by one; GetGroup and
// GetDevice show which devices are attached; a request id retried answers the same group.
TEST_F(IommudIntegrationTest, PerDeviceAttachOfASharedGroup) {
  const uint64_t group_id = Device(kPairA).group_id();
  ASSERT_TRUE(Claim(group_id, kOwner).ok());
  ASSERT_OK_AND_ASSIGN(iommu::v1::Domain domain, Alloc("u0", kOwner));
  ASSERT_OK_AND_ASSIGN(iommu::v1::Domain other, Alloc("u0", kOwner));

  ASSERT_OK_AND_ASSIGN(iommu::v1::Group attached, AttachDevice(kPairA, domain.id(), kOwner));
  EXPECT_EQ(attached.domain_id(), domain.id());
  EXPECT_THAT(attached.attached_devices(), ElementsAre(kPairA));
  EXPECT_TRUE(Device(kPairA).attached());
  EXPECT_FALSE(Device(kPairB).attached());
  EXPECT_EQ(Device(kPairB).domain_id(), domain.id());  // it translates through the group's domain

  EXPECT_ERROR(AttachDevice(kPairB, other.id(), kOwner), kFailedPrecondition,
               "GROUP_ATTACHED_ELSEWHERE");
  EXPECT_THAT(Group(group_id).attached_devices(), ElementsAre(kPairA));
  EXPECT_THAT(Domain(other.id()).attached_group_ids(), IsEmpty());

  ASSERT_OK_AND_ASSIGN(iommu::v1::Group joined, AttachDevice(kPairB, domain.id(), kOwner));
  EXPECT_THAT(joined.attached_devices(), ElementsAre(kPairA, kPairB));

  iommu::v1::DetachDeviceRequest detach;
  detach.set_device(kPairA);
  detach.set_domain_id(domain.id());
  detach.set_owner(kOwner);
  detach.set_request_id("detach-pair-a");
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group left, client_->DetachDevice(detach));
  EXPECT_EQ(left.domain_id(), domain.id());
  EXPECT_THAT(left.attached_devices(), ElementsAre(kPairB));
  // The retry answers the recorded reply, not DEVICE_NOT_ATTACHED.
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group retried, client_->DetachDevice(detach));
  EXPECT_THAT(retried.attached_devices(), ElementsAre(kPairB));
  detach.clear_request_id();
  EXPECT_ERROR(client_->DetachDevice(detach), kFailedPrecondition, "DEVICE_NOT_ATTACHED");
  detach.set_owner(kOther);
  EXPECT_ERROR(client_->DetachDevice(detach), kPermissionDenied, "NOT_OWNER");
  detach.set_owner(kOwner);
  detach.set_domain_id(0);
  EXPECT_ERROR(client_->DetachDevice(detach), kInvalidArgument, "MISSING_FIELD");

  detach.set_device(kPairB);
  detach.set_domain_id(domain.id());
  ASSERT_OK_AND_ASSIGN(iommu::v1::Group last, client_->DetachDevice(detach));
  EXPECT_EQ(last.domain_id(), last.blocking_domain_id());
  EXPECT_THAT(last.attached_devices(), IsEmpty());
  EXPECT_THAT(Domain(domain.id()).attached_group_ids(), IsEmpty());
  ASSERT_TRUE(Free(domain.id(), kOwner).ok());
  ASSERT_TRUE(Free(other.id(), kOwner).ok());
  ASSERT_TRUE(Release(group_id, kOwner).ok());
}

TEST_F(IommudIntegrationTest, MapErrors) {
  ASSERT_OK_AND_ASSIGN(iommu::v1::Domain domain, Alloc("u0", kOwner));
  ASSERT_TRUE(Map(domain.id(), 0x100000, 0x100000, 0x10000, kOwner).ok());
  const std::vector<iommu::v1::Mapping> before = Mappings(domain.id());

  EXPECT_ERROR(Map(domain.id(), 0x300100, 0x300000, 0x1000, kOwner), kInvalidArgument, "UNALIGNED");
  EXPECT_ERROR(Map(domain.id(), 0x300000, 0x300000, 0x1800, kOwner), kInvalidArgument, "UNALIGNED");
  // u0's aperture is 32 bits.
  EXPECT_ERROR(Map(domain.id(), uint64_t{1} << 32, 0, 0x1000, kOwner), kOutOfRange,
               "OUT_OF_APERTURE");
  EXPECT_ERROR(Map(domain.id(), 0xfffff000, 0, 0x2000, kOwner), kOutOfRange, "OUT_OF_APERTURE");
  EXPECT_ERROR(Map(domain.id(), 0x10f000, 0x900000, 0x2000, kOwner), kAlreadyExists,
               "MAPPING_EXISTS");
  EXPECT_ERROR(Map(domain.id(), 0xfee00000, 0, 0x1000, kOwner), kInvalidArgument,
               "RESERVED_REGION");

  // Unmapping part of a mapping would split it: refused, nothing removed.
  EXPECT_ERROR(Unmap(domain.id(), 0x100000, 0x1000, kOwner), kInvalidArgument, "UNMAP_SPLIT");
  const std::vector<iommu::v1::Mapping> after = Mappings(domain.id());
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i].SerializeAsString(), before[i].SerializeAsString());
  }
  EXPECT_EQ(Domain(domain.id()).mapped_bytes(), 0x10000u);

  // A hole is fine and unmaps nothing.
  ASSERT_OK_AND_ASSIGN(iommu::v1::UnmapResponse hole, Unmap(domain.id(), 0x800000, 0x1000, kOwner));
  EXPECT_EQ(hole.bytes_unmapped(), 0u);
  ASSERT_TRUE(Free(domain.id(), kOwner).ok());
}

TEST_F(IommudIntegrationTest, WireValidation) {
  iommu::v1::GetDeviceRequest no_device;
  EXPECT_ERROR(client_->GetDevice(no_device), kInvalidArgument, "MISSING_FIELD");
  iommu::v1::GetGroupRequest no_group;
  EXPECT_ERROR(client_->GetGroup(no_group), kInvalidArgument, "MISSING_FIELD");

  iommu::v1::AllocDomainRequest bad_type;
  bad_type.set_unit("u0");
  bad_type.set_type(static_cast<iommu::v1::DomainType>(77));
  EXPECT_ERROR(client_->AllocDomain(bad_type), kInvalidArgument, "INVALID_ENUM_VALUE");

  EXPECT_ERROR(Translate(kSingle, 0x1000, 8), kInvalidArgument, "INVALID_PROT");

  iommu::v1::ListDevicesRequest bad_token;
  bad_token.set_page_token("garbage");
  EXPECT_ERROR(client_->ListDevices(bad_token), kInvalidArgument, "INVALID_PAGE_TOKEN");

  // On the wire: a google.rpc.ErrorInfo in domain iommud.dev naming the field.
  grpc::ClientContext context;
  iommu::v1::Device response;
  grpc::Status status = client_->stub()->GetDevice(&context, no_device, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  google::rpc::ErrorInfo info;
  ASSERT_TRUE(ExtractErrorInfo(status, &info));
  EXPECT_EQ(info.reason(), "MISSING_FIELD");
  EXPECT_EQ(info.domain(), "iommud.dev");
  EXPECT_EQ(info.metadata().at("field"), "device");
}

TEST_F(IommudIntegrationTest, PaginationWalksEveryDeviceOnce) {
  std::vector<std::string> probed;
  for (int i = 0; i < 23; ++i) {
    const std::string name = absl::StrFormat("0000:9%d:%02x.0", i % 2, i);
    ASSERT_TRUE(Probe("u1", name, 0x900 + i).ok());
    probed.push_back(name);
  }
  iommu::v1::ListDevicesRequest request;
  request.set_unit("u1");
  request.set_page_size(5);
  std::vector<std::string> seen;
  int pages = 0;
  do {
    ASSERT_OK_AND_ASSIGN(iommu::v1::ListDevicesResponse page, client_->ListDevices(request));
    ++pages;
    EXPECT_LE(page.devices_size(), 5);
    for (const iommu::v1::Device& device : page.devices()) seen.push_back(device.name());
    request.set_page_token(page.next_page_token());
    // A token is bound to its list and filters.
    if (!page.next_page_token().empty()) {
      iommu::v1::ListDevicesRequest other_filter;
      other_filter.set_unit("u0");
      other_filter.set_page_token(page.next_page_token());
      EXPECT_ERROR(client_->ListDevices(other_filter), kInvalidArgument, "INVALID_PAGE_TOKEN");
    }
  } while (!request.page_token().empty());
  EXPECT_EQ(pages, 5);  // 24 devices on u1 in pages of 5
  ASSERT_EQ(seen.size(), 24u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end());

  ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::Device> all, client_->ListAllDevices());
  EXPECT_EQ(all.size(), 24u + 3u);  // plus u0's three
  ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::Group> groups, client_->ListAllGroups());
  EXPECT_EQ(groups.size(), 24u + 2u);
  ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::Domain> domains, client_->ListAllDomains());
  EXPECT_GE(domains.size(), groups.size());

  // Groups paginate by id, in id order.
  iommu::v1::ListGroupsRequest group_request;
  group_request.set_page_size(4);
  ASSERT_OK_AND_ASSIGN(iommu::v1::ListGroupsResponse first, client_->ListGroups(group_request));
  group_request.set_page_token(first.next_page_token());
  ASSERT_OK_AND_ASSIGN(iommu::v1::ListGroupsResponse second, client_->ListGroups(group_request));
  ASSERT_EQ(first.groups_size(), 4);
  ASSERT_GT(second.groups_size(), 0);
  EXPECT_LT(first.groups(3).id(), second.groups(0).id());

  for (const std::string& name : probed) ASSERT_TRUE(ReleaseDevice(name).ok());
}

TEST_F(IommudIntegrationTest, HealthIsServing) {
  ASSERT_OK_AND_ASSIGN(auto overall, client_->CheckHealth(""));
  EXPECT_EQ(overall, grpc::health::v1::HealthCheckResponse::SERVING);
  ASSERT_OK_AND_ASSIGN(auto api, client_->CheckHealth("iommu.v1.Iommu"));
  EXPECT_EQ(api, grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(client_->CheckHealth("no.such.Service").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace iommud

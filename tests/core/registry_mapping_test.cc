// docs/semantics.md "Domains and mappings": Map/Unmap rules and Translate.
#include <string>

#include "core/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/testing/registry_fixture.h"

namespace iommud {
namespace test {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr uint32_t kRW = kProtRead | kProtWrite;

class RegistryMappingTest : public RegistryTest {
 protected:
  void SetUp() override {
    RegistryTest::SetUp();
    Probe("dev", 0x100);
    domain_ = ClaimAndAttach("dev");
  }
  absl::StatusOr<Mapping> Map(uint64_t iova, uint64_t paddr, uint64_t size, uint32_t prot = kRW,
                              const std::string& owner = kOwner) {
    return registry_->Map(domain_, iova, paddr, size, prot, owner);
  }
  absl::StatusOr<uint64_t> Unmap(uint64_t iova, uint64_t size) {
    return registry_->Unmap(domain_, iova, size, kOwner);
  }
  Translation Dma(uint64_t iova, uint32_t access = kProtRead) {
    absl::StatusOr<Translation> translation = registry_->Translate("dev", iova, access);
    EXPECT_TRUE(translation.ok()) << translation.status();
    return translation.ok() ? *translation : Translation{};
  }
  DomainId domain_ = 0;
};

TEST_P(RegistryMappingTest, AMappedRangeTranslatesForEveryAttachedDevice) {
  ASSERT_OK_AND_ASSIGN(Mapping mapping, Map(0x200000, 0x40000000, 0x3000, kProtRead));
  EXPECT_EQ(mapping.iova, 0x200000u);
  EXPECT_EQ(mapping.size, 0x3000u);
  EXPECT_EQ(Dma(0x200000).paddr, 0x40000000u);
  EXPECT_EQ(Dma(0x202abc).paddr, 0x40002abcu);
  EXPECT_EQ(Dma(0x203000).fault, FaultReason::kNoMapping);
  EXPECT_EQ(Dma(0x200000, kProtWrite).fault, FaultReason::kPermission);
  EXPECT_THAT(registry_->ListMappings(domain_).value(), SizeIs(1));
  EXPECT_EQ(Domain(domain_).mapped_bytes, 0x3000u);
}

TEST_P(RegistryMappingTest, LargePagesAreUsedWhereTheyFit) {
  // 2M-aligned iova and paddr, 2M + 4K long: one 2M leaf and one 4K leaf.
  ASSERT_TRUE(Map(0x40000000, 0x80000000, kPage2M + kPage4K).ok());
  ASSERT_OK_AND_ASSIGN(std::vector<Mapping> leaves, hardware_->ReadMappings(domain_));
  ASSERT_THAT(leaves, SizeIs(2));
  EXPECT_EQ(leaves[0].size, kPage2M);
  EXPECT_EQ(leaves[1].size, kPage4K);
  // 1G where iova and paddr allow it.
  ASSERT_TRUE(Map(kPage1G * 4, kPage1G * 8, kPage1G).ok());
  ASSERT_OK_AND_ASSIGN(leaves, hardware_->ReadMappings(domain_));
  ASSERT_THAT(leaves, SizeIs(3));
  EXPECT_EQ(leaves[2].size, kPage1G);
  EXPECT_EQ(Dma(kPage1G * 4 + 0x1234).paddr, kPage1G * 8 + 0x1234);
}

TEST_P(RegistryMappingTest, MapErrorsChangeNothing) {
  ASSERT_TRUE(Map(0x100000, 0x100000, 0x10000).ok());
  const std::string before = Snapshot();
  EXPECT_ERROR(Map(0x300100, 0x300000, 0x1000), kInvalidArgument, "UNALIGNED");
  EXPECT_ERROR(Map(0x300000, 0x300800, 0x1000), kInvalidArgument, "UNALIGNED");
  EXPECT_ERROR(Map(0x300000, 0x300000, 0x1800), kInvalidArgument, "UNALIGNED");
  EXPECT_ERROR(Map(0x300000, 0x300000, 0), kInvalidArgument, "INVALID_SIZE");
  EXPECT_ERROR(Map(uint64_t{1} << 39, 0, 0x1000), kOutOfRange, "OUT_OF_APERTURE");
  EXPECT_ERROR(Map((uint64_t{1} << 39) - 0x1000, 0, 0x2000), kOutOfRange, "OUT_OF_APERTURE");
  EXPECT_ERROR(Map(0x1000, ~uint64_t{0} - 0xfff, 0x2000), kOutOfRange, "PADDR_OVERFLOW");
  EXPECT_ERROR(Map(0x10f000, 0x900000, 0x2000), kAlreadyExists, "MAPPING_EXISTS");
  EXPECT_ERROR(Map(0xf0000, 0x900000, 0x20000), kAlreadyExists, "MAPPING_EXISTS");
  EXPECT_ERROR(Map(0xfee00000, 0, 0x1000), kInvalidArgument, "RESERVED_REGION");
  EXPECT_ERROR(Map(0xfed00000, 0, 0x200000), kInvalidArgument, "RESERVED_REGION");
  EXPECT_ERROR(Map(0x300000, 0x300000, 0x1000, 0), kInvalidArgument, "INVALID_PROT");
  EXPECT_ERROR(Map(0x300000, 0x300000, 0x1000, 4), kInvalidArgument, "INVALID_PROT");
  EXPECT_ERROR(Map(0x300000, 0x300000, 0x1000, kRW, kOther), kPermissionDenied, "NOT_OWNER");
  EXPECT_ERROR(registry_->Map(9999, 0, 0, 0x1000, kRW, kOwner), kNotFound, "DOMAIN_NOT_FOUND");
  backend_->FailNth(FailingBackend::Op::kMap, 1);
  EXPECT_ERROR(Map(0x300000, 0x300000, 0x1000), kInternal, "INJECTED_FAULT");
  EXPECT_EQ(Snapshot(), before);
}

TEST_P(RegistryMappingTest, NonPagingDomainsHaveNoMappings) {
  ASSERT_OK_AND_ASSIGN(DomainInfo identity,
                       registry_->AllocDomain("u0", DomainType::kIdentity, kOwner));
  EXPECT_ERROR(registry_->Map(identity.id, 0, 0, 0x1000, kRW, kOwner), kFailedPrecondition,
               "DOMAIN_NOT_PAGING");
  EXPECT_ERROR(registry_->Unmap(identity.id, 0, 0x1000, kOwner), kFailedPrecondition,
               "DOMAIN_NOT_PAGING");
  const GroupInfo group = GroupOf("dev");
  EXPECT_ERROR(registry_->Map(group.blocking_domain, 0, 0, 0x1000, kRW, ""), kFailedPrecondition,
               "DOMAIN_NOT_PAGING");
}

TEST_P(RegistryMappingTest, TheHostMapsItsOwnDmaDomainsOnly) {
  const GroupId other = Probe("host-dev", 0x200).group;
  const DomainId dma = Group(other).default_domain;
  EXPECT_TRUE(registry_->Map(dma, 0x1000, 0x5000, 0x1000, kRW, "").ok());
  EXPECT_ERROR(registry_->Map(dma, 0x2000, 0x5000, 0x1000, kRW, kOwner), kPermissionDenied,
               "NOT_OWNER");
  EXPECT_ERROR(registry_->Unmap(dma, 0x1000, 0x1000, kOwner), kPermissionDenied, "NOT_OWNER");
  EXPECT_EQ(registry_->Unmap(dma, 0x1000, 0x1000, "").value(), 0x1000u);
}

TEST_P(RegistryMappingTest, UnmapRemovesWholeMappingsOnlyAndAllowsHoles) {
  ASSERT_TRUE(Map(0x100000, 0x100000, 0x10000).ok());
  ASSERT_TRUE(Map(0x200000, 0x200000, 0x1000).ok());
  const std::string before = Snapshot();
  EXPECT_ERROR(Unmap(0x100000, 0x1000), kInvalidArgument, "UNMAP_SPLIT");
  EXPECT_ERROR(Unmap(0x10f000, 0x2000), kInvalidArgument, "UNMAP_SPLIT");
  EXPECT_ERROR(Unmap(0x108000, 0x100000), kInvalidArgument, "UNMAP_SPLIT");
  EXPECT_ERROR(Unmap(0x100000, 0), kInvalidArgument, "INVALID_SIZE");
  EXPECT_ERROR(Unmap(0x100800, 0x1000), kInvalidArgument, "UNALIGNED");
  EXPECT_EQ(Snapshot(), before);
  // A hole unmaps nothing.
  ASSERT_OK_AND_ASSIGN(uint64_t none, Unmap(0x500000, 0x1000));
  EXPECT_EQ(none, 0u);
  // A range covering both mappings and the holes between them removes both.
  ASSERT_OK_AND_ASSIGN(uint64_t bytes, Unmap(0x0, 0x400000));
  EXPECT_EQ(bytes, 0x11000u);
  EXPECT_THAT(registry_->ListMappings(domain_).value(), IsEmpty());
  EXPECT_THAT(hardware_->ReadMappings(domain_).value(), IsEmpty());
}

TEST_P(RegistryMappingTest, NoDeviceTranslatesAnUnmappedIovaAfterUnmapReturns) {
  ASSERT_TRUE(Map(0x200000, 0x40000000, 0x1000).ok());
  EXPECT_EQ(Dma(0x200000).fault, FaultReason::kNone);  // now cached in the IOTLB
  const uint64_t cached = hardware_->Stats().iotlb_entries;
  ASSERT_GE(cached, 1u);
  ASSERT_TRUE(Unmap(0x200000, 0x1000).ok());
  EXPECT_LT(hardware_->Stats().iotlb_entries, cached);  // invalidated before Unmap returned
  EXPECT_EQ(Dma(0x200000).fault, FaultReason::kNoMapping);
}

TEST_P(RegistryMappingTest, AFailedUnmapPutsBackWhatItRemoved) {
  ASSERT_TRUE(Map(0x100000, 0x100000, 0x1000).ok());
  ASSERT_TRUE(Map(0x200000, 0x200000, 0x1000).ok());
  const std::string before = Snapshot();
  backend_->FailNth(FailingBackend::Op::kUnmap, 2);
  EXPECT_ERROR(Unmap(0, 0x400000), kInternal, "INJECTED_FAULT");
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(Dma(0x100000).paddr, 0x100000u);
}

TEST_P(RegistryMappingTest, FreeingADomainWithMappingsReturnsItsPageTable) {
  const uint64_t pages_before = hardware_->Stats().page_table_pages;
  ASSERT_OK_AND_ASSIGN(DomainInfo other,
                       registry_->AllocDomain("u0", DomainType::kUnmanaged, kOwner));
  ASSERT_TRUE(registry_->Map(other.id, 0, 0, 0x10000, kRW, kOwner).ok());
  ASSERT_TRUE(registry_->FreeDomain(other.id, kOwner).ok());
  EXPECT_EQ(hardware_->Stats().page_table_pages, pages_before);
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(RegistryMappingTest);
INSTANTIATE_TEST_SUITE_P(Backends, RegistryMappingTest, ::testing::ValuesIn(BackendsUnderTest()));

}  // namespace
}  // namespace test
}  // namespace iommud

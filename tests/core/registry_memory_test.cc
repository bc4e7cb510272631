// docs/semantics.md "Memory regions": RegisterMemory/UnregisterMemory/MapRegion, ownership,
// the mapped-byte accounting across every path that removes mappings, and the pinned limit.
#include <memory>
#include <string>
#include <vector>

#include "core/memory_regions.h"
#include "core/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/testing/registry_fixture.h"

namespace iommud {
namespace test {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::IsEmpty;

constexpr uint32_t kRW = kProtRead | kProtWrite;

class HeapMemory : public ProcessMemory {
 public:
  explicit HeapMemory(uint64_t size) : bytes_(size) {}
  void* data() const override { return const_cast<char*>(bytes_.data()); }
  uint64_t size() const override { return bytes_.size(); }

 private:
  std::vector<char> bytes_;
};

class RegistryMemoryTest : public RegistryTest {
 protected:
  void SetUp() override {
    RegistryTest::SetUp();
    Probe("dev", 0x100);
    domain_ = ClaimAndAttach("dev");
  }
  MemoryRegionInfo Register(uint64_t size, const std::string& owner = kOwner,
                            bool process_memory = false) {
    absl::StatusOr<MemoryRegionInfo> region = registry_->RegisterMemory(
        owner, size, process_memory ? std::make_unique<HeapMemory>(size) : nullptr);
    EXPECT_TRUE(region.ok()) << region.status();
    return region.ok() ? *region : MemoryRegionInfo{};
  }
  uint64_t MappedBytes(uint64_t region) {
    absl::StatusOr<MemoryRegionInfo> info = registry_->GetMemoryRegion(region);
    EXPECT_TRUE(info.ok()) << info.status();
    return info.ok() ? info->mapped_bytes : ~uint64_t{0};
  }
  Translation Dma(uint64_t iova) {
    absl::StatusOr<Translation> translation = registry_->Translate("dev", iova, kProtRead);
    EXPECT_TRUE(translation.ok()) << translation.status();
    return translation.ok() ? *translation : Translation{};
  }
  DomainId domain_ = 0;
};

TEST_P(RegistryMemoryTest, ARegionRangeMapsAtItsRegionSpaceAddress) {
  const MemoryRegionInfo region = Register(4 * kPage2M);
  ASSERT_OK_AND_ASSIGN(Mapping mapping, registry_->MapRegion(domain_, 0x400000, region.id,
                                                             kPage2M, kPage2M, kRW, kOwner));
  EXPECT_EQ(mapping.paddr, region.base + kPage2M);
  EXPECT_EQ(Dma(0x400123).paddr, region.base + kPage2M + 0x123);
  EXPECT_EQ(MappedBytes(region.id), kPage2M);
  // The backend used a 2M leaf: the region's base is 1G aligned.
  ASSERT_OK_AND_ASSIGN(std::vector<Mapping> leaves, hardware_->ReadMappings(domain_));
  EXPECT_THAT(leaves, ElementsAre(Field(&Mapping::size, kPage2M)));
  EXPECT_THAT(registry_->ListMemoryRegions(),
              ElementsAre(Field(&MemoryRegionInfo::mapped_bytes, kPage2M)));
}

TEST_P(RegistryMemoryTest, MapRegionRefusalsChangeNothing) {
  const MemoryRegionInfo region = Register(kPage2M);
  const MemoryRegionInfo others = Register(kPage2M, kOther);
  ASSERT_OK(registry_->MapRegion(domain_, 0x100000, region.id, 0, 0x10000, kRW, kOwner));
  const std::string before = Snapshot();
  EXPECT_ERROR(registry_->MapRegion(domain_, 0x400000, 99, 0, kPage4K, kRW, kOwner), kNotFound,
               "REGION_NOT_FOUND");
  // Nobody maps another principal's memory, not even into their own domain.
  EXPECT_ERROR(registry_->MapRegion(domain_, 0x400000, others.id, 0, kPage4K, kRW, kOwner),
               kPermissionDenied, "NOT_OWNER");
  EXPECT_ERROR(registry_->MapRegion(domain_, 0x400000, region.id, 0x800, kPage4K, kRW, kOwner),
               kInvalidArgument, "UNALIGNED");
  EXPECT_ERROR(registry_->MapRegion(domain_, 0x400000, region.id, 0, 0, kRW, kOwner),
               kInvalidArgument, "INVALID_SIZE");
  EXPECT_ERROR(registry_->MapRegion(domain_, 0x400000, region.id, kPage2M - kPage4K,
                                    2 * kPage4K, kRW, kOwner),
               kOutOfRange, "REGION_RANGE_OUT_OF_BOUNDS");
  // The Map checks after the region's: a failing one gives the charge back.
  EXPECT_ERROR(registry_->MapRegion(domain_, 0x108000, region.id, 0, kPage4K, kRW, kOwner),
               kAlreadyExists, "MAPPING_EXISTS");
  EXPECT_ERROR(registry_->MapRegion(domain_, 0x400800, region.id, 0, kPage4K, kRW, kOwner),
               kInvalidArgument, "UNALIGNED");
  EXPECT_ERROR(registry_->MapRegion(domain_, 0x400000, region.id, 0, kPage4K, 0, kOwner),
               kInvalidArgument, "INVALID_PROT");
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(MappedBytes(region.id), 0x10000u);
  EXPECT_EQ(MappedBytes(others.id), 0u);
}

TEST_P(RegistryMemoryTest, ABackendFailureChargesNothing) {
  const MemoryRegionInfo region = Register(kPage2M);
  const std::string before = Snapshot();
  backend_->FailNth(FailingBackend::Op::kMap, 1);
  EXPECT_FALSE(
      registry_->MapRegion(domain_, 0x400000, region.id, 0, kPage4K, kRW, kOwner).ok());
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(MappedBytes(region.id), 0u);
  EXPECT_OK(registry_->UnregisterMemory(region.id, kOwner).status());
}

TEST_P(RegistryMemoryTest, TheDomainOwnerMustOwnTheRegionToo) {
  // kOther owns the region but not the domain: the Map path refuses, and nothing stays charged.
  const MemoryRegionInfo region = Register(kPage2M, kOther);
  EXPECT_ERROR(registry_->MapRegion(domain_, 0x400000, region.id, 0, kPage4K, kRW, kOther),
               kPermissionDenied, "NOT_OWNER");
  EXPECT_EQ(MappedBytes(region.id), 0u);
  EXPECT_OK(registry_->UnregisterMemory(region.id, kOther).status());
}

TEST_P(RegistryMemoryTest, RawPaddrsInsideRegionSpaceAreRefused) {
  EXPECT_ERROR(registry_->Map(domain_, 0x400000, kRegionSpaceBase, kPage4K, kRW, kOwner),
               kInvalidArgument, "PADDR_IN_REGION_SPACE");
  EXPECT_ERROR(registry_->Map(domain_, 0x400000, kRegionSpaceBase - kPage4K, 2 * kPage4K, kRW,
                              kOwner),
               kInvalidArgument, "PADDR_IN_REGION_SPACE");
  EXPECT_OK(registry_->Map(domain_, 0x400000, kRegionSpaceBase - kPage4K, kPage4K, kRW, kOwner));
}

TEST_P(RegistryMemoryTest, UnregisterIsRefusedWhileMappedAndByOthers) {
  const MemoryRegionInfo region = Register(kPage2M);
  ASSERT_OK(registry_->MapRegion(domain_, 0x400000, region.id, 0, kPage4K, kRW, kOwner));
  EXPECT_ERROR(registry_->UnregisterMemory(region.id, kOwner), kFailedPrecondition,
               "REGION_IN_USE");
  EXPECT_ERROR(registry_->UnregisterMemory(region.id, kOther), kPermissionDenied, "NOT_OWNER");
  EXPECT_ERROR(registry_->UnregisterMemory(region.id + 1, kOwner), kNotFound, "REGION_NOT_FOUND");
  ASSERT_OK_AND_ASSIGN(uint64_t bytes, registry_->Unmap(domain_, 0x400000, kPage4K, kOwner));
  EXPECT_EQ(bytes, kPage4K);
  EXPECT_EQ(MappedBytes(region.id), 0u);
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo gone, registry_->UnregisterMemory(region.id, kOwner));
  EXPECT_EQ(gone.id, region.id);
  EXPECT_THAT(registry_->ListMemoryRegions(), IsEmpty());
  EXPECT_ERROR(registry_->MapRegion(domain_, 0x400000, region.id, 0, kPage4K, kRW, kOwner),
               kNotFound, "REGION_NOT_FOUND");
}

TEST_P(RegistryMemoryTest, UnmapOfSeveralMappingsDischargesEachItsRegion) {
  const MemoryRegionInfo a = Register(kPage2M);
  const MemoryRegionInfo b = Register(kPage2M);
  ASSERT_OK(registry_->MapRegion(domain_, 0x400000, a.id, 0, 0x3000, kRW, kOwner));
  ASSERT_OK(registry_->MapRegion(domain_, 0x403000, b.id, 0x1000, 0x1000, kRW, kOwner));
  ASSERT_OK(registry_->MapRegion(domain_, 0x404000, a.id, 0x8000, 0x2000, kRW, kOwner));
  ASSERT_OK(registry_->Map(domain_, 0x406000, 0x80000000, 0x1000, kRW, kOwner));  // raw
  EXPECT_EQ(MappedBytes(a.id), 0x5000u);
  EXPECT_EQ(MappedBytes(b.id), 0x1000u);
  ASSERT_OK_AND_ASSIGN(uint64_t bytes, registry_->Unmap(domain_, 0x403000, 0x4000, kOwner));
  EXPECT_EQ(bytes, 0x4000u);
  EXPECT_EQ(MappedBytes(a.id), 0x3000u);
  EXPECT_EQ(MappedBytes(b.id), 0u);
  // A refused Unmap (it would split a mapping) discharges nothing.
  EXPECT_ERROR(registry_->Unmap(domain_, 0x400000, 0x1000, kOwner), kInvalidArgument,
               "UNMAP_SPLIT");
  EXPECT_EQ(MappedBytes(a.id), 0x3000u);
}

TEST_P(RegistryMemoryTest, FreeDomainDischargesItsMappings) {
  const MemoryRegionInfo region = Register(kPage2M);
  ASSERT_OK(registry_->MapRegion(domain_, 0x400000, region.id, 0, 0x4000, kRW, kOwner));
  ASSERT_OK_AND_ASSIGN(DomainInfo second,
                       registry_->AllocDomain("u0", DomainType::kUnmanaged, kOwner));
  // The same range in two domains counts twice.
  ASSERT_OK(registry_->MapRegion(second.id, 0x400000, region.id, 0, 0x4000, kRW, kOwner));
  EXPECT_EQ(MappedBytes(region.id), 0x8000u);
  ASSERT_OK(registry_->FreeDomain(second.id, kOwner));
  EXPECT_EQ(MappedBytes(region.id), 0x4000u);
  // An attached domain cannot be freed: its mappings stay charged.
  EXPECT_ERROR(registry_->FreeDomain(domain_, kOwner), kFailedPrecondition, "DOMAIN_IN_USE");
  EXPECT_EQ(MappedBytes(region.id), 0x4000u);
}

TEST_P(RegistryMemoryTest, ReleaseAndExpiryKeepTheCountUntilTheDomainGoes) {
  const MemoryRegionInfo region = Register(kPage2M);
  ASSERT_OK(registry_->MapRegion(domain_, 0x400000, region.id, 0, 0x4000, kRW, kOwner));
  // Ending the ownership detaches the domain but keeps it and its mappings.
  ASSERT_OK(registry_->ReleaseOwnership(GroupOf("dev").id, kOwner));
  EXPECT_EQ(MappedBytes(region.id), 0x4000u);
  // Hot-unplug of the device: the user's domain survives too.
  ASSERT_OK(registry_->ReleaseDevice("dev"));
  EXPECT_EQ(MappedBytes(region.id), 0x4000u);
  ASSERT_OK(registry_->FreeDomain(domain_, kOwner));
  EXPECT_EQ(MappedBytes(region.id), 0u);
  EXPECT_OK(registry_->UnregisterMemory(region.id, kOwner).status());
}

TEST_P(RegistryMemoryTest, PinnedLimitCountsMappedProcessMemoryPerOwner) {
  Recreate([](RegistryOptions* options) { options->max_pinned_bytes_per_owner = 0x3000; });
  Probe("dev", 0x100);
  domain_ = ClaimAndAttach("dev");
  const MemoryRegionInfo memfd = Register(kPage2M, kOwner, /*process_memory=*/true);
  const MemoryRegionInfo emulated = Register(kPage2M);
  EXPECT_EQ(memfd.kind, MemoryRegionKind::kProcessMemory);
  ASSERT_OK(registry_->MapRegion(domain_, 0x400000, memfd.id, 0, 0x2000, kRW, kOwner));
  const std::string before = Snapshot();
  EXPECT_ERROR(registry_->MapRegion(domain_, 0x500000, memfd.id, 0, 0x2000, kRW, kOwner),
               kResourceExhausted, "PINNED_MEMORY_LIMIT");
  EXPECT_EQ(Snapshot(), before);
  EXPECT_OK(registry_->MapRegion(domain_, 0x600000, emulated.id, 0, 0x10000, kRW, kOwner));
  ASSERT_OK(registry_->Unmap(domain_, 0x400000, 0x2000, kOwner));
  EXPECT_EQ(registry_->memory_regions()->PinnedBytes(kOwner), 0u);
  EXPECT_OK(registry_->MapRegion(domain_, 0x500000, memfd.id, 0, 0x3000, kRW, kOwner));
}

TEST_P(RegistryMemoryTest, RegionsWithoutProcessMemoryAreRefusedWhenTheBackendNeedsIt) {
  Recreate([](RegistryOptions* options) { options->regions_need_process_memory = true; });
  EXPECT_ERROR(registry_->RegisterMemory(kOwner, kPage2M, nullptr), kFailedPrecondition,
               "MEMORY_NEEDS_FD");
  EXPECT_THAT(registry_->ListMemoryRegions(), IsEmpty());
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo region,
                       registry_->RegisterMemory(kOwner, kPage2M,
                                                 std::make_unique<HeapMemory>(kPage2M)));
  EXPECT_EQ(region.kind, MemoryRegionKind::kProcessMemory);
  ASSERT_OK_AND_ASSIGN(void* at, registry_->memory_regions()->Resolve(region.base, kPage4K));
  EXPECT_NE(at, nullptr);
}

TEST_P(RegistryMemoryTest, ASharedTableIsTheOneTheRegistryUses) {
  MemoryRegionTable table;
  Recreate([&](RegistryOptions* options) { options->memory_regions = &table; });
  EXPECT_EQ(registry_->memory_regions(), &table);
  const MemoryRegionInfo region = Register(kPage2M);
  EXPECT_OK(table.Get(region.id).status());
  registry_.reset();  // the table outlives the registry
}

Registry::MapSpec RegionEntry(uint64_t iova, uint64_t region, uint64_t offset, uint64_t size) {
  Registry::MapSpec spec;
  spec.iova = iova;
  spec.size = size;
  spec.prot = kRW;
  spec.region_id = region;
  spec.region_offset = offset;
  return spec;
}

TEST_P(RegistryMemoryTest, MapBatchMapsEveryEntryInOrder) {
  const MemoryRegionInfo region = Register(kPage2M);
  std::vector<Registry::MapSpec> entries;
  for (uint64_t i = 0; i < 8; ++i) {
    entries.push_back(RegionEntry(0x400000 + (7 - i) * kPage4K, region.id, i * kPage4K, kPage4K));
  }
  Registry::MapSpec raw;
  raw.iova = 0x800000;
  raw.size = kPage4K;
  raw.prot = kProtRead;
  raw.paddr = 0x80000000;
  entries.push_back(raw);
  ASSERT_OK_AND_ASSIGN(std::vector<Mapping> mappings,
                       registry_->MapBatch(domain_, entries, kOwner));
  ASSERT_EQ(mappings.size(), entries.size());
  for (uint64_t i = 0; i < 8; ++i) {
    EXPECT_EQ(mappings[i].iova, entries[i].iova);
    EXPECT_EQ(mappings[i].paddr, region.base + i * kPage4K);
    EXPECT_EQ(Dma(entries[i].iova + 0x10).paddr, region.base + i * kPage4K + 0x10);
  }
  EXPECT_EQ(mappings[8].paddr, 0x80000000u);
  EXPECT_EQ(MappedBytes(region.id), 8 * kPage4K);
  // One Unmap over the whole range takes the region's eight back.
  ASSERT_OK_AND_ASSIGN(uint64_t bytes, registry_->Unmap(domain_, 0x400000, 8 * kPage4K, kOwner));
  EXPECT_EQ(bytes, 8 * kPage4K);
  EXPECT_EQ(MappedBytes(region.id), 0u);
}

TEST_P(RegistryMemoryTest, AFailingMapBatchEntryLeavesNothingAndIsNamed) {
  const MemoryRegionInfo region = Register(kPage2M);
  ASSERT_OK(registry_->MapRegion(domain_, 0x500000, region.id, 0, kPage4K, kRW, kOwner));
  const std::string before = Snapshot();
  const std::vector<Registry::MapSpec> ok = {RegionEntry(0x400000, region.id, 0, kPage4K),
                                             RegionEntry(0x401000, region.id, 0x1000, kPage4K)};
  auto with = [&](const Registry::MapSpec& bad) {
    std::vector<Registry::MapSpec> entries = ok;
    entries.push_back(bad);
    return registry_->MapBatch(domain_, entries, kOwner);
  };
  auto expect_entry_two = [&](const absl::StatusOr<std::vector<Mapping>>& result) {
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(GetErrorMetadata(result.status())["entry"], "2") << result.status();
    EXPECT_EQ(Snapshot(), before);
    EXPECT_EQ(MappedBytes(region.id), kPage4K);
  };
  // An existing mapping, an earlier entry of the same call, the region's own checks, the Map checks.
  EXPECT_ERROR(with(RegionEntry(0x500000, region.id, 0, kPage4K)), kAlreadyExists,
               "MAPPING_EXISTS");
  expect_entry_two(with(RegionEntry(0x500000, region.id, 0, kPage4K)));
  EXPECT_ERROR(with(RegionEntry(0x401000, region.id, 0, kPage4K)), kAlreadyExists,
               "MAPPING_EXISTS");
  expect_entry_two(with(RegionEntry(0x401000, region.id, 0, kPage4K)));
  expect_entry_two(with(RegionEntry(0x600000, region.id + 7, 0, kPage4K)));
  expect_entry_two(with(RegionEntry(0x600800, region.id, 0, kPage4K)));
  expect_entry_two(with(RegionEntry(0x600000, region.id, kPage2M, kPage4K)));
  Registry::MapSpec region_space;
  region_space.iova = 0x600000;
  region_space.size = kPage4K;
  region_space.prot = kRW;
  region_space.paddr = kRegionSpaceBase;
  EXPECT_ERROR(with(region_space), kInvalidArgument, "PADDR_IN_REGION_SPACE");
  expect_entry_two(with(region_space));
  // A backend failure at the third entry takes the first two back.
  backend_->FailNth(FailingBackend::Op::kMap, 3);
  expect_entry_two(with(RegionEntry(0x600000, region.id, 0x2000, kPage4K)));
  EXPECT_ERROR(registry_->MapBatch(domain_, {}, kOwner), kInvalidArgument, "EMPTY_BATCH");
  EXPECT_ERROR(registry_->MapBatch(domain_, ok, kOther), kPermissionDenied, "NOT_OWNER");
  EXPECT_EQ(Snapshot(), before);
}

TEST_P(RegistryMemoryTest, MapBatchChargesThePinnedLimitForTheWholeCall) {
  Recreate([](RegistryOptions* options) { options->max_pinned_bytes_per_owner = 0x3000; });
  Probe("dev", 0x100);
  domain_ = ClaimAndAttach("dev");
  const MemoryRegionInfo memfd = Register(kPage2M, kOwner, /*process_memory=*/true);
  std::vector<Registry::MapSpec> entries;
  for (uint64_t i = 0; i < 4; ++i) {
    entries.push_back(RegionEntry(0x400000 + i * kPage4K, memfd.id, i * kPage4K, kPage4K));
  }
  const std::string before = Snapshot();
  EXPECT_ERROR(registry_->MapBatch(domain_, entries, kOwner), kResourceExhausted,
               "PINNED_MEMORY_LIMIT");
  EXPECT_EQ(Snapshot(), before);
  EXPECT_EQ(registry_->memory_regions()->PinnedBytes(kOwner), 0u);
  entries.pop_back();
  EXPECT_OK(registry_->MapBatch(domain_, entries, kOwner).status());
  EXPECT_EQ(registry_->memory_regions()->PinnedBytes(kOwner), 0x3000u);
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(RegistryMemoryTest);
INSTANTIATE_TEST_SUITE_P(Backends, RegistryMemoryTest, ::testing::ValuesIn(BackendsUnderTest()));

}  // namespace
}  // namespace test
}  // namespace iommud

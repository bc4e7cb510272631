// The software backend's page tables: page-size choice, all-or-nothing Map, no-split Unmap,
// holes, read-back and page-table page accounting.
#include <cstdint>
#include <memory>
#include <vector>

#include "core/backend/software/software_backend.h"
#include "core/error.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/backend/software/software_test_util.h"

namespace iommud {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr uint32_t kRW = kProtRead | kProtWrite;

class SoftwareMappingTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(UnitCaps()); }
  void Start(const UnitCaps& caps) {
    backend_ = NewBackendWithUnit(caps);
    ASSERT_TRUE(backend_->AllocDomain("u0", 1, DomainType::kUnmanaged).ok());
    ASSERT_TRUE(backend_->AttachRid("u0", 5, 1).ok());
    base_pages_ = backend_->Stats().page_table_pages;
  }
  std::vector<Mapping> Mappings() { return backend_->ReadMappings(1).value(); }
  uint64_t Pages() { return backend_->Stats().page_table_pages; }
  // Translates on RID 5 (domain 1) and returns the paddr, or ~0 on a fault.
  uint64_t PaddrOf(uint64_t iova, uint32_t access = kProtRead) {
    Translation t = backend_->Translate("u0", 5, iova, access);
    return t.fault == FaultReason::kNone ? t.paddr : ~uint64_t{0};
  }

  std::unique_ptr<IommuBackend> backend_;
  uint64_t base_pages_ = 0;
};

TEST_F(SoftwareMappingTest, EveryPageSizeIsOneLeaf) {
  // Table pages a single leaf needs: root + one per level above the leaf.
  const struct {
    uint64_t size;
    uint64_t tables;
  } cases[] = {{kPage4K, 4}, {kPage2M, 3}, {kPage1G, 2}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.size);
    Start(UnitCaps());
    const uint64_t iova = 4 * c.size;
    const uint64_t paddr = 8 * c.size;
    ASSERT_TRUE(backend_->Map(1, iova, paddr, c.size, kProtRead).ok());
    EXPECT_THAT(Mappings(), ElementsAre(Mapping{iova, paddr, c.size, kProtRead}));
    EXPECT_EQ(Pages(), base_pages_ + c.tables);
    EXPECT_EQ(PaddrOf(iova), paddr);
    EXPECT_EQ(PaddrOf(iova + c.size - 1), paddr + c.size - 1);
    EXPECT_EQ(PaddrOf(iova + c.size), ~uint64_t{0});
    EXPECT_EQ(PaddrOf(iova - 1), ~uint64_t{0});
    EXPECT_EQ(backend_->Unmap(1, iova, c.size).value(), c.size);
    EXPECT_EQ(Pages(), base_pages_);
  }
}

TEST_F(SoftwareMappingTest, OneMapMixesPageSizes) {
  // 4K up to a 2M boundary, 2M up to 1G, one 1G block, then 2M and 4K for the tail.
  const uint64_t iova = kPage1G - kPage2M - kPage4K;
  const uint64_t delta = 4 * kPage1G;  // keeps paddr exactly as aligned as iova
  const uint64_t size = kPage4K + kPage2M + kPage1G + kPage2M + kPage4K;
  ASSERT_TRUE(backend_->Map(1, iova, iova + delta, size, kRW).ok());
  std::vector<Mapping> expected = {
      {iova, iova + delta, kPage4K, kRW},
      {kPage1G - kPage2M, kPage1G - kPage2M + delta, kPage2M, kRW},
      {kPage1G, kPage1G + delta, kPage1G, kRW},
      {2 * kPage1G, 2 * kPage1G + delta, kPage2M, kRW},
      {2 * kPage1G + kPage2M, 2 * kPage1G + kPage2M + delta, kPage4K, kRW},
  };
  EXPECT_EQ(Mappings(), expected);
  for (const Mapping& m : expected) {
    EXPECT_EQ(PaddrOf(m.iova + m.size / 2, kProtWrite), m.paddr + m.size / 2);
  }
  EXPECT_EQ(backend_->Unmap(1, iova, size).value(), size);
  EXPECT_THAT(Mappings(), IsEmpty());
  EXPECT_EQ(Pages(), base_pages_);
}

TEST_F(SoftwareMappingTest, ThePhysicalAlignmentLimitsThePageSize) {
  // iova is 1G-aligned but paddr only 2M-aligned: 2M blocks, never a 1G block.
  ASSERT_TRUE(backend_->Map(1, kPage1G, kPage2M, kPage1G, kProtRead).ok());
  std::vector<Mapping> leaves = Mappings();
  ASSERT_THAT(leaves, SizeIs(512));
  for (size_t i = 0; i < leaves.size(); ++i) {
    EXPECT_EQ(leaves[i], (Mapping{kPage1G + i * kPage2M, kPage2M + i * kPage2M, kPage2M,
                                  kProtRead}));
  }
  ASSERT_EQ(backend_->Unmap(1, kPage1G, kPage1G).value(), kPage1G);
  // paddr 2M-aligned but iova only 4K-aligned: 4K pages.
  ASSERT_TRUE(backend_->Map(1, kPage4K, kPage2M, kPage2M, kProtRead).ok());
  leaves = Mappings();
  ASSERT_THAT(leaves, SizeIs(512));
  EXPECT_EQ(leaves.front(), (Mapping{kPage4K, kPage2M, kPage4K, kProtRead}));
  EXPECT_EQ(leaves.back(), (Mapping{kPage2M, 2 * kPage2M - kPage4K, kPage4K, kProtRead}));
  // A size that is not a multiple of 2M: the remainder is mapped with 4K pages.
  ASSERT_EQ(backend_->Unmap(1, 0, 2 * kPage2M).value(), kPage2M);
  ASSERT_TRUE(backend_->Map(1, 0, 0, kPage2M + 3 * kPage4K, kProtRead).ok());
  EXPECT_THAT(Mappings(), ElementsAre(Mapping{0, 0, kPage2M, kProtRead},
                                      Mapping{kPage2M, kPage2M, kPage4K, kProtRead},
                                      Mapping{kPage2M + kPage4K, kPage2M + kPage4K, kPage4K,
                                              kProtRead},
                                      Mapping{kPage2M + 2 * kPage4K, kPage2M + 2 * kPage4K,
                                              kPage4K, kProtRead}));
}

TEST_F(SoftwareMappingTest, OnlyThePageSizesOfTheUnitAreUsed) {
  UnitCaps no_2m;
  no_2m.pgsize_bitmap = kPage4K | kPage1G;
  Start(no_2m);
  ASSERT_TRUE(backend_->Map(1, kPage1G, 0, kPage1G + kPage2M, kProtRead).ok());
  std::vector<Mapping> leaves = Mappings();
  ASSERT_THAT(leaves, SizeIs(1 + 512));
  EXPECT_EQ(leaves[0], (Mapping{kPage1G, 0, kPage1G, kProtRead}));
  for (size_t i = 1; i < leaves.size(); ++i) EXPECT_EQ(leaves[i].size, kPage4K);

  UnitCaps only_4k;
  only_4k.pgsize_bitmap = kPage4K;
  Start(only_4k);
  ASSERT_TRUE(backend_->Map(1, 0, 0, 2 * kPage2M, kProtRead).ok());
  EXPECT_THAT(Mappings(), SizeIs(1024));

  UnitCaps only_1g;
  only_1g.pgsize_bitmap = kPage1G;
  Start(only_1g);
  absl::Status status = backend_->Map(1, 0, 0, kPage2M, kProtRead);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorReason(status), "UNALIGNED");
  // A 1G map followed by a tail no allowed size fits: refused as a whole.
  status = backend_->Map(1, 0, 0, kPage1G + kPage2M, kProtRead);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorReason(status), "UNALIGNED");
  EXPECT_THAT(Mappings(), IsEmpty());
  EXPECT_EQ(Pages(), base_pages_);
}

TEST(SoftwareCapsTest, PageSizesTheFormatLacksAreRefused) {
  std::unique_ptr<IommuBackend> backend = NewSoftwareBackend({}).value();
  for (uint64_t bitmap : {uint64_t{0}, kPage4K | (uint64_t{1} << 13), kPage4K | (uint64_t{1} << 16),
                          kPage4K | (uint64_t{1} << 39)}) {
    SCOPED_TRACE(bitmap);
    UnitCaps caps;
    caps.pgsize_bitmap = bitmap;
    absl::Status status = backend->AddUnit("bad", caps);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(ErrorReason(status), "UNSUPPORTED_CAPS");
    // Nothing was added.
    EXPECT_EQ(backend->AllocDomain("bad", 1, DomainType::kUnmanaged).code(),
              absl::StatusCode::kNotFound);
  }
  ASSERT_TRUE(backend->AddUnit("good", UnitCaps()).ok());
  absl::Status status = backend->AddUnit("good", UnitCaps());
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ErrorReason(status), "UNIT_EXISTS");
}

TEST_F(SoftwareMappingTest, AnOverlapMidwayRollsBackEverything) {
  const Mapping existing{kPage2M + 10 * kPage4K, 0x7000000, kPage4K, kProtRead};
  ASSERT_TRUE(backend_->Map(1, existing.iova, existing.paddr, existing.size, existing.prot).ok());
  const uint64_t pages = Pages();
  // [0, 2M) maps as one block, then [2M, 4M) hits the existing 4K page: all undone.
  absl::Status status = backend_->Map(1, 0, 0, 2 * kPage2M, kRW);
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ErrorReason(status), "MAPPING_EXISTS");
  EXPECT_THAT(Mappings(), ElementsAre(existing));
  EXPECT_EQ(Pages(), pages);
  EXPECT_EQ(PaddrOf(0), ~uint64_t{0});
  // 4K pages ending on the existing one: the first ten are undone.
  status = backend_->Map(1, kPage2M, kPage2M, 11 * kPage4K, kRW);
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(Mappings(), ElementsAre(existing));
  EXPECT_EQ(Pages(), pages);
  // Inside a block, and a block over smaller pages.
  ASSERT_TRUE(backend_->Map(1, kPage1G, kPage1G, kPage1G, kRW).ok());
  EXPECT_EQ(backend_->Map(1, kPage1G + kPage2M, 0, kPage4K, kRW).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(backend_->Map(1, 0, 0, kPage1G, kRW).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(Mappings(), ElementsAre(existing, Mapping{kPage1G, kPage1G, kPage1G, kRW}));
  // Exactly the same mapping again.
  EXPECT_EQ(backend_->Map(1, existing.iova, existing.paddr, existing.size, existing.prot).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(Mappings(), SizeIs(2));
}

TEST_F(SoftwareMappingTest, UnmapThatWouldSplitALeafRemovesNothing) {
  ASSERT_TRUE(backend_->Map(1, 0, 0, kPage2M, kRW).ok());
  ASSERT_TRUE(backend_->Map(1, 2 * kPage2M, 0x40000000, kPage4K, kRW).ok());
  ASSERT_TRUE(backend_->Map(1, kPage1G, kPage1G, kPage1G, kRW).ok());
  const std::vector<Mapping> before = Mappings();
  const uint64_t pages = Pages();
  for (const IovaRange& range : std::vector<IovaRange>{
           {0, kPage4K},                                 // head of the 2M block
           {kPage2M - kPage4K, 2 * kPage2M + kPage4K},   // tail of the block + the 4K page
           {kPage4K, 4 * kPage2M},                       // 4K page inside, block head outside
           {kPage1G + kPage2M, kPage2M},                 // middle of the 1G block
           {kPage2M, kPage1G}}) {                        // ends inside the 1G block
    SCOPED_TRACE(range.start);
    absl::StatusOr<uint64_t> unmapped = backend_->Unmap(1, range.start, range.size);
    EXPECT_EQ(unmapped.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(ErrorReason(unmapped.status()), "UNMAP_SPLIT");
    EXPECT_EQ(Mappings(), before);
    EXPECT_EQ(Pages(), pages);
  }
  EXPECT_EQ(PaddrOf(2 * kPage2M), 0x40000000u);
}

TEST_F(SoftwareMappingTest, UnmapSkipsHolesAndReturnsTheMappedBytes) {
  ASSERT_TRUE(backend_->Map(1, 0, 0, kPage4K, kRW).ok());
  ASSERT_TRUE(backend_->Map(1, kPage2M, kPage2M, kPage2M, kRW).ok());
  ASSERT_TRUE(backend_->Map(1, 8 * kPage2M, 0, 3 * kPage4K, kRW).ok());
  ASSERT_TRUE(backend_->Map(1, kPage1G, 0, kPage4K, kRW).ok());
  EXPECT_EQ(backend_->Unmap(1, 0, 16 * kPage2M).value(), kPage4K + kPage2M + 3 * kPage4K);
  EXPECT_THAT(Mappings(), ElementsAre(Mapping{kPage1G, 0, kPage4K, kRW}));
  EXPECT_EQ(backend_->Unmap(1, 0, 16 * kPage2M).value(), 0u);  // nothing left there
  EXPECT_EQ(backend_->Unmap(1, kPage1G + kPage4K, kPage4K).value(), 0u);
  EXPECT_EQ(backend_->Unmap(1, kPage1G, kPage4K).value(), kPage4K);
  EXPECT_EQ(Pages(), base_pages_);
}

TEST_F(SoftwareMappingTest, EveryPageTablePageComesBack) {
  // Scattered mappings that need tables under many different upper-level entries.
  std::vector<IovaRange> ranges;
  for (uint64_t i = 0; i < 64; ++i) {
    const uint64_t iova = i * (uint64_t{1} << 39) / 8 + i * kPage1G + (i % 3) * kPage2M;
    const uint64_t size = (i % 4 == 0) ? kPage1G : (i % 4 == 1) ? kPage2M : (i + 1) * kPage4K;
    ASSERT_TRUE(backend_->Map(1, iova, iova, size, kRW).ok()) << i;
    ranges.push_back({iova, size});
  }
  EXPECT_GT(Pages(), base_pages_ + 64);
  // Unmap in an order unrelated to the map order.
  uint64_t bytes = 0;
  for (size_t k = 0; k < ranges.size(); ++k) {
    const IovaRange& r = ranges[(k * 37) % ranges.size()];
    absl::StatusOr<uint64_t> unmapped = backend_->Unmap(1, r.start, r.size);
    ASSERT_TRUE(unmapped.ok());
    EXPECT_EQ(*unmapped, r.size);
    bytes += *unmapped;
  }
  EXPECT_GT(bytes, 0u);
  EXPECT_THAT(Mappings(), IsEmpty());
  EXPECT_EQ(Pages(), base_pages_);
}

TEST_F(SoftwareMappingTest, FreeDomainReturnsItsPages) {
  ASSERT_TRUE(backend_->AllocDomain("u0", 2, DomainType::kDma).ok());
  ASSERT_TRUE(backend_->Map(2, 0, 0, kPage1G + kPage2M + kPage4K, kRW).ok());
  EXPECT_GT(Pages(), base_pages_);
  ASSERT_TRUE(backend_->FreeDomain(2).ok());
  EXPECT_EQ(Pages(), base_pages_);
  EXPECT_EQ(backend_->Stats().domains, 1u);
}

TEST_F(SoftwareMappingTest, OnlyPagingDomainsMap) {
  ASSERT_TRUE(backend_->AllocDomain("u0", 2, DomainType::kBlocked).ok());
  ASSERT_TRUE(backend_->AllocDomain("u0", 3, DomainType::kIdentity).ok());
  ASSERT_TRUE(backend_->AllocDomain("u0", 4, DomainType::kDmaFq).ok());
  for (DomainId id : {DomainId{2}, DomainId{3}}) {
    absl::Status status = backend_->Map(id, 0, 0, kPage4K, kRW);
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(ErrorReason(status), "DOMAIN_NOT_PAGING");
    EXPECT_EQ(backend_->Unmap(id, 0, kPage4K).status().code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(backend_->ReadMappings(id).value(), IsEmpty());
  }
  EXPECT_TRUE(backend_->Map(4, 0, 0, kPage4K, kRW).ok());
  for (absl::Status status :
       {backend_->Map(9, 0, 0, kPage4K, kRW), backend_->Unmap(9, 0, kPage4K).status(),
        backend_->InvalidateIotlb(9, 0, 0), backend_->ReadMappings(9).status(),
        backend_->FreeDomain(9)}) {
    EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(ErrorReason(status), "DOMAIN_NOT_FOUND");
  }
  EXPECT_EQ(backend_->Stats().domains, 4u);
}

}  // namespace
}  // namespace iommud

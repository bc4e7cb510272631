// The backend conformance suite: what every IommuBackend must do, run against every backend that
// BackendsUnderTest() returns (software, emulated). The contract is core/backend/iommu_backend.h.
#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/backend/backend_factory.h"
#include "core/backend/iommu_backend.h"
#include "core/error.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/testing/backends_under_test.h"

namespace iommud {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr uint32_t kRW = kProtRead | kProtWrite;

class BackendConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<IommuBackend>> backend = CreateBackend(GetParam());
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(*backend);
    UnitCaps caps;
    caps.max_rids = 4096;
    ASSERT_TRUE(backend_->AddUnit("u0", caps).ok());
    ASSERT_TRUE(backend_->AddUnit("u1", caps).ok());
    ASSERT_TRUE(backend_->AllocDomain("u0", kPaging, DomainType::kUnmanaged).ok());
    ASSERT_TRUE(backend_->AttachRid("u0", kRid, kPaging).ok());
    pages_at_start_ = backend_->Stats().page_table_pages;
  }

  Translation Dma(uint64_t iova, uint32_t access = kProtRead, Rid rid = kRid) {
    return backend_->Translate("u0", rid, iova, access);
  }
  std::vector<uint64_t> LeafSizes(DomainId domain = kPaging) {
    std::vector<uint64_t> sizes;
    const std::vector<Mapping> leaves = backend_->ReadMappings(domain).value();
    for (const Mapping& leaf : leaves) sizes.push_back(leaf.size);
    return sizes;
  }

  static constexpr DomainId kPaging = 100;
  static constexpr Rid kRid = 0x10;
  std::unique_ptr<IommuBackend> backend_;
  uint64_t pages_at_start_ = 0;
};

TEST_P(BackendConformanceTest, RidsPointWhereTheyAreProgrammed) {
  ASSERT_TRUE(backend_->AllocDomain("u0", 101, DomainType::kBlocked).ok());
  ASSERT_TRUE(backend_->AttachRid("u0", 0x20, 101).ok());
  EXPECT_EQ(backend_->ReadRid("u0", kRid)->domain, kPaging);
  EXPECT_EQ(backend_->ReadRid("u0", 0x20)->domain, 101u);
  EXPECT_EQ(backend_->ReadRid("u0", 0x30)->domain, 0u);
  {
    absl::StatusOr<std::vector<RidEntry>> rids = backend_->ReadRids("u0");
    ASSERT_TRUE(rids.ok());
    ASSERT_THAT(*rids, SizeIs(2));
    EXPECT_EQ((*rids)[0].rid, kRid);
    EXPECT_EQ((*rids)[1].rid, 0x20u);
  }
  // Re-pointing a RID takes effect for the next DMA.
  ASSERT_TRUE(backend_->AttachRid("u0", kRid, 101).ok());
  EXPECT_EQ(Dma(0).fault, FaultReason::kBlocked);
  ASSERT_TRUE(backend_->ReleaseRid("u0", kRid).ok());
  EXPECT_EQ(backend_->ReadRid("u0", kRid)->domain, 0u);
  EXPECT_EQ(Dma(0).fault, FaultReason::kUnknownRid);
  EXPECT_TRUE(backend_->ReleaseRid("u0", kRid).ok());  // releasing an empty entry is fine
  EXPECT_TRUE(backend_->ReadRids("u1").value().empty());
}

TEST_P(BackendConformanceTest, ErrorsAreRefusedAndChangeNothing) {
  UnitCaps same;
  same.max_rids = 4096;
  EXPECT_EQ(backend_->AddUnit("u0", same).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ErrorReason(backend_->AddUnit("u0", same)), "UNIT_EXISTS");
  EXPECT_EQ(ErrorReason(backend_->AddUnit("u0", UnitCaps())), "UNIT_CAPS_MISMATCH");
  EXPECT_EQ(backend_->AllocDomain("nope", 200, DomainType::kUnmanaged).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(backend_->AllocDomain("u0", kPaging, DomainType::kUnmanaged).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(backend_->AttachRid("nope", 1, kPaging).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(backend_->AttachRid("u0", 1, 999).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(backend_->AttachRid("u0", 4096, kPaging).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(backend_->AttachRid("u1", 1, kPaging).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(backend_->FreeDomain(kPaging).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(backend_->FreeDomain(999).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(backend_->Map(999, 0, 0, kPage4K, kRW).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(backend_->AllocDomain("u0", 101, DomainType::kIdentity).ok());
  EXPECT_EQ(backend_->Map(101, 0, 0, kPage4K, kRW).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(backend_->ReadRid("u0", kRid)->domain, kPaging);
  EXPECT_EQ(backend_->ReadDomains(), (std::vector<DomainId>{kPaging, 101}));
  UnitCaps odd;
  odd.pgsize_bitmap = kPage4K | (uint64_t{1} << 16);  // 64K: not in a 4K-granule format
  EXPECT_EQ(backend_->AddUnit("u9", odd).code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(BackendConformanceTest, EveryPageSizeMapsAndTranslates) {
  ASSERT_TRUE(backend_->Map(kPaging, 0x1000, 0x5000, kPage4K, kRW).ok());
  ASSERT_TRUE(backend_->Map(kPaging, kPage2M, 4 * kPage2M, kPage2M, kRW).ok());
  ASSERT_TRUE(backend_->Map(kPaging, kPage1G, 3 * kPage1G, kPage1G, kProtRead).ok());
  EXPECT_THAT(LeafSizes(), ElementsAre(kPage4K, kPage2M, kPage1G));
  EXPECT_EQ(Dma(0x1234).paddr, 0x5234u);
  EXPECT_EQ(Dma(kPage2M + 0x1234).paddr, 4 * kPage2M + 0x1234);
  EXPECT_EQ(Dma(kPage1G + 0x12345678).paddr, 3 * kPage1G + 0x12345678);
  EXPECT_EQ(Dma(kPage1G, kProtWrite).fault, FaultReason::kPermission);
  EXPECT_EQ(Dma(0x3000).fault, FaultReason::kNoMapping);
}

TEST_P(BackendConformanceTest, TheLargestPagesThatFitAreUsed) {
  // iova 2M-4K .. 4M+4K: 4K, then 2M, then 4K.
  ASSERT_TRUE(backend_->Map(kPaging, kPage2M - kPage4K, kPage1G + kPage2M - kPage4K,
                            kPage2M + 2 * kPage4K, kRW)
                  .ok());
  EXPECT_THAT(LeafSizes(), ElementsAre(kPage4K, kPage2M, kPage4K));
  // 2M-aligned iova but a paddr only 4K-aligned: 4K pages only.
  ASSERT_TRUE(backend_->Map(kPaging, 8 * kPage2M, 0x1000, kPage2M, kRW).ok());
  EXPECT_THAT(LeafSizes(), SizeIs(3 + 512));
}

TEST_P(BackendConformanceTest, AnOverlappingMapRollsBackWhatItMapped) {
  ASSERT_TRUE(backend_->Map(kPaging, 0x10000, 0x10000, kPage4K, kRW).ok());
  const std::vector<Mapping> before = backend_->ReadMappings(kPaging).value();
  const uint64_t pages = backend_->Stats().page_table_pages;
  // Maps 0x0..0xf000 fine, then hits 0x10000.
  EXPECT_EQ(backend_->Map(kPaging, 0, 0x900000, 0x20000, kRW).code(),
            absl::StatusCode::kAlreadyExists);
  const std::vector<Mapping> after = backend_->ReadMappings(kPaging).value();
  ASSERT_EQ(after.size(), before.size());
  EXPECT_EQ(after[0].iova, 0x10000u);
  EXPECT_EQ(backend_->Stats().page_table_pages, pages);
  EXPECT_EQ(Dma(0).fault, FaultReason::kNoMapping);
}

TEST_P(BackendConformanceTest, UnmapNeverSplitsALeafAndSkipsHoles) {
  ASSERT_TRUE(backend_->Map(kPaging, kPage2M, kPage2M, kPage2M, kRW).ok());
  ASSERT_TRUE(backend_->Map(kPaging, 8 * kPage2M, 0, kPage4K, kRW).ok());
  EXPECT_EQ(backend_->Unmap(kPaging, kPage2M, kPage4K).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(backend_->Unmap(kPaging, kPage2M + kPage4K, kPage2M).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(LeafSizes(), ElementsAre(kPage2M, kPage4K));
  EXPECT_EQ(backend_->Unmap(kPaging, 0x100000000, kPage2M).value(), 0u);  // a hole
  EXPECT_EQ(backend_->Unmap(kPaging, 0, 16 * kPage2M).value(), kPage2M + kPage4K);
  EXPECT_THAT(LeafSizes(), IsEmpty());
  EXPECT_EQ(backend_->Stats().page_table_pages, pages_at_start_);
}

TEST_P(BackendConformanceTest, UnmapWithoutInvalidationLeavesStaleTranslations) {
  ASSERT_TRUE(backend_->Map(kPaging, 0x40000, 0x80000, kPage4K, kRW).ok());
  EXPECT_EQ(Dma(0x40010).paddr, 0x80010u);  // walked and cached
  ASSERT_EQ(backend_->Unmap(kPaging, 0x40000, kPage4K).value(), kPage4K);
  // As on real hardware: the IOTLB still has it until it is invalidated.
  const Translation stale = Dma(0x40010);
  EXPECT_EQ(stale.fault, FaultReason::kNone);
  EXPECT_EQ(stale.paddr, 0x80010u);
  ASSERT_TRUE(backend_->InvalidateIotlb(kPaging, 0x40000, kPage4K).ok());
  EXPECT_EQ(Dma(0x40010).fault, FaultReason::kNoMapping);
  // A whole-domain invalidation (size 0) too.
  ASSERT_TRUE(backend_->Map(kPaging, 0x40000, 0x90000, kPage4K, kRW).ok());
  EXPECT_EQ(Dma(0x40010).paddr, 0x90010u);
  ASSERT_TRUE(backend_->Unmap(kPaging, 0x40000, kPage4K).ok());
  ASSERT_TRUE(backend_->InvalidateIotlb(kPaging, 0, 0).ok());
  EXPECT_EQ(Dma(0x40010).fault, FaultReason::kNoMapping);
}

TEST_P(BackendConformanceTest, BlockedAndIdentityDomains) {
  ASSERT_TRUE(backend_->AllocDomain("u0", 101, DomainType::kBlocked).ok());
  ASSERT_TRUE(backend_->AllocDomain("u0", 102, DomainType::kIdentity).ok());
  ASSERT_TRUE(backend_->AttachRid("u0", 0x21, 101).ok());
  ASSERT_TRUE(backend_->AttachRid("u0", 0x22, 102).ok());
  EXPECT_EQ(Dma(0x1234, kProtRead, 0x21).fault, FaultReason::kBlocked);
  const Translation bypass = Dma(0xabc000, kRW, 0x22);
  EXPECT_EQ(bypass.fault, FaultReason::kNone);
  EXPECT_EQ(bypass.paddr, 0xabc000u);
  EXPECT_EQ(bypass.domain, 102u);
  EXPECT_THAT(backend_->ReadMappings(101).value(), IsEmpty());
}

TEST_P(BackendConformanceTest, FaultsAreQueuedInOrder) {
  (void)backend_->DrainFaults();
  Dma(0x1000);
  Dma(0x2000, kProtWrite, 0x77);
  const std::vector<FaultRecord> faults = backend_->DrainFaults();
  ASSERT_THAT(faults, SizeIs(2));
  EXPECT_EQ(faults[0].reason, FaultReason::kNoMapping);
  EXPECT_EQ(faults[0].iova, 0x1000u);
  EXPECT_EQ(faults[0].rid, kRid);
  EXPECT_EQ(faults[0].unit, "u0");
  EXPECT_EQ(faults[1].reason, FaultReason::kUnknownRid);
  EXPECT_EQ(faults[1].access, static_cast<uint32_t>(kProtWrite));
  EXPECT_THAT(backend_->DrainFaults(), IsEmpty());
}

TEST_P(BackendConformanceTest, ReadBackAgreesWithManyRidsAndDomains) {
  constexpr int kDomains = 64;
  constexpr int kRids = 1024;
  for (int d = 0; d < kDomains; ++d) {
    ASSERT_TRUE(backend_->AllocDomain("u1", 1000 + d, DomainType::kUnmanaged).ok());
    ASSERT_TRUE(backend_->Map(1000 + d, d * kPage2M, d * kPage4K, kPage4K, kRW).ok());
  }
  for (int r = 0; r < kRids; ++r) ASSERT_TRUE(backend_->AttachRid("u1", r, 1000 + r % kDomains).ok());
  const std::vector<RidEntry> rids = backend_->ReadRids("u1").value();
  ASSERT_THAT(rids, SizeIs(kRids));
  for (int r = 0; r < kRids; ++r) {
    EXPECT_EQ(rids[r].rid, static_cast<Rid>(r));
    EXPECT_EQ(rids[r].domain, static_cast<DomainId>(1000 + r % kDomains));
    const Translation dma = backend_->Translate("u1", r, (r % kDomains) * kPage2M + 8, kProtRead);
    EXPECT_EQ(dma.paddr, (r % kDomains) * kPage4K + 8);
  }
  EXPECT_THAT(backend_->ReadDomains(), SizeIs(kDomains + 1));
  for (int r = 0; r < kRids; ++r) ASSERT_TRUE(backend_->ReleaseRid("u1", r).ok());
  for (int d = 0; d < kDomains; ++d) ASSERT_TRUE(backend_->FreeDomain(1000 + d).ok());
  EXPECT_EQ(backend_->Stats().page_table_pages, pages_at_start_);
  EXPECT_EQ(backend_->Stats().domains, 1u);
}

TEST_P(BackendConformanceTest, TranslationRunsConcurrentlyWithMapAndUnmapOfOtherDomains) {
  constexpr int kThreads = 4;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_TRUE(backend_->AllocDomain("u1", 500 + t, DomainType::kUnmanaged).ok());
    ASSERT_TRUE(backend_->AttachRid("u1", 0x100 + t, 500 + t).ok());
  }
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const DomainId domain = 500 + t;
      for (int i = 0; i < 300; ++i) {
        const uint64_t iova = (i % 16) * kPage2M;
        if (!backend_->Map(domain, iova, iova + t * kPage1G, kPage2M, kRW).ok()) ++wrong;
        const Translation dma = backend_->Translate("u1", 0x100 + t, iova + 64, kProtRead);
        if (dma.fault != FaultReason::kNone || dma.paddr != iova + t * kPage1G + 64) ++wrong;
        if (backend_->Unmap(domain, iova, kPage2M).value_or(0) != kPage2M) ++wrong;
        if (!backend_->InvalidateIotlb(domain, iova, kPage2M).ok()) ++wrong;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(wrong.load(), 0);
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(BackendConformanceTest);
INSTANTIATE_TEST_SUITE_P(Backends, BackendConformanceTest,
                         ::testing::ValuesIn(test::BackendsUnderTest()));

}  // namespace
}  // namespace iommud

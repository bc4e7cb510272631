// core/memory_regions.h: placement of regions in the region address space, charges, the pinned
// limit and the resolver.
#include "core/memory_regions.h"

#include <atomic>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;

// Process memory on the heap (the fd channel's mmap in production).
class HeapMemory : public ProcessMemory {
 public:
  explicit HeapMemory(uint64_t size) : bytes_(size) {}
  void* data() const override { return const_cast<char*>(bytes_.data()); }
  uint64_t size() const override { return bytes_.size(); }

 private:
  std::vector<char> bytes_;
};

TEST(MemoryRegionTableTest, RegionsGetIdsFromOneAndAlignedBasesInTheWindow) {
  MemoryRegionTable table;
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo a, table.Add("uid:1", kPage2M, nullptr));
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo b, table.Add("uid:1", kPage1G + kPage4K, nullptr));
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo c, table.Add("uid:2", kPage4K, nullptr));
  EXPECT_EQ(a.id, 1u);
  EXPECT_EQ(b.id, 2u);
  EXPECT_EQ(c.id, 3u);
  EXPECT_EQ(a.base, kRegionSpaceBase);
  EXPECT_EQ(b.base, kRegionSpaceBase + kPage1G);
  EXPECT_EQ(c.base, kRegionSpaceBase + 3 * kPage1G);  // b takes two 1G slots
  EXPECT_EQ(a.kind, MemoryRegionKind::kEmulated);
  EXPECT_EQ(a.owner, "uid:1");
  EXPECT_THAT(table.List(), ElementsAre(Field(&MemoryRegionInfo::id, 1u),
                                        Field(&MemoryRegionInfo::id, 2u),
                                        Field(&MemoryRegionInfo::id, 3u)));
}

TEST(MemoryRegionTableTest, IdsAreNeverReusedButFreedSpaceIs) {
  MemoryRegionTable table;
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo a, table.Add("o", kPage4K, nullptr));
  ASSERT_OK(table.Remove(a.id, "o").status());
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo b, table.Add("o", kPage4K, nullptr));
  EXPECT_EQ(b.id, 2u);
  EXPECT_EQ(b.base, a.base);
  EXPECT_ERROR(table.Get(a.id), kNotFound, "REGION_NOT_FOUND");
}

TEST(MemoryRegionTableTest, BadSizesAndOwnersAreRefused) {
  MemoryRegionTable table;
  EXPECT_ERROR(table.Add("o", 0, nullptr), kInvalidArgument, "INVALID_REGION_SIZE");
  EXPECT_ERROR(table.Add("o", 0x1800, nullptr), kInvalidArgument, "INVALID_REGION_SIZE");
  EXPECT_ERROR(table.Add("o", kMaxRegionSize + kPage4K, nullptr), kInvalidArgument,
               "INVALID_REGION_SIZE");
  EXPECT_ERROR(table.Add("o", kPage2M, std::make_unique<HeapMemory>(kPage4K)), kInvalidArgument,
               "INVALID_REGION_SIZE");
  EXPECT_ERROR(table.Add("", kPage4K, nullptr), kInvalidArgument, "MISSING_OWNER");
  EXPECT_TRUE(table.List().empty());
  EXPECT_OK(table.Add("o", kMaxRegionSize, nullptr).status());
}

TEST(MemoryRegionTableTest, TheWindowRunsOut) {
  MemoryRegionTable table;
  const uint64_t regions = (kRegionSpaceEnd - kRegionSpaceBase) / kMaxRegionSize;
  for (uint64_t i = 0; i < regions; ++i) {
    ASSERT_OK(table.Add("o", kMaxRegionSize, nullptr).status());
  }
  EXPECT_ERROR(table.Add("o", kPage4K, nullptr), kResourceExhausted, "REGION_SPACE_EXHAUSTED");
  ASSERT_OK(table.Remove(7, "o").status());
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo fits, table.Add("o", kPage4K, nullptr));
  EXPECT_EQ(fits.base, kRegionSpaceBase + 6 * kMaxRegionSize);
}

TEST(MemoryRegionTableTest, ChargeChecksTheRangeAndOwnerAndReturnsTheAddress) {
  MemoryRegionTable table;
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo region, table.Add("o", kPage2M, nullptr));
  EXPECT_ERROR(table.Charge(9, 0, kPage4K, "o", 0), kNotFound, "REGION_NOT_FOUND");
  EXPECT_ERROR(table.Charge(region.id, 0, kPage4K, "p", 0), kPermissionDenied, "NOT_OWNER");
  EXPECT_ERROR(table.Charge(region.id, 0, 0, "o", 0), kInvalidArgument, "INVALID_SIZE");
  EXPECT_ERROR(table.Charge(region.id, 0x800, kPage4K, "o", 0), kInvalidArgument, "UNALIGNED");
  EXPECT_ERROR(table.Charge(region.id, 0, 0x800, "o", 0), kInvalidArgument, "UNALIGNED");
  EXPECT_ERROR(table.Charge(region.id, kPage2M, kPage4K, "o", 0), kOutOfRange,
               "REGION_RANGE_OUT_OF_BOUNDS");
  EXPECT_ERROR(table.Charge(region.id, kPage2M - kPage4K, 2 * kPage4K, "o", 0), kOutOfRange,
               "REGION_RANGE_OUT_OF_BOUNDS");
  // offset + size wraps around 2^64: still outside, not a small range.
  EXPECT_ERROR(table.Charge(region.id, ~uint64_t{0} - 0xfff, 2 * kPage4K, "o", 0), kOutOfRange,
               "REGION_RANGE_OUT_OF_BOUNDS");
  EXPECT_EQ(table.Get(region.id)->mapped_bytes, 0u);
  ASSERT_OK_AND_ASSIGN(uint64_t paddr, table.Charge(region.id, 0x3000, 0x2000, "o", 0));
  EXPECT_EQ(paddr, region.base + 0x3000);
  EXPECT_EQ(table.Get(region.id)->mapped_bytes, 0x2000u);
  EXPECT_ERROR(table.Remove(region.id, "o"), kFailedPrecondition, "REGION_IN_USE");
  EXPECT_ERROR(table.Remove(region.id, "p"), kPermissionDenied, "NOT_OWNER");
  table.Discharge(paddr, 0x2000);
  EXPECT_EQ(table.Get(region.id)->mapped_bytes, 0u);
  EXPECT_OK(table.Remove(region.id, "o").status());
  EXPECT_ERROR(table.Remove(region.id, "o"), kNotFound, "REGION_NOT_FOUND");
}

TEST(MemoryRegionTableTest, DischargeOutsideAnyRegionIsIgnored) {
  MemoryRegionTable table;
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo region, table.Add("o", kPage2M, nullptr));
  ASSERT_OK(table.Charge(region.id, 0, kPage4K, "o", 0).status());
  table.Discharge(0x80000000, kPage4K);
  table.Discharge(region.base + kPage1G, kPage4K);
  EXPECT_EQ(table.Get(region.id)->mapped_bytes, kPage4K);
}

TEST(MemoryRegionTableTest, PinnedLimitCountsProcessMemoryPerOwner) {
  MemoryRegionTable table;
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo memfd,
                       table.Add("o", kPage2M, std::make_unique<HeapMemory>(kPage2M)));
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo emulated, table.Add("o", kPage2M, nullptr));
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo other,
                       table.Add("p", kPage2M, std::make_unique<HeapMemory>(kPage2M)));
  EXPECT_EQ(memfd.kind, MemoryRegionKind::kProcessMemory);
  const uint64_t limit = 3 * kPage4K;
  ASSERT_OK(table.Charge(memfd.id, 0, 2 * kPage4K, "o", limit).status());
  EXPECT_ERROR(table.Charge(memfd.id, 0, 2 * kPage4K, "o", limit), kResourceExhausted,
               "PINNED_MEMORY_LIMIT");
  EXPECT_EQ(table.PinnedBytes("o"), 2 * kPage4K);
  // Emulated memory is not pinned; another owner has its own budget.
  EXPECT_OK(table.Charge(emulated.id, 0, kPage2M, "o", limit).status());
  EXPECT_OK(table.Charge(other.id, 0, limit, "p", limit).status());
  ASSERT_OK_AND_ASSIGN(uint64_t paddr, table.Charge(memfd.id, 0x10000, kPage4K, "o", limit));
  EXPECT_EQ(table.PinnedBytes("o"), limit);
  table.Discharge(paddr, kPage4K);
  EXPECT_EQ(table.PinnedBytes("o"), 2 * kPage4K);
  EXPECT_OK(table.Charge(memfd.id, 0, kPage4K, "o", limit).status());
  EXPECT_OK(table.Charge(memfd.id, 0, kPage2M, "o", 0).status());  // 0: no limit
}

TEST(MemoryRegionTableTest, ResolveGivesTheProcessAddressInsideOneBackedRegion) {
  MemoryRegionTable table;
  auto memory = std::make_unique<HeapMemory>(kPage2M);
  char* data = static_cast<char*>(memory->data());
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo backed, table.Add("o", kPage2M, std::move(memory)));
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo emulated, table.Add("o", kPage2M, nullptr));
  ASSERT_OK_AND_ASSIGN(void* at, table.Resolve(backed.base + 0x5000, kPage4K));
  EXPECT_EQ(at, data + 0x5000);
  ASSERT_OK_AND_ASSIGN(at, table.Resolve(backed.base, kPage2M));
  EXPECT_EQ(at, data);
  EXPECT_ERROR(table.Resolve(backed.base + kPage2M - kPage4K, 2 * kPage4K), kNotFound,
               "MEMORY_NOT_REGISTERED");
  EXPECT_ERROR(table.Resolve(emulated.base, kPage4K), kNotFound, "MEMORY_NOT_REGISTERED");
  EXPECT_ERROR(table.Resolve(0x80000000, kPage4K), kNotFound, "MEMORY_NOT_REGISTERED");
  EXPECT_ERROR(table.Resolve(backed.base - kPage4K, kPage4K), kNotFound, "MEMORY_NOT_REGISTERED");
  ASSERT_OK(table.Remove(backed.id, "o").status());
  EXPECT_ERROR(table.Resolve(backed.base, kPage4K), kNotFound, "MEMORY_NOT_REGISTERED");
}

TEST(MemoryRegionTableTest, ReserveBelowKeepsNewRegionsAboveSurvivingMappings) {
  MemoryRegionTable table;
  table.ReserveBelow(kRegionSpaceBase + 5 * kPage1G + kPage4K);
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo region, table.Add("o", kPage4K, nullptr));
  EXPECT_EQ(region.base, kRegionSpaceBase + 6 * kPage1G);
  table.ReserveBelow(kRegionSpaceBase);  // never lowers the floor
  ASSERT_OK_AND_ASSIGN(region, table.Add("o", kPage4K, nullptr));
  EXPECT_EQ(region.base, kRegionSpaceBase + 7 * kPage1G);
}

TEST(MemoryRegionTableTest, OverlapsRegionSpace) {
  EXPECT_FALSE(OverlapsRegionSpace(0x80000000, kPage2M));
  EXPECT_FALSE(OverlapsRegionSpace(kRegionSpaceBase - kPage4K, kPage4K));
  EXPECT_TRUE(OverlapsRegionSpace(kRegionSpaceBase - kPage4K, 2 * kPage4K));
  EXPECT_TRUE(OverlapsRegionSpace(kRegionSpaceEnd - kPage4K, kPage4K));
  EXPECT_FALSE(OverlapsRegionSpace(kRegionSpaceEnd, kPage4K));
  EXPECT_FALSE(OverlapsRegionSpace(~uint64_t{0} - 0xfff, 0x2000));  // wraps above the window
}

TEST(MemoryRegionTableTest, ConcurrentChargesAndRemovalsNeverRemoveAChargedRegion) {
  MemoryRegionTable table;
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo region, table.Add("o", kPage2M, nullptr));
  std::vector<std::thread> threads;
  std::atomic<int> removed{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        if (t == 0) {
          if (table.Remove(region.id, "o").ok()) ++removed;
          continue;
        }
        absl::StatusOr<uint64_t> paddr = table.Charge(region.id, 0, kPage4K, "o", 0);
        if (!paddr.ok()) continue;
        ASSERT_TRUE(table.Get(region.id).ok());  // charged: cannot have gone
        table.Discharge(*paddr, kPage4K);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_LE(removed.load(), 1);
}


TEST(MemoryRegionTableTest, RestoredRegionsKeepIdBaseAndOwnerAndLaterIdsFollow) {
  MemoryRegionTable table;
  MemoryRegionInfo kept;
  kept.id = 5;
  kept.owner = "vm";
  kept.size = 2 * kPage4K;
  kept.base = kRegionSpaceBase + 3 * kRegionAlignment;
  ASSERT_OK(table.Restore(kept, std::make_unique<HeapMemory>(kept.size)));
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo got, table.Get(5));
  EXPECT_EQ(got.base, kept.base);
  EXPECT_EQ(got.owner, "vm");
  EXPECT_EQ(got.kind, MemoryRegionKind::kProcessMemory);
  EXPECT_TRUE(table.Resolve(kept.base + kPage4K, kPage4K).ok());
  // Surviving mappings are charged (whole range inside the region only), and pin the owner.
  EXPECT_TRUE(table.ChargeRestored(kept.base, kPage4K));
  EXPECT_FALSE(table.ChargeRestored(kept.base + kPage4K, 2 * kPage4K));
  EXPECT_FALSE(table.ChargeRestored(kRegionSpaceBase, kPage4K));
  EXPECT_EQ(table.PinnedBytes("vm"), kPage4K);
  EXPECT_ERROR(table.Remove(5, "vm"), kFailedPrecondition, "REGION_IN_USE");
  table.Discharge(kept.base, kPage4K);
  // Its id and range are taken; a bad one is refused.
  EXPECT_ERROR(table.Restore(kept, std::make_unique<HeapMemory>(kept.size)), kAlreadyExists,
               "REGION_EXISTS");
  MemoryRegionInfo overlapping = kept;
  overlapping.id = 6;
  EXPECT_ERROR(table.Restore(overlapping, std::make_unique<HeapMemory>(kept.size)),
               kAlreadyExists, "REGION_EXISTS");
  MemoryRegionInfo unaligned = kept;
  unaligned.id = 7;
  unaligned.base += kPage4K;
  EXPECT_ERROR(table.Restore(unaligned, std::make_unique<HeapMemory>(kept.size)),
               kInvalidArgument, "INVALID_REGION_SIZE");
  MemoryRegionInfo wrong_backing = kept;
  wrong_backing.id = 8;
  wrong_backing.base += kRegionAlignment;
  EXPECT_ERROR(table.Restore(wrong_backing, std::make_unique<HeapMemory>(kPage4K)),
               kInvalidArgument, "INVALID_REGION_SIZE");
  // A new region gets the next id, and a base that does not collide.
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo added,
                       table.Add("vm", kPage4K, std::make_unique<HeapMemory>(kPage4K)));
  EXPECT_EQ(added.id, 6u);
  EXPECT_NE(added.base, kept.base);
  ASSERT_OK(table.Remove(5, "vm"));
}

}  // namespace
}  // namespace iommud

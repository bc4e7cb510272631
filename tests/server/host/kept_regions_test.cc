// RestoreKeptRegions: memory regions a previous process kept in the fd store come back with their
// id, owner and base, over the same file; stored mappings of memory that did not come back are
// deleted from the state store, never shown as in place.
#include "server/host/kept_regions.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "core/store/in_memory_state_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/host/kept_memory.h"
#include "tests/core/host/fake_fd_keeper.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using host::test::FakeFdKeeper;

host::UniqueFd Memfd(uint64_t size) {
  host::UniqueFd fd(::memfd_create("kept", MFD_CLOEXEC));
  EXPECT_TRUE(fd.valid());
  EXPECT_EQ(::ftruncate(fd.get(), static_cast<off_t>(size)), 0);
  return fd;
}

MappingRecord MappingAt(DomainId domain, uint64_t iova, uint64_t paddr, uint64_t size) {
  MappingRecord record;
  record.domain = domain;
  record.mapping = Mapping{iova, paddr, size, kProtRead | kProtWrite};
  return record;
}

TEST(KeptRegionsTest, KeptRegionsComeBackAndMappingsOfLostMemoryAreDeleted) {
  const uint64_t kept_base = kRegionSpaceBase + 2 * kRegionAlignment;
  const uint64_t lost_base = kRegionSpaceBase + 5 * kRegionAlignment;
  host::UniqueFd memfd = Memfd(2 * kPage4K);
  ASSERT_EQ(::pwrite(memfd.get(), "dma!", 4, kPage4K), 4);
  FakeFdKeeper keeper;
  const std::string name = host::MemoryFdName({4, kept_base, 2 * kPage4K, "uid:0/vm"});
  keeper.Hand(name, std::move(memfd));
  keeper.Hand(host::MemoryFdName({6, lost_base, kPage4K, "uid:0/vm"}), host::test::SomeFd());
  keeper.Hand("group-3", host::test::SomeFd());  // not a region: left for the backend

  InMemoryStateStore store;
  StoreBatch batch;
  DomainRecord domain;
  domain.id = 9;
  domain.unit = "dmar0";
  domain.type = DomainType::kUnmanaged;
  batch.put_domains.push_back(domain);
  batch.put_mappings.push_back(MappingAt(9, 0x10000, kept_base + kPage4K, kPage4K));
  batch.put_mappings.push_back(MappingAt(9, 0x20000, lost_base, kPage4K));
  batch.put_mappings.push_back(MappingAt(9, 0x30000, 0x80000000, kPage4K));  // raw paddr
  ASSERT_OK(store.Commit(batch));

  MemoryRegionTable regions;
  ASSERT_OK_AND_ASSIGN(KeptRegionsOutcome outcome, RestoreKeptRegions(&keeper, &regions, &store));
  EXPECT_EQ(outcome.restored, 1u);
  EXPECT_EQ(outcome.dropped_regions, 1u);  // a pipe is no memory file
  EXPECT_EQ(outcome.dropped_mappings, 1u);
  EXPECT_THAT(keeper.Untaken(), ElementsAre("group-3"));

  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo region, regions.Get(4));
  EXPECT_EQ(region.base, kept_base);
  EXPECT_EQ(region.owner, "uid:0/vm");
  EXPECT_EQ(region.mapped_bytes, kPage4K);  // the surviving mapping is charged
  // The same file: what the device wrote before the restart is there.
  ASSERT_OK_AND_ASSIGN(void* bytes, regions.Resolve(kept_base + kPage4K, 4));
  EXPECT_EQ(std::memcmp(bytes, "dma!", 4), 0);
  EXPECT_ERROR(regions.Get(6), kNotFound, "REGION_NOT_FOUND");

  ASSERT_OK_AND_ASSIGN(StoreSnapshot snapshot, store.Load());
  ASSERT_EQ(snapshot.mappings.size(), 2u);
  EXPECT_EQ(snapshot.mappings[0].mapping.iova, 0x10000u);
  EXPECT_EQ(snapshot.mappings[1].mapping.iova, 0x30000u);
  // The unrestorable region's copy is dropped; the restored one stays kept until it goes.
  EXPECT_THAT(keeper.dropped, ElementsAre(host::MemoryFdName({6, lost_base, kPage4K, "uid:0/vm"})));
  regions.Discharge(kept_base + kPage4K, kPage4K);
  ASSERT_OK(regions.Remove(4, "uid:0/vm"));
  EXPECT_EQ(keeper.dropped.back(), name);
}

TEST(KeptMemoryTest, KeptOnceNamedAndDroppedWhenTheMemoryGoes) {
  FakeFdKeeper keeper;
  class Heap : public ProcessMemory {
   public:
    void* data() const override { return nullptr; }
    uint64_t size() const override { return kPage4K; }
  };
  auto handle = std::make_shared<KeptMemoryHandle>(&keeper, Memfd(kPage4K));
  auto memory = std::make_unique<KeptMemory>(std::make_unique<Heap>(), handle);
  EXPECT_THAT(keeper.kept, IsEmpty());  // no name yet
  ASSERT_OK(handle->KeepAs("memory-1-0-1000-o"));
  EXPECT_THAT(keeper.kept, ElementsAre("memory-1-0-1000-o"));
  memory.reset();
  EXPECT_THAT(keeper.dropped, ElementsAre("memory-1-0-1000-o"));
  EXPECT_THAT(keeper.copies, IsEmpty());

  // Gone before it was named (unregistered at once): never kept.
  auto early = std::make_shared<KeptMemoryHandle>(&keeper, Memfd(kPage4K));
  std::make_unique<KeptMemory>(std::make_unique<Heap>(), early).reset();
  ASSERT_OK(early->KeepAs("memory-2-0-1000-o"));
  EXPECT_THAT(keeper.kept, ElementsAre("memory-1-0-1000-o"));
}

}  // namespace
}  // namespace iommud

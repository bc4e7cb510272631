// What is specific to the software backend (the shared contract is in the conformance suite).
#include "core/backend/software/software_backend.h"

#include "core/backend/software/page_table.h"
#include "core/error.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace iommud {
namespace {

using ::testing::SizeIs;

TEST(SoftwareBackendTest, OptionsAreValidated) {
  EXPECT_TRUE(NewSoftwareBackend({}).ok());
  EXPECT_TRUE(NewSoftwareBackend({{"iotlb_entries", "16"}, {"fault_queue", "8"}}).ok());
  for (const BackendOptions& bad : std::vector<BackendOptions>{
           {{"memory_file", "/tmp/x"}}, {{"iotlb_entries", "0"}}, {{"fault_queue", "lots"}}}) {
    absl::StatusOr<std::unique_ptr<IommuBackend>> backend = NewSoftwareBackend(bad);
    EXPECT_EQ(backend.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(ErrorReason(backend.status()), "INVALID_BACKEND_OPTION");
  }
}

TEST(SoftwareBackendTest, CapsBeyondTheFormatAreRefused) {
  std::unique_ptr<IommuBackend> backend = NewSoftwareBackend({}).value();
  UnitCaps wide;
  wide.iova_bits = 57;
  EXPECT_EQ(ErrorReason(backend->AddUnit("u0", wide)), "UNSUPPORTED_CAPS");
  UnitCaps only_2m;
  only_2m.pgsize_bitmap = kPage2M;
  EXPECT_TRUE(backend->AddUnit("u1", only_2m).ok());
  ASSERT_TRUE(backend->AllocDomain("u1", 1, DomainType::kUnmanaged).ok());
  // With only 2M pages, a 4K-aligned map has no page size that fits.
  EXPECT_EQ(backend->Map(1, 0x1000, 0, kPage4K, kProtRead).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(backend->Map(1, kPage2M, 0, kPage2M, kProtRead).ok());
}

TEST(SoftwareBackendTest, TheIotlbAndTheFaultQueueAreBounded) {
  std::unique_ptr<IommuBackend> backend =
      NewSoftwareBackend({{"iotlb_entries", "8"}, {"fault_queue", "4"}}).value();
  ASSERT_TRUE(backend->AddUnit("u0", UnitCaps()).ok());
  ASSERT_TRUE(backend->AllocDomain("u0", 1, DomainType::kUnmanaged).ok());
  ASSERT_TRUE(backend->AttachRid("u0", 7, 1).ok());
  ASSERT_TRUE(backend->Map(1, 0, 0, 64 * kPage4K, kProtRead).ok());
  for (uint64_t page = 0; page < 64; ++page) {
    ASSERT_EQ(backend->Translate("u0", 7, page * kPage4K, kProtRead).fault, FaultReason::kNone);
    EXPECT_LE(backend->Stats().iotlb_entries, 8u);
  }
  for (uint64_t i = 0; i < 10; ++i) backend->Translate("u0", 7, (100 + i) * kPage4K, kProtRead);
  const std::vector<FaultRecord> faults = backend->DrainFaults();
  ASSERT_THAT(faults, SizeIs(4));  // the newest four
  EXPECT_EQ(faults.front().iova, 106 * kPage4K);
  EXPECT_EQ(faults.back().iova, 109 * kPage4K);
}

TEST(PageTableTest, LeavesAndTablePagesAreAccounted) {
  std::atomic<uint64_t> pages{0};
  {
    PageTable table(kPage4K | kPage2M | kPage1G, &pages);
    EXPECT_EQ(pages.load(), 0u);  // no root until something is mapped
    EXPECT_FALSE(table.Lookup(0).has_value());
    ASSERT_TRUE(table.Map(kPage1G, 0, kPage1G, kProtRead).ok());
    EXPECT_EQ(pages.load(), 2u);  // root + one level-1 table holding the 1G block
    ASSERT_TRUE(table.Map(0x1000, 0x1000, kPage4K, kProtRead).ok());
    EXPECT_EQ(pages.load(), 4u);  // + level-2 and level-3 tables
    EXPECT_EQ(table.Lookup(kPage1G + 5)->size, kPage1G);
    EXPECT_EQ(table.Lookup(0x1fff)->paddr, 0x1000u);
    EXPECT_FALSE(table.Lookup(0x2000).has_value());
    EXPECT_EQ(table.Map(uint64_t{1} << 48, 0, kPage4K, kProtRead).code(),
              absl::StatusCode::kOutOfRange);
    EXPECT_EQ(table.Unmap(0, kPage1G).value(), kPage4K);
    EXPECT_EQ(pages.load(), 2u);  // the emptied tables were freed
    EXPECT_EQ(table.Unmap(kPage1G, kPage1G).value(), kPage1G);
    EXPECT_EQ(pages.load(), 0u);  // the root too, once empty
    ASSERT_TRUE(table.Map(0x1000, 0x1000, kPage4K, kProtRead).ok());
  }
  EXPECT_EQ(pages.load(), 0u);  // everything freed with the table
}

}  // namespace
}  // namespace iommud

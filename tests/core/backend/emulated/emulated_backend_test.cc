// What is specific to the emulated backend: invalidation commands are what makes changes visible
// (stale configuration and translations without them), queues wrap and overflow like hardware
// rings, and the hardware state lives in a memory file that survives the backend (crash) and is
// never silently reinitialized when corrupt. The shared contract is in the conformance suite.
#include "core/backend/emulated/emulated_backend.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/backend/emulated/emulated_format.h"
#include "core/backend/emulated/emulated_memory.h"
#include "core/backend/emulated/emulated_page_table.h"
#include "core/error.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace iommud {
namespace {

using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr uint32_t kRW = kProtRead | kProtWrite;

std::unique_ptr<IommuBackend> NewBackend(BackendOptions options = {}) {
  absl::StatusOr<std::unique_ptr<IommuBackend>> backend = NewEmulatedBackend(options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? std::move(*backend) : nullptr;
}

// A memory file's path in a directory of its own.
class TempFile {
 public:
  std::string path() const { return dir_.File("hw.mem"); }
  // Creates the file as `bytes` of zeros (as a new memory file, before any format).
  void CreateZeroed(off_t bytes) const {
    const int fd = open(path().c_str(), O_CREAT | O_WRONLY, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, bytes), 0);
    close(fd);
  }

 private:
  test::TempDir dir_;
};

// Raw access to a memory file, to check the documented format from outside the backend.
class FileWords {
 public:
  explicit FileWords(const std::string& path) : fd_(open(path.c_str(), O_RDWR)) {
    EXPECT_GE(fd_, 0) << path;
  }
  ~FileWords() { close(fd_); }
  uint64_t Read(uint64_t pa) const {
    uint64_t value = 0;
    EXPECT_EQ(pread(fd_, &value, sizeof(value), pa), 8) << pa;
    return value;
  }
  void Write(uint64_t pa, uint64_t value) {
    EXPECT_EQ(pwrite(fd_, &value, sizeof(value), pa), 8) << pa;
  }
  std::string All() const {
    std::string bytes(lseek(fd_, 0, SEEK_END), '\0');
    EXPECT_EQ(pread(fd_, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
    return bytes;
  }

 private:
  const int fd_;
};

void SetUpUnit(IommuBackend& backend) {
  UnitCaps caps;
  caps.max_rids = 1024;
  ASSERT_TRUE(backend.AddUnit("smmu0", caps).ok());
  ASSERT_TRUE(backend.AllocDomain("smmu0", 1, DomainType::kBlocked).ok());
  ASSERT_TRUE(backend.AllocDomain("smmu0", 2, DomainType::kIdentity).ok());
  ASSERT_TRUE(backend.AllocDomain("smmu0", 3, DomainType::kUnmanaged).ok());
}

TEST(EmulatedBackendTest, WithoutCfgiTheDeviceKeepsUsingTheOldStreamTableEntry) {
  for (const bool skip : {false, true}) {
    SCOPED_TRACE(skip);
    std::unique_ptr<IommuBackend> backend =
        NewBackend({{"test_skip_invalidation", skip ? "true" : "false"}});
    SetUpUnit(*backend);
    ASSERT_TRUE(backend->AttachRid("smmu0", 7, 1).ok());
    EXPECT_EQ(backend->Translate("smmu0", 7, 0x1000, kProtRead).fault, FaultReason::kBlocked);
    ASSERT_TRUE(backend->AttachRid("smmu0", 7, 2).ok());  // the STE now says bypass...
    EXPECT_EQ(backend->ReadRid("smmu0", 7)->domain, 2u);   // ...as read-back shows
    const Translation dma = backend->Translate("smmu0", 7, 0x1000, kProtRead);
    // ...but without CFGI_STE the device still has the blocked configuration cached.
    EXPECT_EQ(dma.fault, skip ? FaultReason::kBlocked : FaultReason::kNone);
  }
}

TEST(EmulatedBackendTest, WithoutTlbiUnmappedTranslationsStayCached) {
  std::unique_ptr<IommuBackend> backend = NewBackend({{"test_skip_invalidation", "true"}});
  SetUpUnit(*backend);
  ASSERT_TRUE(backend->AttachRid("smmu0", 9, 3).ok());
  ASSERT_TRUE(backend->Map(3, 0x200000, 0x40000000, kPage2M, kRW).ok());
  EXPECT_EQ(backend->Translate("smmu0", 9, 0x200010, kProtRead).paddr, 0x40000010u);
  ASSERT_EQ(backend->Unmap(3, 0x200000, kPage2M).value(), kPage2M);
  ASSERT_TRUE(backend->InvalidateIotlb(3, 0x200000, kPage2M).ok());  // no TLBI issued
  EXPECT_EQ(backend->Translate("smmu0", 9, 0x200010, kProtRead).paddr, 0x40000010u);
  EXPECT_THAT(backend->ReadMappings(3).value(), IsEmpty());  // memory says unmapped
}

TEST(EmulatedBackendTest, TheCommandQueueWrapsAround) {
  std::unique_ptr<IommuBackend> backend = NewBackend();
  SetUpUnit(*backend);
  for (Rid rid = 0; rid < 700; ++rid) {  // 2 commands each: well past the 256-entry ring
    ASSERT_TRUE(backend->AttachRid("smmu0", rid, rid % 2 ? 1 : 2).ok());
  }
  for (Rid rid = 0; rid < 700; ++rid) {
    const Translation dma = backend->Translate("smmu0", rid, 0x5000, kProtRead);
    EXPECT_EQ(dma.fault, rid % 2 ? FaultReason::kBlocked : FaultReason::kNone) << rid;
  }
  EXPECT_THAT(backend->ReadRids("smmu0").value(), SizeIs(700));
}

TEST(EmulatedBackendTest, TheEventQueueDropsWhenFullAndRecoversWhenDrained) {
  std::unique_ptr<IommuBackend> backend = NewBackend();
  SetUpUnit(*backend);
  for (uint64_t i = 0; i < 1100; ++i) backend->Translate("smmu0", 5, i * kPage4K, kProtRead);
  std::vector<FaultRecord> faults = backend->DrainFaults();
  ASSERT_THAT(faults, SizeIs(1024));  // the ring's capacity; later events were dropped
  EXPECT_EQ(faults.front().iova, 0u);
  EXPECT_EQ(faults.front().unit, "smmu0");
  EXPECT_EQ(faults.front().reason, FaultReason::kUnknownRid);
  EXPECT_EQ(faults.back().iova, 1023 * kPage4K);
  backend->Translate("smmu0", 5, 0x777000, kProtWrite);
  faults = backend->DrainFaults();
  ASSERT_THAT(faults, SizeIs(1));
  EXPECT_EQ(faults[0].access, static_cast<uint32_t>(kProtWrite));
}

TEST(EmulatedBackendTest, TheHardwareStateOutlivesTheBackend) {
  TempFile file;
  {
    std::unique_ptr<IommuBackend> backend =
        NewBackend({{"memory_file", file.path()}, {"memory_bytes", "16M"}});
    SetUpUnit(*backend);
    ASSERT_TRUE(backend->AttachRid("smmu0", 0x42, 3).ok());
    ASSERT_TRUE(backend->AttachRid("smmu0", 0x43, 1).ok());
    ASSERT_TRUE(backend->Map(3, kPage1G, 0x80000000, kPage1G + kPage4K, kProtRead).ok());
  }  // the daemon "crashes": nothing is torn down in the hardware
  std::unique_ptr<IommuBackend> backend =
      NewBackend({{"memory_file", file.path()}, {"memory_bytes", "16M"}});
  EXPECT_EQ(backend->ReadDomains(), (std::vector<DomainId>{1, 2, 3}));
  EXPECT_EQ(backend->ReadRid("smmu0", 0x42)->domain, 3u);
  EXPECT_EQ(backend->ReadRid("smmu0", 0x43)->domain, 1u);
  const std::vector<Mapping> leaves = backend->ReadMappings(3).value();
  ASSERT_THAT(leaves, SizeIs(2));
  EXPECT_EQ(leaves[0].size, kPage1G);
  EXPECT_EQ(leaves[1].paddr, 0x80000000u + kPage1G);
  EXPECT_EQ(backend->Translate("smmu0", 0x42, kPage1G + 0x10, kProtRead).paddr, 0x80000010u);
  UnitCaps held;  // the caps SetUpUnit gave it, read back from the memory
  held.max_rids = 1024;
  EXPECT_EQ(backend->AddUnit("smmu0", held).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ErrorReason(backend->AddUnit("smmu0", UnitCaps())), "UNIT_CAPS_MISMATCH");
  EXPECT_EQ(backend->FreeDomain(3).code(), absl::StatusCode::kFailedPrecondition);  // RID on it
  ASSERT_TRUE(backend->ReleaseRid("smmu0", 0x42).ok());
  EXPECT_TRUE(backend->FreeDomain(3).ok());
}

TEST(EmulatedBackendTest, ACorruptMemoryFileIsRefusedNotReinitialized) {
  TempFile file;
  { ASSERT_NE(NewBackend({{"memory_file", file.path()}, {"memory_bytes", "1M"}}), nullptr); }
  const int fd = open(file.path().c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, "garbage!", 8, 0), 8);
  close(fd);
  absl::StatusOr<std::unique_ptr<IommuBackend>> backend =
      NewEmulatedBackend({{"memory_file", file.path()}, {"memory_bytes", "1M"}});
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ErrorReason(backend.status()), "CORRUPT_MEMORY_FILE");
}

TEST(EmulatedBackendTest, OptionsAreValidated) {
  for (const BackendOptions& bad : std::vector<BackendOptions>{
           {{"frobnicate", "1"}}, {{"memory_bytes", "12Q"}}, {{"memory_bytes", "4K"}},
           {{"iotlb_entries", "0"}}, {{"test_skip_invalidation", "maybe"}}}) {
    absl::StatusOr<std::unique_ptr<IommuBackend>> backend = NewEmulatedBackend(bad);
    EXPECT_EQ(backend.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(ErrorReason(backend.status()), "INVALID_BACKEND_OPTION");
  }
  absl::StatusOr<std::unique_ptr<IommuBackend>> unwritable =
      NewEmulatedBackend({{"memory_file", "/nonexistent-dir/hw.mem"}});
  EXPECT_EQ(ErrorReason(unwritable.status()), "MEMORY_FILE");
}

TEST(EmulatedBackendTest, MemoryRunsOutCleanly) {
  std::unique_ptr<IommuBackend> backend = NewBackend({{"memory_bytes", "1M"}});
  UnitCaps caps;
  caps.max_rids = 256;
  ASSERT_TRUE(backend->AddUnit("u", caps).ok());
  absl::Status status;
  DomainId id = 1;
  while ((status = backend->AllocDomain("u", id, DomainType::kUnmanaged)).ok()) ++id;
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrorReason(status), "HW_MEMORY_FULL");
  EXPECT_EQ(backend->ReadDomains().size(), id - 1);
}

TEST(EmulatedFormatTest, PageTableDescriptorsAreEncodedAsDocumented) {
  bool existed = true;
  std::unique_ptr<EmulatedMemory> memory = EmulatedMemory::Open("", 4 << 20, &existed).value();
  EXPECT_FALSE(existed);
  memory->Write64(emu::kHdrBump, emu::kAllocArea);
  PagePool pool(memory.get());
  const uint64_t root = pool.Alloc().value();
  EmulatedPageTable table(memory.get(), &pool, root, kPage4K | kPage2M | kPage1G);
  // 1G block at 1G, 2M block at 2G, 4K page at 2G+2M+4K.
  ASSERT_TRUE(table.Map(kPage1G, 0x40000000, kPage1G, kProtRead).ok());
  ASSERT_TRUE(table.Map(2 * kPage1G, 0x80000000, kPage2M, kRW).ok());
  ASSERT_TRUE(table.Map(2 * kPage1G + kPage2M + kPage4K, 0x12345000, kPage4K, kProtWrite).ok());
  EXPECT_EQ(pool.in_use(), 4u);  // root, one level-1 table, one level-2, one level-3

  const uint64_t l1 = memory->Read64(root + 8 * 0);
  EXPECT_EQ(l1 & 0xfff, emu::kPteValid | emu::kPteTable);
  const uint64_t l1_table = l1 & emu::kPteAddrMask;
  EXPECT_EQ(memory->Read64(l1_table + 8 * 1), 0x40000000 | emu::kPteValid | emu::kPteRead);
  const uint64_t l2 = memory->Read64(l1_table + 8 * 2);
  EXPECT_EQ(l2 & 0xfff, emu::kPteValid | emu::kPteTable);
  const uint64_t l2_table = l2 & emu::kPteAddrMask;
  EXPECT_EQ(memory->Read64(l2_table + 8 * 0),
            0x80000000 | emu::kPteValid | emu::kPteRead | emu::kPteWrite);
  const uint64_t l3_table = memory->Read64(l2_table + 8 * 1) & emu::kPteAddrMask;
  EXPECT_EQ(memory->Read64(l3_table + 8 * 1),
            0x12345000 | emu::kPteValid | emu::kPteTable | emu::kPteWrite);  // level-3 "page"

  // Decoding gives back what was encoded.
  const std::vector<Mapping> leaves = table.Leaves();
  ASSERT_THAT(leaves, SizeIs(3));
  EXPECT_EQ(leaves[0].iova, kPage1G);
  EXPECT_EQ(leaves[0].size, kPage1G);
  EXPECT_EQ(leaves[0].prot, static_cast<uint32_t>(kProtRead));
  EXPECT_EQ(leaves[1].paddr, 0x80000000u);
  EXPECT_EQ(leaves[1].size, kPage2M);
  EXPECT_EQ(leaves[2].iova, 2 * kPage1G + kPage2M + kPage4K);
  EXPECT_EQ(leaves[2].prot, static_cast<uint32_t>(kProtWrite));
  const std::optional<Mapping> walked = table.Walk(kPage1G + 0x123456);
  ASSERT_TRUE(walked.has_value());
  EXPECT_EQ(walked->iova, kPage1G);
  EXPECT_EQ(walked->paddr, 0x40000000u);
  EXPECT_EQ(table.CountTablePages(emu::kAllocArea, memory->size()), 4u);

  // Unmapping the page frees its now-empty level-3 table, and the pool hands it out again.
  ASSERT_EQ(table.Unmap(2 * kPage1G + kPage2M + kPage4K, kPage4K).value(), kPage4K);
  EXPECT_EQ(memory->Read64(l2_table + 8 * 1), 0u);
  EXPECT_EQ(pool.in_use(), 3u);
  EXPECT_EQ(pool.Alloc().value(), l3_table);
}

TEST(EmulatedFormatTest, StreamAndDomainTablesAreEncodedAsDocumented) {
  TempFile file;
  std::unique_ptr<IommuBackend> backend =
      NewBackend({{"memory_file", file.path()}, {"memory_bytes", "4M"}});
  SetUpUnit(*backend);
  ASSERT_TRUE(backend->AttachRid("smmu0", 5, 1).ok());
  ASSERT_TRUE(backend->AttachRid("smmu0", 6, 2).ok());
  ASSERT_TRUE(backend->AttachRid("smmu0", 7, 3).ok());
  ASSERT_TRUE(backend->AttachRid("smmu0", 8, 3).ok());
  FileWords words(file.path());  // MAP_SHARED: the file shows the hardware's memory as it is
  EXPECT_EQ(words.Read(emu::kHdrMagic), emu::kMagic);
  EXPECT_EQ(words.Read(emu::kHdrVersion), emu::kVersion);
  EXPECT_EQ(words.Read(emu::kHdrSize), uint64_t{4} << 20);
  const uint64_t unit = emu::UnitAddr(0);
  EXPECT_EQ(words.Read(unit), 1u);
  EXPECT_EQ(words.Read(unit + 0x18), 1024u);
  EXPECT_EQ(words.Read(unit + 0x28), 0x30756d6d73u);  // "smmu0" little-endian, NUL-padded
  const uint64_t stream_table = words.Read(unit + 0x20);
  EXPECT_GE(stream_table, emu::kAllocArea);
  const auto ste = [&](Rid rid, uint64_t word) {
    return words.Read(stream_table + rid * emu::kSteBytes + 8 * word);
  };
  EXPECT_EQ(ste(4, 0), 0u);                                  // never attached: invalid
  EXPECT_EQ(ste(5, 0), emu::kSteValid | emu::kAbort << 1);   // blocked
  EXPECT_EQ(ste(6, 0), emu::kSteValid | emu::kBypass << 1);  // identity
  EXPECT_EQ(ste(7, 0), emu::kSteValid | emu::kTranslate << 1);
  EXPECT_EQ(ste(5, 1), 1u);
  EXPECT_EQ(ste(7, 1), 3u);
  EXPECT_EQ(ste(5, 2), 0u);  // no page table
  // Domain 3 (slot 2): unit 0, UNMANAGED, its root is what the STEs point at, two STEs use it.
  const uint64_t domain = emu::DomainAddr(2);
  EXPECT_EQ(words.Read(domain), 3u);
  EXPECT_EQ(words.Read(domain + 8), static_cast<uint64_t>(DomainType::kUnmanaged) << 8);
  EXPECT_NE(words.Read(domain + 0x10), 0u);
  EXPECT_EQ(ste(7, 2), words.Read(domain + 0x10));
  EXPECT_EQ(ste(8, 2), words.Read(domain + 0x10));
  EXPECT_EQ(words.Read(domain + 0x18), 2u);
  // Each attach was one CFGI_STE + SYNC, all consumed.
  EXPECT_EQ(words.Read(emu::kHdrCmdqProd), 8u);
  EXPECT_EQ(words.Read(emu::kHdrCmdqCons), 8u);
  EXPECT_EQ(words.Read(emu::kCmdq + 6 * emu::kQueueEntry), emu::kCfgiSte);
  EXPECT_EQ(words.Read(emu::kCmdq + 6 * emu::kQueueEntry + 16), 8u);  // the RID
  EXPECT_EQ(words.Read(emu::kCmdq + 7 * emu::kQueueEntry), emu::kSync);
}

TEST(EmulatedBackendTest, ARangeInvalidationDropsOnlyThatRange) {
  std::unique_ptr<IommuBackend> backend = NewBackend();
  SetUpUnit(*backend);
  ASSERT_TRUE(backend->AttachRid("smmu0", 9, 3).ok());
  ASSERT_TRUE(backend->Map(3, 0x10000, 0x70000000, 2 * kPage4K, kRW).ok());
  EXPECT_EQ(backend->Translate("smmu0", 9, 0x10000, kProtRead).paddr, 0x70000000u);
  EXPECT_EQ(backend->Translate("smmu0", 9, 0x11000, kProtRead).paddr, 0x70001000u);
  EXPECT_EQ(backend->Stats().iotlb_entries, 2u);
  ASSERT_EQ(backend->Unmap(3, 0x10000, 2 * kPage4K).value(), 2 * kPage4K);
  ASSERT_TRUE(backend->InvalidateIotlb(3, 0x10000, kPage4K).ok());
  EXPECT_EQ(backend->Translate("smmu0", 9, 0x10000, kProtRead).fault, FaultReason::kNoMapping);
  EXPECT_EQ(backend->Translate("smmu0", 9, 0x11000, kProtRead).paddr, 0x70001000u);  // stale
  ASSERT_TRUE(backend->InvalidateIotlb(3, 0, 0).ok());  // the whole domain
  EXPECT_EQ(backend->Translate("smmu0", 9, 0x11000, kProtRead).fault, FaultReason::kNoMapping);
  EXPECT_EQ(backend->Stats().iotlb_entries, 0u);
}

TEST(EmulatedBackendTest, AMapThatRunsOutOfMemoryMidWalkFreesTheTablesItCreated) {
  std::unique_ptr<IommuBackend> backend = NewBackend({{"memory_bytes", "1M"}});
  UnitCaps caps;
  caps.max_rids = 256;
  ASSERT_TRUE(backend->AddUnit("u", caps).ok());
  DomainId id = 1;
  while (backend->AllocDomain("u", id, DomainType::kUnmanaged).ok()) ++id;
  ASSERT_GE(id, 3u);
  ASSERT_TRUE(backend->FreeDomain(id - 1).ok());  // exactly one free page left
  const uint64_t pages = backend->Stats().page_table_pages;
  // A 4K page needs three new tables (levels 1-3): the second allocation fails.
  const absl::Status status = backend->Map(1, 0x1000, 0x1000, kPage4K, kRW);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrorReason(status), "HW_MEMORY_FULL");
  EXPECT_EQ(backend->Stats().page_table_pages, pages);
  EXPECT_THAT(backend->ReadMappings(1).value(), IsEmpty());
  // The page came back: a 1G block needs one table and fits.
  EXPECT_TRUE(backend->Map(1, kPage1G, 0, kPage1G, kRW).ok());
  EXPECT_EQ(backend->Stats().page_table_pages, pages + 1);
}

// Opens a backend on `file` (1M) and checks it formatted the memory: a unit can be added and the
// magic is written.
void ExpectFormattedOnOpen(const TempFile& file) {
  std::unique_ptr<IommuBackend> backend =
      NewBackend({{"memory_file", file.path()}, {"memory_bytes", "1M"}});
  ASSERT_NE(backend, nullptr);
  UnitCaps caps;
  caps.max_rids = 256;
  EXPECT_TRUE(backend->AddUnit("u", caps).ok());
  EXPECT_EQ(FileWords(file.path()).Read(emu::kHdrMagic), emu::kMagic);
}

TEST(EmulatedBackendTest, AZeroFilledFileIsFormatted) {
  TempFile file;
  ASSERT_NO_FATAL_FAILURE(file.CreateZeroed(1 << 20));
  ExpectFormattedOnOpen(file);
}

// Each corruption of an image that was valid is refused with DATA_LOSS, and the file is left as
// it was (nothing is reinitialized or repaired behind the operator's back).
TEST(EmulatedBackendTest, EveryKindOfCorruptionIsRefusedAndTheFileLeftAlone) {
  struct Corruption {
    std::string name;
    std::function<void(FileWords&)> apply;
  };
  const auto root_of_domain_3 = [](FileWords& w) { return w.Read(emu::DomainAddr(2) + 0x10); };
  const auto stream_table = [](FileWords& w) { return w.Read(emu::UnitAddr(0) + 0x20); };
  const std::vector<Corruption> corruptions = {
      {"magic zeroed", [](FileWords& w) { w.Write(emu::kHdrMagic, 0); }},
      {"version", [](FileWords& w) { w.Write(emu::kHdrVersion, 2); }},
      {"bump beyond memory", [](FileWords& w) { w.Write(emu::kHdrBump, uint64_t{1} << 40); }},
      {"free list outside", [](FileWords& w) { w.Write(emu::kHdrFreeList, 0x10); }},
      {"command queue", [](FileWords& w) { w.Write(emu::kHdrCmdqCons, 1000); }},
      {"event queue", [](FileWords& w) { w.Write(emu::kHdrEvtqProd, 5000); }},
      {"stream table base", [](FileWords& w) { w.Write(emu::UnitAddr(0) + 0x20, 0x100); }},
      {"max rids", [](FileWords& w) { w.Write(emu::UnitAddr(0) + 0x18, uint64_t{1} << 40); }},
      {"domain's unit", [](FileWords& w) { w.Write(emu::DomainAddr(2) + 8, 9); }},
      {"domain root", [](FileWords& w) { w.Write(emu::DomainAddr(2) + 0x10, 0x3000); }},
      {"STE names no domain",
       [&](FileWords& w) { w.Write(stream_table(w) + 0x42 * emu::kSteBytes + 8, 99); }},
      {"STE config",
       [&](FileWords& w) { w.Write(stream_table(w) + 0x42 * emu::kSteBytes, emu::kSteValid); }},
      {"PTE points outside", [&](FileWords& w) {
         w.Write(root_of_domain_3(w), (uint64_t{1} << 39) | emu::kPteValid | emu::kPteTable);
       }},
      // Found by tests/fuzz/emulated_queue_fuzzer: the free list's links were not checked, nor
      // whether a page had two uses; each of these was accepted, and the next allocations wrote
      // outside the memory or handed out a page still in use.
      {"free list link outside", [](FileWords& w) {
         w.Write(w.Read(emu::kHdrFreeList), uint64_t{1} << 40);
       }},
      {"free list cycle", [](FileWords& w) {
         const uint64_t head = w.Read(emu::kHdrFreeList);
         w.Write(w.Read(head), head);
       }},
      {"free page in use by a page table",
       [&](FileWords& w) { w.Write(emu::kHdrFreeList, root_of_domain_3(w)); }},
      {"stream table on a free page", [](FileWords& w) {
         w.Write(emu::UnitAddr(0) + 0x20, w.Read(emu::kHdrFreeList));
         w.Write(emu::UnitAddr(0) + 0x18, 128);
         w.Write(emu::DomainAddr(2) + 0x18, 0);  // its STE is gone with the old table
       }},
      {"table shared by two domains", [&](FileWords& w) {
         // Domain 4's root points at domain 3's level-1 table (3 pages counted twice).
         w.Write(w.Read(emu::DomainAddr(3) + 0x10), w.Read(root_of_domain_3(w)));
         w.Write(emu::kHdrPagesInUse, w.Read(emu::kHdrPagesInUse) + 3);
       }},
  };
  for (const Corruption& corruption : corruptions) {
    SCOPED_TRACE(corruption.name);
    TempFile file;
    const BackendOptions options = {{"memory_file", file.path()}, {"memory_bytes", "4M"}};
    {
      std::unique_ptr<IommuBackend> backend = NewBackend(options);
      SetUpUnit(*backend);
      ASSERT_TRUE(backend->AttachRid("smmu0", 0x42, 3).ok());
      ASSERT_TRUE(backend->Map(3, 0, 0, kPage4K, kRW).ok());
      ASSERT_TRUE(backend->AllocDomain("smmu0", 4, DomainType::kUnmanaged).ok());
      // Two tables freed again: the free list holds two pages.
      ASSERT_TRUE(backend->Map(3, kPage1G, kPage1G, kPage4K, kRW).ok());
      ASSERT_EQ(backend->Unmap(3, kPage1G, kPage4K).value(), kPage4K);
    }
    FileWords words(file.path());
    corruption.apply(words);
    const std::string before = words.All();
    absl::StatusOr<std::unique_ptr<IommuBackend>> backend = NewEmulatedBackend(options);
    EXPECT_EQ(backend.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_EQ(ErrorReason(backend.status()), "CORRUPT_MEMORY_FILE");
    EXPECT_TRUE(words.All() == before) << "the file was modified";
  }
}

// A crash between a table write and the bookkeeping that follows it (pages in use, a domain's STE
// reference count) leaves counters behind the tables: they are rebuilt from the tables when the
// backend attaches, not taken as corruption.
TEST(EmulatedBackendTest, BookkeepingACrashLeftBehindIsRebuilt) {
  TempFile file;
  const BackendOptions options = {{"memory_file", file.path()}, {"memory_bytes", "4M"}};
  uint64_t pages = 0;
  {
    std::unique_ptr<IommuBackend> backend = NewBackend(options);
    SetUpUnit(*backend);
    ASSERT_TRUE(backend->AttachRid("smmu0", 0x42, 3).ok());
    ASSERT_TRUE(backend->Map(3, 0, 0, kPage4K, kRW).ok());
    pages = backend->Stats().page_table_pages;
  }
  {
    FileWords words(file.path());
    words.Write(emu::kHdrPagesInUse, 1);
    words.Write(emu::DomainAddr(2) + 0x18, 0);  // domain 3 has an STE: its count must be 1
  }
  std::unique_ptr<IommuBackend> backend = NewBackend(options);
  ASSERT_NE(backend, nullptr);
  EXPECT_EQ(backend->Stats().page_table_pages, pages);
  EXPECT_EQ(backend->FreeDomain(3).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(backend->ReleaseRid("smmu0", 0x42).ok());
  EXPECT_TRUE(backend->FreeDomain(3).ok());  // the rebuilt count went back to zero
}

// A process that died while formatting (the magic, written last, missing; only the words written
// before it set) left nothing to keep: the memory is formatted again.
TEST(EmulatedBackendTest, AnInterruptedFormatIsFormattedAgain) {
  TempFile file;
  {
    ASSERT_NO_FATAL_FAILURE(file.CreateZeroed(1 << 20));
    FileWords words(file.path());
    words.Write(emu::kHdrVersion, 1);
    words.Write(emu::kHdrSize, 1 << 20);
    words.Write(emu::kHdrBump, emu::kAllocArea);
  }
  ExpectFormattedOnOpen(file);
}

// Event queue entries the device cannot have written (a memory file changed behind its back) are
// skipped by DrainFaults rather than handed on with an unknown unit, reason or access.
TEST(EmulatedBackendTest, EventsTheDeviceCannotHaveWrittenAreSkipped) {
  TempFile file;
  const BackendOptions options = {{"memory_file", file.path()}, {"memory_bytes", "4M"}};
  {
    std::unique_ptr<IommuBackend> backend = NewBackend(options);
    SetUpUnit(*backend);
    EXPECT_EQ(backend->Translate("smmu0", 7, 0x1000, kProtRead).fault, FaultReason::kUnknownRid);
  }
  {
    FileWords words(file.path());
    uint64_t prod = words.Read(emu::kHdrEvtqProd);
    for (const uint64_t word : {uint64_t{9} | uint64_t{1} << 8,        // no unit 9
                                uint64_t{0} | uint64_t{77} << 8,       // unknown reason
                                uint64_t{0} | uint64_t{0} << 8,        // reason NONE
                                uint64_t{0} | uint64_t{1} << 8 | uint64_t{4} << 16}) {  // access
      words.Write(emu::kEvtq + (prod % emu::kEvtqEntries) * emu::kQueueEntry, word);
      words.Write(emu::kHdrEvtqProd, ++prod);
    }
  }
  std::unique_ptr<IommuBackend> backend = NewBackend(options);
  ASSERT_NE(backend, nullptr);
  const std::vector<FaultRecord> faults = backend->DrainFaults();
  ASSERT_THAT(faults, SizeIs(1));
  EXPECT_EQ(faults[0].unit, "smmu0");
  EXPECT_EQ(faults[0].rid, 7u);
  EXPECT_EQ(faults[0].reason, FaultReason::kUnknownRid);
  EXPECT_THAT(backend->DrainFaults(), IsEmpty());
}

}  // namespace
}  // namespace iommud

// What is specific to the emulated backend: invalidation commands are what makes changes visible
// (stale configuration and translations without them), queues wrap and overflow like hardware
// rings, and the hardware state lives in a memory file that survives the backend (crash) and is
// never silently reinitialized when corrupt. The shared contract is in the conformance suite.
#include "core/backend/emulated/emulated_backend.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

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

class TempFile {
 public:
  TempFile() {
    char dir[] = "/tmp/iommud-emu-XXXXXX";
    dir_ = mkdtemp(dir);
    path_ = dir_ + "/hw.mem";
  }
  ~TempFile() { (void)std::system(absl::StrCat("rm -rf '", dir_, "'").c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string dir_, path_;
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
  EXPECT_EQ(backend->AddUnit("smmu0", UnitCaps()).code(), absl::StatusCode::kAlreadyExists);
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

}  // namespace
}  // namespace iommud

// The software backend's RID tables, IOTLB, faults, read-back and concurrency.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <thread>
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

class SoftwareTranslateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = NewBackendWithUnit();
    ASSERT_TRUE(backend_->AllocDomain("u0", 1, DomainType::kUnmanaged).ok());
    ASSERT_TRUE(backend_->AttachRid("u0", 5, 1).ok());
  }
  Translation Dma(Rid rid, uint64_t iova, uint32_t access = kProtRead) {
    return backend_->Translate("u0", rid, iova, access);
  }

  std::unique_ptr<IommuBackend> backend_;
};

TEST_F(SoftwareTranslateTest, UnmapLeavesTheIotlbStaleUntilInvalidation) {
  ASSERT_TRUE(backend_->Map(1, 0x10000, 0xabc000, kPage4K, kRW).ok());
  ASSERT_EQ(Dma(5, 0x10008).paddr, 0xabc008u);  // walks and fills the IOTLB
  EXPECT_EQ(backend_->Stats().iotlb_entries, 1u);
  ASSERT_EQ(backend_->Unmap(1, 0x10000, kPage4K).value(), kPage4K);
  EXPECT_THAT(backend_->ReadMappings(1).value(), IsEmpty());
  // The stale translation is still used, even after the IOVA is remapped elsewhere.
  Translation stale = Dma(5, 0x10010);
  EXPECT_EQ(stale.fault, FaultReason::kNone);
  EXPECT_EQ(stale.paddr, 0xabc010u);
  ASSERT_TRUE(backend_->Map(1, 0x10000, 0xdef000, kPage4K, kRW).ok());
  EXPECT_EQ(Dma(5, 0x10010).paddr, 0xabc010u);
  ASSERT_EQ(backend_->Unmap(1, 0x10000, kPage4K).value(), kPage4K);
  // An invalidation of another range keeps it.
  ASSERT_TRUE(backend_->InvalidateIotlb(1, 0x20000, kPage4K).ok());
  EXPECT_EQ(Dma(5, 0x10010).fault, FaultReason::kNone);
  // An invalidation overlapping it drops it: the next DMA walks and faults.
  ASSERT_TRUE(backend_->InvalidateIotlb(1, 0x10ff0, 0x20).ok());
  EXPECT_EQ(backend_->Stats().iotlb_entries, 0u);
  Translation fault = Dma(5, 0x10010);
  EXPECT_EQ(fault.fault, FaultReason::kNoMapping);
  EXPECT_EQ(fault.domain, 1u);
}

TEST_F(SoftwareTranslateTest, AWholeDomainInvalidationDropsEveryLeafSize) {
  ASSERT_TRUE(backend_->Map(1, 0, 0, kPage1G + kPage2M + kPage4K, kRW).ok());
  ASSERT_TRUE(backend_->AllocDomain("u0", 2, DomainType::kDma).ok());
  ASSERT_TRUE(backend_->AttachRid("u0", 6, 2).ok());
  ASSERT_TRUE(backend_->Map(2, 0, 0x5000, kPage4K, kRW).ok());
  for (uint64_t iova : {uint64_t{5}, kPage1G + 5, kPage1G + kPage2M + 5}) {
    ASSERT_EQ(Dma(5, iova).paddr, iova);
  }
  ASSERT_EQ(Dma(6, 0).paddr, 0x5000u);
  EXPECT_EQ(backend_->Stats().iotlb_entries, 4u);
  ASSERT_EQ(backend_->Unmap(1, 0, kPage1G + kPage2M + kPage4K).value(),
            kPage1G + kPage2M + kPage4K);
  ASSERT_EQ(backend_->Unmap(2, 0, kPage4K).value(), kPage4K);
  ASSERT_TRUE(backend_->InvalidateIotlb(1, 0, 0).ok());
  for (uint64_t iova : {uint64_t{5}, kPage1G + 5, kPage1G + kPage2M + 5}) {
    EXPECT_EQ(Dma(5, iova).fault, FaultReason::kNoMapping);
  }
  // Domain 2's IOTLB is its own: still stale.
  EXPECT_EQ(Dma(6, 0).paddr, 0x5000u);
  EXPECT_EQ(backend_->Stats().iotlb_entries, 1u);
}

TEST_F(SoftwareTranslateTest, BlockedIdentityAndUnknownRids) {
  ASSERT_TRUE(backend_->AllocDomain("u0", 2, DomainType::kBlocked).ok());
  ASSERT_TRUE(backend_->AllocDomain("u0", 3, DomainType::kIdentity).ok());
  ASSERT_TRUE(backend_->AttachRid("u0", 6, 2).ok());
  ASSERT_TRUE(backend_->AttachRid("u0", 7, 3).ok());
  Translation blocked = Dma(6, 0x1000);
  EXPECT_EQ(blocked.fault, FaultReason::kBlocked);
  EXPECT_EQ(blocked.domain, 2u);
  Translation identity = Dma(7, 0x123456789, kRW);
  EXPECT_EQ(identity.fault, FaultReason::kNone);
  EXPECT_EQ(identity.paddr, 0x123456789u);
  EXPECT_EQ(identity.domain, 3u);
  for (Translation unknown : {Dma(8, 0x1000), backend_->Translate("nope", 5, 0x1000, kProtRead),
                              Dma(1u << 20, 0x1000)}) {
    EXPECT_EQ(unknown.fault, FaultReason::kUnknownRid);
    EXPECT_EQ(unknown.domain, 0u);
  }
  // Released: the entry is invalid again.
  ASSERT_TRUE(backend_->ReleaseRid("u0", 7).ok());
  EXPECT_EQ(Dma(7, 0x1000).fault, FaultReason::kUnknownRid);
  EXPECT_EQ(backend_->ReadRid("u0", 7).value().domain, 0u);
  EXPECT_TRUE(backend_->ReleaseRid("u0", 7).ok());  // no entry: OK
}

TEST_F(SoftwareTranslateTest, AccessBeyondTheMappingsProtFaults) {
  ASSERT_TRUE(backend_->Map(1, 0, 0x100000, kPage4K, kProtRead).ok());
  ASSERT_TRUE(backend_->Map(1, kPage4K, 0x200000, kPage4K, kProtWrite).ok());
  EXPECT_EQ(Dma(5, 0, kProtRead).fault, FaultReason::kNone);  // now cached
  Translation write = Dma(5, 0, kProtWrite);                  // checked on an IOTLB hit too
  EXPECT_EQ(write.fault, FaultReason::kPermission);
  EXPECT_EQ(write.domain, 1u);
  EXPECT_EQ(Dma(5, 0, kRW).fault, FaultReason::kPermission);
  EXPECT_EQ(Dma(5, kPage4K, kProtRead).fault, FaultReason::kPermission);  // on a walk
  EXPECT_EQ(Dma(5, kPage4K, kProtWrite).paddr, 0x200000u);
  const std::vector<FaultRecord> faults = backend_->DrainFaults();
  ASSERT_THAT(faults, SizeIs(3));
  for (const FaultRecord& f : faults) EXPECT_EQ(f.reason, FaultReason::kPermission);
}

TEST_F(SoftwareTranslateTest, EveryFaultIsQueuedOnceWithItsDetails) {
  ASSERT_TRUE(backend_->Map(1, 0, 0, kPage4K, kProtRead).ok());
  ASSERT_TRUE(backend_->AllocDomain("u0", 2, DomainType::kBlocked).ok());
  ASSERT_TRUE(backend_->AttachRid("u0", 6, 2).ok());
  EXPECT_EQ(Dma(5, 0).fault, FaultReason::kNone);  // successes are not queued
  Dma(9, 0x1000, kProtRead);
  Dma(6, 0x2000, kProtWrite);
  Dma(5, 0x3000, kRW);
  Dma(5, 0x0, kProtWrite);
  const std::vector<FaultRecord> faults = backend_->DrainFaults();
  ASSERT_THAT(faults, SizeIs(4));
  const struct {
    Rid rid;
    uint64_t iova;
    uint32_t access;
    FaultReason reason;
  } expected[] = {{9, 0x1000, kProtRead, FaultReason::kUnknownRid},
                  {6, 0x2000, kProtWrite, FaultReason::kBlocked},
                  {5, 0x3000, kRW, FaultReason::kNoMapping},
                  {5, 0x0, kProtWrite, FaultReason::kPermission}};
  for (size_t i = 0; i < faults.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(faults[i].unit, "u0");
    EXPECT_EQ(faults[i].rid, expected[i].rid);
    EXPECT_EQ(faults[i].iova, expected[i].iova);
    EXPECT_EQ(faults[i].access, expected[i].access);
    EXPECT_EQ(faults[i].reason, expected[i].reason);
    EXPECT_GT(faults[i].time_unix_nanos, 0);
    if (i > 0) {
      EXPECT_GE(faults[i].time_unix_nanos, faults[i - 1].time_unix_nanos);
    }
  }
  EXPECT_THAT(backend_->DrainFaults(), IsEmpty());
}

TEST_F(SoftwareTranslateTest, FreeDomainIsRefusedWhileARidPointsAtIt) {
  ASSERT_TRUE(backend_->Map(1, 0, 0x9000, kPage4K, kRW).ok());
  const BackendStats before = backend_->Stats();
  absl::Status status = backend_->FreeDomain(1);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(status), "DOMAIN_IN_USE");
  EXPECT_THAT(backend_->ReadDomains(), ElementsAre(1u));
  EXPECT_EQ(backend_->Stats().page_table_pages, before.page_table_pages);
  EXPECT_EQ(Dma(5, 0).paddr, 0x9000u);
  // Moving the RID to another domain releases the reference.
  ASSERT_TRUE(backend_->AllocDomain("u0", 2, DomainType::kIdentity).ok());
  ASSERT_TRUE(backend_->AttachRid("u0", 5, 2).ok());
  EXPECT_EQ(Dma(5, 0x4000).paddr, 0x4000u);
  EXPECT_EQ(backend_->FreeDomain(2).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(backend_->FreeDomain(1).ok());
  ASSERT_TRUE(backend_->ReleaseRid("u0", 5).ok());
  ASSERT_TRUE(backend_->FreeDomain(2).ok());
  EXPECT_THAT(backend_->ReadDomains(), IsEmpty());
  EXPECT_EQ(backend_->Stats().page_table_pages, 0u);
}

TEST_F(SoftwareTranslateTest, RidErrorsChangeNothing) {
  UnitCaps small;
  small.max_rids = 16;
  ASSERT_TRUE(backend_->AddUnit("u1", small).ok());
  ASSERT_TRUE(backend_->AllocDomain("u1", 2, DomainType::kUnmanaged).ok());
  ASSERT_TRUE(backend_->AttachRid("u1", 15, 2).ok());
  struct Case {
    absl::Status status;
    absl::StatusCode code;
    const char* reason;
  };
  const Case cases[] = {
      {backend_->AttachRid("u1", 16, 2), absl::StatusCode::kInvalidArgument, "RID_OUT_OF_RANGE"},
      {backend_->ReleaseRid("u1", 16), absl::StatusCode::kInvalidArgument, "RID_OUT_OF_RANGE"},
      {backend_->ReadRid("u1", 16).status(), absl::StatusCode::kInvalidArgument,
       "RID_OUT_OF_RANGE"},
      {backend_->AttachRid("u1", 3, 1), absl::StatusCode::kInvalidArgument,
       "DOMAIN_OF_OTHER_UNIT"},
      {backend_->AttachRid("u1", 15, 1), absl::StatusCode::kInvalidArgument,
       "DOMAIN_OF_OTHER_UNIT"},
      {backend_->AttachRid("u1", 3, 77), absl::StatusCode::kNotFound, "DOMAIN_NOT_FOUND"},
      {backend_->AttachRid("u9", 3, 2), absl::StatusCode::kNotFound, "UNIT_NOT_FOUND"},
      {backend_->ReleaseRid("u9", 3), absl::StatusCode::kNotFound, "UNIT_NOT_FOUND"},
      {backend_->ReadRids("u9").status(), absl::StatusCode::kNotFound, "UNIT_NOT_FOUND"},
      {backend_->AllocDomain("u9", 3, DomainType::kDma), absl::StatusCode::kNotFound,
       "UNIT_NOT_FOUND"},
      {backend_->AllocDomain("u1", 1, DomainType::kBlocked), absl::StatusCode::kAlreadyExists,
       "DOMAIN_EXISTS"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.code(), c.code) << c.reason;
    EXPECT_EQ(ErrorReason(c.status), c.reason);
  }
  EXPECT_THAT(backend_->ReadRids("u1").value(), ElementsAre(RidEntry{15, 2}));
  EXPECT_THAT(backend_->ReadRids("u0").value(), ElementsAre(RidEntry{5, 1}));
  EXPECT_THAT(backend_->ReadDomains(), ElementsAre(1u, 2u));
  // Domain 1 kept its type (the refused AllocDomain asked for BLOCKED).
  ASSERT_TRUE(backend_->Map(1, 0, 0, kPage4K, kRW).ok());
  EXPECT_EQ(Dma(5, 0).fault, FaultReason::kNone);
  EXPECT_EQ(backend_->Stats().programmed_rids, 2u);
}

TEST_F(SoftwareTranslateTest, ReadBackAgreesWithManyRidsAndDomains) {
  ASSERT_TRUE(backend_->AddUnit("u1", UnitCaps()).ok());
  std::map<DomainId, std::vector<Mapping>> mappings;
  for (DomainId id = 10; id < 74; ++id) {
    const char* unit = id % 2 == 0 ? "u0" : "u1";
    ASSERT_TRUE(backend_->AllocDomain(unit, id, DomainType::kDma).ok());
    for (uint64_t j = 0; j < id % 5; ++j) {
      const Mapping m{j * kPage2M + id * kPage4K, id * kPage1G + j * kPage4K, kPage4K,
                      j % 2 == 0 ? kProtRead : kRW};
      ASSERT_TRUE(backend_->Map(id, m.iova, m.paddr, m.size, m.prot).ok());
      mappings[id].push_back(m);
    }
  }
  std::map<Rid, DomainId> rids_u0 = {{5, 1}}, rids_u1;
  for (Rid i = 0; i < 2000; ++i) {
    const Rid rid = (i * 7919) % 65536;  // scattered, not in order
    const DomainId domain = 10 + (i % 64);
    const char* unit = domain % 2 == 0 ? "u0" : "u1";
    ASSERT_TRUE(backend_->AttachRid(unit, rid, domain).ok());
    (domain % 2 == 0 ? rids_u0 : rids_u1)[rid] = domain;
  }
  for (Rid i = 0; i < 2000; i += 3) {  // release a third of them again
    const Rid rid = (i * 7919) % 65536;
    const DomainId domain = 10 + (i % 64);
    ASSERT_TRUE(backend_->ReleaseRid(domain % 2 == 0 ? "u0" : "u1", rid).ok());
    (domain % 2 == 0 ? rids_u0 : rids_u1).erase(rid);
  }
  for (const auto& [unit, expected] :
       std::vector<std::pair<const char*, std::map<Rid, DomainId>>>{{"u0", rids_u0},
                                                                    {"u1", rids_u1}}) {
    std::vector<RidEntry> want;
    for (const auto& [rid, domain] : expected) want.push_back({rid, domain});
    EXPECT_EQ(backend_->ReadRids(unit).value(), want) << unit;
    for (const RidEntry& e : want) {
      EXPECT_EQ(backend_->ReadRid(unit, e.rid).value(), e);
      const auto& maps = mappings[e.domain];
      Translation t = backend_->Translate(unit, e.rid, maps.empty() ? 0 : maps.back().iova + 1,
                                          kProtRead);
      EXPECT_EQ(t.domain, e.domain);
      if (!maps.empty()) {
        EXPECT_EQ(t.paddr, maps.back().paddr + 1);
      }
    }
  }
  EXPECT_EQ(backend_->Stats().programmed_rids, rids_u0.size() + rids_u1.size());
  std::vector<DomainId> domains = backend_->ReadDomains();
  ASSERT_THAT(domains, SizeIs(65));
  EXPECT_TRUE(std::is_sorted(domains.begin(), domains.end()));
  for (DomainId id = 10; id < 74; ++id) {
    EXPECT_EQ(backend_->ReadMappings(id).value(), mappings[id]) << id;
  }
}

TEST(SoftwareConcurrencyTest, TranslateRunsWithMapAndUnmapOfOtherDomains) {
  std::unique_ptr<IommuBackend> backend = NewBackendWithUnit();
  constexpr int kWriters = 3;
  constexpr uint64_t kPages = 64;
  // Domain d maps iova -> iova + d * 1G; RID d points at it.
  for (int d = 1; d <= kWriters; ++d) {
    ASSERT_TRUE(backend->AllocDomain("u0", d, DomainType::kUnmanaged).ok());
    ASSERT_TRUE(backend->AttachRid("u0", d, d).ok());
  }
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int d = 1; d <= kWriters; ++d) {
    threads.emplace_back([&, d] {
      const uint64_t offset = d * kPage1G;
      for (int round = 0; round < 200; ++round) {
        for (uint64_t p = 0; p < kPages; ++p) {
          if (!backend->Map(d, p * kPage4K, p * kPage4K + offset, kPage4K, kRW).ok()) ++bad;
        }
        Translation t = backend->Translate("u0", d, 5 * kPage4K + 1, kProtRead);
        if (t.fault != FaultReason::kNone || t.paddr != 5 * kPage4K + 1 + offset) ++bad;
        absl::StatusOr<uint64_t> unmapped = backend->Unmap(d, 0, kPages * kPage4K);
        if (!unmapped.ok() || *unmapped != kPages * kPage4K) ++bad;
        if (!backend->InvalidateIotlb(d, 0, 0).ok()) ++bad;
      }
    });
  }
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      uint64_t i = r;
      while (!stop.load()) {
        const Rid d = 1 + i % kWriters;
        const uint64_t iova = (i % kPages) * kPage4K + 3;
        Translation t = backend->Translate("u0", d, iova, kProtRead);
        if (t.fault == FaultReason::kNone && t.paddr != iova + d * kPage1G) ++bad;
        if (t.fault != FaultReason::kNone && t.fault != FaultReason::kNoMapping) ++bad;
        if (i % 64 == 0) {
          backend->Stats();
          backend->ReadMappings(d).IgnoreError();
          backend->ReadRids("u0").IgnoreError();
          backend->DrainFaults();
        }
        ++i;
      }
    });
  }
  for (int d = 0; d < kWriters; ++d) threads[d].join();
  stop = true;
  for (size_t t = kWriters; t < threads.size(); ++t) threads[t].join();
  EXPECT_EQ(bad.load(), 0);
  for (int d = 1; d <= kWriters; ++d) {
    ASSERT_TRUE(backend->InvalidateIotlb(d, 0, 0).ok());
    EXPECT_THAT(backend->ReadMappings(d).value(), IsEmpty());
  }
  const BackendStats stats = backend->Stats();
  EXPECT_EQ(stats.page_table_pages, 0u);
  EXPECT_EQ(stats.iotlb_entries, 0u);
}

}  // namespace
}  // namespace iommud

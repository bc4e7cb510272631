// Every StateStore ("memory", the reference, and "sqlite" in a temporary directory) keeps the
// contract of core/store/state_store.h: atomic batches, deletes before puts, a domain delete drops
// its mappings, id counters never decrease, request records, and (sqlite) everything survives a
// reopen. Each case compares the store's Load with what the in-memory reference holds after the
// same batches.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/error.h"
#include "core/fault_injector.h"
#include "core/store/fault_injecting_state_store.h"
#include "core/store/in_memory_state_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/testing/test_state_store.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace test {
namespace {

using ::testing::IsEmpty;

// Every field of every record, one line each.
std::string Dump(const StoreSnapshot& s) {
  std::string out = absl::StrCat("next_group=", s.next_group_id, " next_domain=", s.next_domain_id,
                                 "\n");
  for (const UnitRecord& u : s.units) {
    absl::StrAppend(&out, "unit ", u.name, " pgsizes=", u.caps.pgsize_bitmap, " bits=",
                    u.caps.iova_bits, " rids=", u.caps.max_rids, " types=",
                    absl::StrJoin(u.caps.domain_types, ",",
                                  [](std::string* o, DomainType t) {
                                    absl::StrAppend(o, DomainTypeName(t));
                                  }),
                    " reserved=",
                    absl::StrJoin(u.caps.reserved_regions, ",",
                                  [](std::string* o, const IovaRange& r) {
                                    absl::StrAppend(o, r.start, "+", r.size);
                                  }),
                    " release=", u.release_domain, "\n");
  }
  for (const DomainRecord& d : s.domains) {
    absl::StrAppend(&out, "domain ", d.id, " ", d.unit, " ", DomainTypeName(d.type), " owner=",
                    d.owner, " core=", d.core_owned, "\n");
  }
  for (const DeviceRecord& d : s.devices) {
    absl::StrAppend(&out, "device ", d.name, " ", d.unit, " rid=", d.rid, " aliases=",
                    absl::StrJoin(d.alias_rids, ","), " group=", d.group, " seq=", d.probe_seq,
                    " ", DriverBindingName(d.binding), "\n");
  }
  for (const GroupRecord& g : s.groups) {
    absl::StrAppend(&out, "group ", g.id, " ", g.unit, " domain=", g.domain, " default=",
                    g.default_domain, " blocking=", g.blocking_domain, " owner=", g.owner,
                    " cnt=", g.owner_cnt, " claimed=", g.group_claimed, " devices=[",
                    absl::StrJoin(g.claimed_devices, "|"), "] attached=[",
                    absl::StrJoin(g.attached_devices, "|"), "] lease=", g.lease_expiry_unix_nanos,
                    "/", g.lease_ttl_nanos, "\n");
  }
  for (const MappingRecord& m : s.mappings) {
    absl::StrAppend(&out, "mapping ", m.domain, " iova=", m.mapping.iova, " paddr=",
                    m.mapping.paddr, " size=", m.mapping.size, " prot=", m.mapping.prot, "\n");
  }
  return out;
}

UnitRecord Unit(const std::string& name, DomainId release) {
  UnitRecord unit;
  unit.name = name;
  unit.caps.pgsize_bitmap = kPage4K | kPage2M;
  unit.caps.iova_bits = 39;
  unit.caps.max_rids = 4096;
  unit.caps.domain_types = {DomainType::kBlocked, DomainType::kUnmanaged, DomainType::kDmaFq};
  unit.caps.reserved_regions = {{0xfee00000, 0x100000}, {0x1000, 0x2000}};
  unit.release_domain = release;
  return unit;
}

DomainRecord Domain(DomainId id, DomainType type = DomainType::kUnmanaged,
                    const std::string& owner = "vmm-a") {
  return DomainRecord{id, "u0", type, owner, owner.empty()};
}

DeviceRecord Device(const std::string& name, Rid rid, GroupId group,
                    std::vector<Rid> aliases = {}) {
  DeviceRecord device;
  device.name = name;
  device.unit = "u0";
  device.rid = rid;
  device.alias_rids = std::move(aliases);
  device.group = group;
  device.probe_seq = rid;
  device.binding = DriverBinding::kUserOwned;
  return device;
}

GroupRecord Group(GroupId id, DomainId domain) {
  GroupRecord group;
  group.id = id;
  group.unit = "u0";
  group.domain = domain;
  group.default_domain = domain;
  group.blocking_domain = domain + 1;
  group.owner = "uid:1000/vm-7";
  group.owner_cnt = 2;
  group.group_claimed = false;
  // Names with the encoding's separators in them, an empty one, and non-ASCII bytes.
  group.claimed_devices = {"0000:03:00.0", "12:ab", "", "dev\xc3\xa9,x"};
  group.attached_devices = {"0000:03:00.0", "3:a:b"};
  group.lease_expiry_unix_nanos = 1700000000123456789;
  group.lease_ttl_nanos = 30000000000;
  return group;
}

MappingRecord MappingOf(DomainId domain, uint64_t iova, uint64_t size = kPage4K) {
  return MappingRecord{domain, Mapping{iova, iova ^ 0x8000000000000000, size, kProtRead}};
}

RequestRecord Request(const std::string& id, int64_t time) {
  RequestRecord record;
  record.request_id = id;
  record.method = "AttachGroup";
  record.fingerprint = std::string("\x00\xff\x10hash", 7);  // binary
  record.result_ref = 42;
  record.time_unix_nanos = time;
  return record;
}

// A batch touching every record kind.
StoreBatch FullBatch() {
  StoreBatch batch;
  batch.put_units = {Unit("u0", 1), Unit("u1", 2)};
  batch.put_domains = {Domain(1, DomainType::kBlocked, ""), Domain(2, DomainType::kBlocked, ""),
                       Domain(3, DomainType::kIdentity, ""), Domain(4, DomainType::kBlocked, ""),
                       Domain(5), Domain(~uint64_t{0} - 1, DomainType::kDma)};
  batch.put_devices = {Device("0000:03:00.0", 0x300, 7, {0x301, 0x302}), Device("b", 0x10, 8),
                       Device("a", 0x20, 8)};
  batch.put_groups = {Group(7, 3), Group(8, 3)};
  batch.put_mappings = {MappingOf(5, 0x1000), MappingOf(5, kPage2M, kPage2M),
                        MappingOf(5, 0xfffffffffffff000), MappingOf(~uint64_t{0} - 1, 0x2000)};
  batch.next_group_id = 9;
  batch.next_domain_id = 6;
  return batch;
}

class StateStoreConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  StateStoreConformanceTest() : store_(GetParam()) {}

  // Commits `batch` to the store under test and to the reference.
  void Commit(const StoreBatch& batch) {
    ASSERT_OK(store_->Commit(batch));
    ASSERT_OK(reference_.Commit(batch));
  }
  std::string Loaded() {
    absl::StatusOr<StoreSnapshot> snapshot = store_->Load();
    EXPECT_TRUE(snapshot.ok()) << snapshot.status();
    return snapshot.ok() ? Dump(*snapshot) : "";
  }
  std::string Expected() { return Dump(reference_.Load().value()); }

  TestStateStore store_;
  InMemoryStateStore reference_;
};

TEST_P(StateStoreConformanceTest, ANewStoreIsEmpty) {
  ASSERT_OK_AND_ASSIGN(StoreSnapshot snapshot, store_->Load());
  EXPECT_TRUE(snapshot.empty());
  EXPECT_THAT(snapshot.mappings, IsEmpty());
  EXPECT_EQ(snapshot.next_group_id, 1u);
  EXPECT_EQ(snapshot.next_domain_id, 1u);
  ASSERT_OK(store_->Commit(StoreBatch{}));  // an empty batch is fine
  EXPECT_EQ(Loaded(), Expected());
  EXPECT_EQ(store_->kind(), GetParam());
}

TEST_P(StateStoreConformanceTest, EveryFieldRoundTripsAndLoadIsSorted) {
  Commit(FullBatch());
  const std::string loaded = Loaded();
  EXPECT_EQ(loaded, Expected());
  // Sorted by key as unsigned ids: the huge domain id comes last, its mappings too.
  EXPECT_LT(loaded.find("domain 5 "), loaded.find(absl::StrCat("domain ", ~uint64_t{0} - 1)));
  EXPECT_LT(loaded.find("device 0000:03:00.0"), loaded.find("device a "));
  EXPECT_LT(loaded.find("device a "), loaded.find("device b "));
  EXPECT_LT(loaded.find("iova=2097152 "), loaded.find("iova=18446744073709547520 "));
  EXPECT_THAT(loaded, ::testing::HasSubstr("devices=[0000:03:00.0|12:ab||dev\xc3\xa9,x]"));
}

TEST_P(StateStoreConformanceTest, PutsReplaceAndDeletesComeBeforePuts) {
  Commit(FullBatch());
  StoreBatch batch;
  // Deleted and put again in one batch: the put wins, whatever the order in the vectors.
  batch.put_domains = {Domain(5, DomainType::kUnmanaged, "vmm-b")};
  batch.delete_domains = {5};
  batch.put_devices = {Device("a", 0x20, 9, {0x21})};
  batch.delete_devices = {"a", "b"};
  batch.put_groups = {Group(8, 4)};
  batch.delete_groups = {8, 7};
  batch.put_mappings = {MappingOf(5, 0x1000, 2 * kPage4K)};
  batch.delete_mappings = {{5, 0x1000}};
  Commit(batch);
  const std::string loaded = Loaded();
  EXPECT_EQ(loaded, Expected());
  EXPECT_THAT(loaded, ::testing::HasSubstr("domain 5 u0 UNMANAGED owner=vmm-b"));
  EXPECT_THAT(loaded, ::testing::HasSubstr("device a u0 rid=32 aliases=33 group=9"));
  EXPECT_THAT(loaded, ::testing::Not(::testing::HasSubstr("device b ")));
  EXPECT_THAT(loaded, ::testing::Not(::testing::HasSubstr("group 7 ")));
  // Domain 5's other mappings went with the domain delete; the put one is back.
  EXPECT_THAT(loaded, ::testing::HasSubstr("mapping 5 iova=4096 "));
  EXPECT_THAT(loaded, ::testing::Not(::testing::HasSubstr("mapping 5 iova=2097152")));
}

TEST_P(StateStoreConformanceTest, ADomainDeleteDropsItsMappingsAndAGroupDeleteKeepsDevices) {
  Commit(FullBatch());
  StoreBatch batch;
  batch.delete_domains = {5};
  batch.delete_groups = {7};
  Commit(batch);
  const std::string loaded = Loaded();
  EXPECT_EQ(loaded, Expected());
  EXPECT_THAT(loaded, ::testing::Not(::testing::HasSubstr("mapping 5 ")));
  EXPECT_THAT(loaded, ::testing::HasSubstr(absl::StrCat("mapping ", ~uint64_t{0} - 1)));
  EXPECT_THAT(loaded, ::testing::HasSubstr("device 0000:03:00.0 u0 rid=768 aliases=769,770 group=7"));
  // Deleting what is not there is fine.
  StoreBatch absent;
  absent.delete_domains = {77};
  absent.delete_devices = {"nope"};
  absent.delete_groups = {77};
  absent.delete_mappings = {{77, 0}};
  Commit(absent);
  EXPECT_EQ(Loaded(), loaded);
}

TEST_P(StateStoreConformanceTest, IdCountersNeverDecrease) {
  StoreBatch batch;
  batch.next_group_id = 10;
  batch.next_domain_id = 20;
  Commit(batch);
  batch.next_group_id = 5;   // lower: ignored
  batch.next_domain_id = 0;  // unchanged
  Commit(batch);
  ASSERT_OK_AND_ASSIGN(StoreSnapshot snapshot, store_->Load());
  EXPECT_EQ(snapshot.next_group_id, 10u);
  EXPECT_EQ(snapshot.next_domain_id, 20u);
  batch.next_group_id = 11;
  Commit(batch);
  EXPECT_EQ(Loaded(), Expected());
  EXPECT_EQ(store_->Load()->next_group_id, 11u);
}

TEST_P(StateStoreConformanceTest, RequestRecordsFindSetAndExpire) {
  StoreBatch batch;
  batch.put_domains = {Domain(5)};
  batch.request = Request("req-1", 1000);
  Commit(batch);
  StoreBatch only_request;  // a request alone is a non-empty batch
  only_request.request = Request("req-2", 2000);
  Commit(only_request);
  EXPECT_EQ(Loaded(), Expected());  // requests are not part of the snapshot

  ASSERT_OK_AND_ASSIGN(std::optional<RequestRecord> found, store_->FindRequest("req-1"));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->request_id, "req-1");
  EXPECT_EQ(found->method, "AttachGroup");
  EXPECT_EQ(found->fingerprint, std::string("\x00\xff\x10hash", 7));
  EXPECT_EQ(found->result_ref, 42u);
  EXPECT_EQ(found->time_unix_nanos, 1000);
  EXPECT_FALSE(found->response.has_value());
  ASSERT_OK_AND_ASSIGN(std::optional<RequestRecord> none, store_->FindRequest("req-9"));
  EXPECT_FALSE(none.has_value());

  const std::string response("\x08\x00\x12\x03" "abc", 7);
  ASSERT_OK(store_->SetRequestResponse("req-1", response));
  ASSERT_OK(store_->SetRequestResponse("req-2", ""));
  EXPECT_ERROR(store_->SetRequestResponse("req-9", "x"), kNotFound, "REQUEST_NOT_FOUND");
  ASSERT_OK_AND_ASSIGN(found, store_->FindRequest("req-1"));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->response, response);
  ASSERT_OK_AND_ASSIGN(found, store_->FindRequest("req-2"));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->response, "");  // empty, not absent

  // A put of the same id replaces the record.
  StoreBatch again;
  again.request = Request("req-2", 3000);
  Commit(again);
  ASSERT_OK_AND_ASSIGN(found, store_->FindRequest("req-2"));
  EXPECT_EQ(found->time_unix_nanos, 3000);
  EXPECT_FALSE(found->response.has_value());

  // Strictly older than the cutoff goes.
  EXPECT_EQ(store_->ExpireRequests(1000).value(), 0u);
  EXPECT_EQ(store_->ExpireRequests(1001).value(), 1u);
  EXPECT_FALSE(store_->FindRequest("req-1")->has_value());
  EXPECT_TRUE(store_->FindRequest("req-2")->has_value());
  EXPECT_EQ(store_->ExpireRequests(int64_t{1} << 62).value(), 1u);
  EXPECT_FALSE(store_->FindRequest("req-2")->has_value());
  EXPECT_EQ(Loaded(), Expected());  // the state itself is untouched
}

TEST_P(StateStoreConformanceTest, AnInjectedWriteFailureLeavesNothing) {
  Commit(FullBatch());
  FaultInjector injector;
  FaultInjectingStateStore faulty(store_.get(), &injector);
  EXPECT_EQ(faulty.kind(), store_->kind());
  EXPECT_EQ(faulty.durability(), store_->durability());
  FaultSpec spec;
  spec.point = "store.write";
  spec.n = 2;
  spec.code = absl::StatusCode::kResourceExhausted;
  ASSERT_OK(injector.Add(spec).status());
  ASSERT_OK(faulty.Commit(StoreBatch{}));  // empty batches do not hit the point
  StoreBatch first;
  first.put_devices = {Device("z", 0x99, 7)};
  ASSERT_OK(faulty.Commit(first));  // hit 1
  ASSERT_OK(reference_.Commit(first));
  const std::string before = Loaded();
  EXPECT_EQ(before, Expected());

  StoreBatch batch;
  batch.put_domains = {Domain(9)};
  batch.delete_domains = {5};
  batch.request = Request("req-1", 1);
  batch.next_domain_id = 10;
  const absl::Status refused = faulty.Commit(batch);  // hit 2 fires
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
  EXPECT_EQ(ErrorReason(refused), "STORE_WRITE_FAILED");
  EXPECT_EQ(GetErrorMetadata(refused)["point"], "store.write");
  EXPECT_EQ(Loaded(), before);
  EXPECT_FALSE(store_->FindRequest("req-1")->has_value());

  ASSERT_OK(faulty.Commit(batch));  // hit 3 passes again
  ASSERT_OK(reference_.Commit(batch));
  EXPECT_EQ(Loaded(), Expected());
  EXPECT_NE(Loaded(), before);
}

TEST_P(StateStoreConformanceTest, ReopenSeesEverything) {
  Commit(FullBatch());
  StoreBatch batch;
  batch.delete_mappings = {{5, 0x1000}};
  batch.request = Request("req-1", 5);
  batch.next_group_id = 12;
  Commit(batch);
  ASSERT_OK(store_->SetRequestResponse("req-1", "done"));
  const std::string before = Loaded();
  store_.Reopen();
  EXPECT_EQ(Loaded(), before);
  EXPECT_EQ(Loaded(), Expected());
  ASSERT_OK_AND_ASSIGN(std::optional<RequestRecord> found, store_->FindRequest("req-1"));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->response, "done");
  // And it goes on from there.
  StoreBatch more;
  more.put_domains = {Domain(6)};
  Commit(more);
  store_.Reopen();
  EXPECT_EQ(Loaded(), Expected());
}

TEST_P(StateStoreConformanceTest, ConcurrentCommitsAllLand) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t] {
      for (int i = 0; i < kPerThread; ++i) {
        StoreBatch batch;
        const DomainId id = 1 + t * kPerThread + i;
        batch.put_domains = {Domain(id)};
        batch.put_mappings = {MappingOf(id, 0x1000)};
        batch.next_domain_id = id + 1;
        EXPECT_OK(store_->Commit(batch));
        EXPECT_OK(store_->Load().status());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_OK_AND_ASSIGN(StoreSnapshot snapshot, store_->Load());
  EXPECT_EQ(snapshot.domains.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(snapshot.mappings.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(snapshot.next_domain_id, static_cast<DomainId>(kThreads * kPerThread + 1));
}

INSTANTIATE_TEST_SUITE_P(Stores, StateStoreConformanceTest,
                         ::testing::ValuesIn(StoreKindsUnderTest()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace test
}  // namespace iommud

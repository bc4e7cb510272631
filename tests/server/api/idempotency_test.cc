// IdempotencyKeeper: a retried request id gets the original reply and the registry changes once;
// reused ids, invalid ids, concurrent duplicates, failed requests, the window, a reply lost between
// the commit and its storing, and a restart over the SQLite file.
#include "server/api/idempotency.h"

#include <prometheus/registry.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "core/backend/backend_factory.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/registry.h"
#include "core/store/call_context.h"
#include "core/store/in_memory_state_store.h"
#include "core/store/sqlite_state_store.h"
#include "gtest/gtest.h"
#include "server/api/rebuilt_replies.h"
#include "server/api/request_handlers.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using iommu::v1::AllocDomainRequest;
using iommu::v1::ClaimOwnershipRequest;
using iommu::v1::Domain;
using iommu::v1::Group;

// Forwards to a store; can drop SetRequestResponse (the daemon "dies" before storing the reply),
// hold the replies the keeper stores without waiting (until ReleaseHeld), and counts what reached
// it.
class SpyStore : public StateStore {
 public:
  explicit SpyStore(StateStore* store) : store_(store) {}
  absl::string_view kind() const override { return store_->kind(); }
  StoreDurability durability() const override { return store_->durability(); }
  absl::Status Commit(const StoreBatch& batch) override {
    if (batch.request.has_value()) {
      ++request_commits;
      if (!batch.put_domains.empty()) ++request_commits_with_domain;
    }
    return store_->Commit(batch);
  }
  absl::StatusOr<StoreSnapshot> Load() override { return store_->Load(); }
  absl::StatusOr<std::optional<RequestRecord>> FindRequest(absl::string_view id) override {
    return store_->FindRequest(id);
  }
  absl::Status SetRequestResponse(absl::string_view id, const std::string& response) override {
    if (drop_replies) return absl::OkStatus();
    return store_->SetRequestResponse(id, response);
  }
  absl::StatusOr<uint64_t> ExpireRequests(int64_t cutoff) override {
    return store_->ExpireRequests(cutoff);
  }
  void SetRequestResponseAsync(std::string id, std::string response,
                               std::function<void(absl::Status)> done) override {
    if (!hold_replies) {
      StateStore::SetRequestResponseAsync(std::move(id), std::move(response), std::move(done));
      return;
    }
    held.push_back({std::move(id), std::move(response), std::move(done)});
  }
  // Stores the held replies and tells the keeper.
  void ReleaseHeld() {
    for (Held& reply : held) reply.done(store_->SetRequestResponse(reply.id, reply.response));
    held.clear();
  }

  struct Held {
    std::string id, response;
    std::function<void(absl::Status)> done;
  };
  bool hold_replies = false;
  std::vector<Held> held;
  bool drop_replies = false;
  int request_commits = 0;
  int request_commits_with_domain = 0;  // the record in the batch of a domain's creation

 private:
  StateStore* const store_;
};

class IdempotencyTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(std::make_unique<InMemoryStateStore>()); }

  // A registry over `store` with one unit "u0" and one device "d0" (when the store is empty).
  void Open(std::unique_ptr<StateStore> store) {
    keeper_.reset();
    handlers_.reset();
    registry_.reset();
    spy_.reset();
    store_ = std::move(store);
    spy_ = std::make_unique<SpyStore>(store_.get());
    ASSERT_OK_AND_ASSIGN(backend_, CreateBackend("software"));
    RegistryOptions options;
    options.backend = backend_.get();
    options.store = spy_.get();
    options.clock = &clock_;
    ASSERT_OK_AND_ASSIGN(registry_, Registry::Create(options));
    ASSERT_OK_AND_ASSIGN(RecoveryReport report, registry_->Recover());
    if (registry_->ListUnits().empty()) {
      UnitCaps caps;
      caps.pgsize_bitmap = kPage4K;
      caps.iova_bits = 32;
      ASSERT_OK(registry_->AddUnit("u0", caps));
      ProbeRequest probe;
      probe.unit = "u0";
      probe.device = "d0";
      probe.rid = 0x10;
      ASSERT_OK(registry_->ProbeDevice(probe).status());
    }
    handlers_ = std::make_unique<RequestHandlers>(registry_.get());
    keeper_ = std::make_unique<IdempotencyKeeper>(spy_.get(), &clock_, absl::Hours(1), &metrics_);
  }

  // `request` through the keeper as the service runs it: `handler` (counted in handler_runs_),
  // replies rebuilt by RebuildReply.
  template <typename Request, typename Response>
  absl::Status Run(absl::string_view method, const std::string& principal, const Request& request,
                   Response* reply,
                   absl::Status (RequestHandlers::*handler)(const Request&, Response*,
                                                            CallContext*) const) {
    return keeper_->Run<Request, Response>(
        method, principal, request, reply,
        [&](const Request& r, Response* out, CallContext* context) {
          ++handler_runs_;
          return (handlers_.get()->*handler)(r, out, context);
        },
        [&](uint64_t result_ref, Response* out) {
          return RebuildReply(*handlers_, request, result_ref, out);
        });
  }

  absl::Status Alloc(const std::string& principal, const AllocDomainRequest& request,
                     Domain* reply) {
    return Run("AllocDomain", principal, request, reply, &RequestHandlers::AllocDomain);
  }

  absl::Status Claim(const ClaimOwnershipRequest& request, Group* reply) {
    return Run("ClaimOwnership", "uid:1", request, reply, &RequestHandlers::ClaimOwnership);
  }

  static AllocDomainRequest AllocRequest(const std::string& id, const std::string& owner = "vm") {
    AllocDomainRequest request;
    request.set_unit("u0");
    request.set_type(iommu::v1::DOMAIN_TYPE_UNMANAGED);
    request.set_owner(owner);
    request.set_request_id(id);
    return request;
  }

  size_t UserDomains() {
    size_t n = 0;
    for (const DomainInfo& domain : registry_->ListDomains()) n += domain.owner.empty() ? 0 : 1;
    return n;
  }

  double Outcome(const std::string& outcome) {
    for (const prometheus::MetricFamily& family : metrics_.Collect()) {
      if (family.name != "iommud_request_ids_total") continue;
      for (const prometheus::ClientMetric& metric : family.metric) {
        for (const prometheus::ClientMetric::Label& label : metric.label) {
          if (label.value == outcome) return metric.counter.value;
        }
      }
    }
    return -1;
  }

  GroupId Group0() {
    absl::StatusOr<DeviceInfo> device = registry_->GetDevice("d0");
    return device.ok() ? device->group : 0;
  }

  ManualClock clock_;
  prometheus::Registry metrics_;
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<SpyStore> spy_;
  std::unique_ptr<IommuBackend> backend_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<RequestHandlers> handlers_;
  std::unique_ptr<IdempotencyKeeper> keeper_;
  int handler_runs_ = 0;
};

TEST_F(IdempotencyTest, ARetryGetsTheOriginalReplyAndChangesNothingMore) {
  Domain first, retry;
  ASSERT_OK(Alloc("uid:1", AllocRequest("alloc-1"), &first));
  ASSERT_OK(Alloc("uid:1", AllocRequest("alloc-1"), &retry));
  EXPECT_EQ(handler_runs_, 1);
  EXPECT_EQ(UserDomains(), 1u);
  EXPECT_EQ(retry.SerializeAsString(), first.SerializeAsString());
  EXPECT_EQ(Outcome("first"), 1);
  EXPECT_EQ(Outcome("replayed"), 1);
  // The record went in with the change, in the same commit.
  EXPECT_EQ(spy_->request_commits, 1);
}

TEST_F(IdempotencyTest, RequestsWithoutAnIdAlwaysRun) {
  Domain a, b;
  ASSERT_OK(Alloc("uid:1", AllocRequest(""), &a));
  ASSERT_OK(Alloc("uid:1", AllocRequest(""), &b));
  EXPECT_EQ(handler_runs_, 2);
  EXPECT_NE(a.id(), b.id());
  EXPECT_EQ(spy_->request_commits, 0);
}

TEST_F(IdempotencyTest, IdsArePerPrincipal) {
  Domain mine, theirs;
  ASSERT_OK(Alloc("uid:1", AllocRequest("same"), &mine));
  ASSERT_OK(Alloc("uid:2", AllocRequest("same"), &theirs));
  EXPECT_EQ(handler_runs_, 2);
  EXPECT_NE(mine.id(), theirs.id());
}

TEST_F(IdempotencyTest, AnIdReusedForOtherFieldsOrAnotherMethodIsRefused) {
  Domain domain;
  ASSERT_OK(Alloc("uid:1", AllocRequest("r1", "vm-a"), &domain));
  Domain other;
  absl::Status reused = Alloc("uid:1", AllocRequest("r1", "vm-b"), &other);
  EXPECT_EQ(reused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorReason(reused), "REQUEST_ID_REUSED");

  ClaimOwnershipRequest claim;
  claim.set_group_id(Group0());
  claim.set_owner("vm-a");
  claim.set_request_id("r1");
  Group group;
  absl::Status other_method = Claim(claim, &group);
  EXPECT_EQ(ErrorReason(other_method), "REQUEST_ID_REUSED");
  EXPECT_EQ(GetErrorMetadata(other_method)["earlier_method"], "AllocDomain");
  EXPECT_EQ(handler_runs_, 1);
  EXPECT_EQ(UserDomains(), 1u);
  ASSERT_OK_AND_ASSIGN(GroupInfo unchanged, registry_->GetGroup(Group0()));
  EXPECT_TRUE(unchanged.owner.empty());
  EXPECT_EQ(Outcome("reused"), 2);
}

TEST_F(IdempotencyTest, InvalidIdsAreRefusedAndNothingRuns) {
  for (const std::string& id :
       {std::string(kMaxRequestIdBytes + 1, 'x'), std::string("has space"),
        std::string("tab\there"), std::string("nul\0x", 5), std::string("\xc3\xa9")}) {
    Domain domain;
    absl::Status status = Alloc("uid:1", AllocRequest(id), &domain);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << id;
    EXPECT_EQ(ErrorReason(status), "INVALID_REQUEST_ID") << id;
  }
  EXPECT_EQ(handler_runs_, 0);
  EXPECT_EQ(UserDomains(), 0u);
  Domain longest;
  EXPECT_OK(Alloc("uid:1", AllocRequest(std::string(kMaxRequestIdBytes, '~')), &longest));
}

TEST_F(IdempotencyTest, AFailedRequestLeavesNoTraceAndItsRetryRuns) {
  Group group;
  ClaimOwnershipRequest other;
  other.set_group_id(Group0());
  other.set_owner("vm-other");
  ASSERT_OK(Claim(other, &group));

  ClaimOwnershipRequest mine;
  mine.set_group_id(Group0());
  mine.set_owner("vm-mine");
  mine.set_request_id("claim-1");
  absl::Status busy = Claim(mine, &group);
  EXPECT_EQ(ErrorReason(busy), "GROUP_IN_USE") << busy;
  EXPECT_EQ(spy_->request_commits, 0);

  ASSERT_OK(registry_->ReleaseOwnership(Group0(), "vm-other"));
  ASSERT_OK(Claim(mine, &group));  // the same id runs now
  EXPECT_EQ(group.owner(), "vm-mine");
  EXPECT_EQ(handler_runs_, 3);
}

TEST_F(IdempotencyTest, ADuplicateWhileTheFirstRunsIsAbortedAsInProgress) {
  absl::Notification entered, proceed;
  AllocDomainRequest request = AllocRequest("slow");
  std::thread first([&] {
    Domain domain;
    EXPECT_OK((keeper_->Run<AllocDomainRequest, Domain>(
        "AllocDomain", "uid:1", request, &domain,
        [&](const AllocDomainRequest& r, Domain* out, CallContext* context) {
          entered.Notify();
          proceed.WaitForNotification();
          return handlers_->AllocDomain(r, out, context);
        },
        [](uint64_t, Domain*) { return absl::OkStatus(); })));
  });
  entered.WaitForNotification();
  Domain duplicate;
  absl::Status status = Alloc("uid:1", request, &duplicate);
  EXPECT_EQ(status.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(ErrorReason(status), "REQUEST_IN_PROGRESS");
  proceed.Notify();
  first.join();
  ASSERT_OK(Alloc("uid:1", request, &duplicate));  // answered from the record now
  EXPECT_EQ(handler_runs_, 0);
  EXPECT_EQ(UserDomains(), 1u);
  EXPECT_EQ(Outcome("in_progress"), 1);
}

// The issue #13 failure: the request record travelled in a thread-local, so a registry call made
// on another thread than the one that received the request committed its change without the
// record (the keeper then stored the record alone, in a second transaction, and a crash between
// the two would run the retry again). With the record in the CallContext it goes into the change's
// own batch, exactly once, whatever thread commits.
TEST_F(IdempotencyTest, TheRecordIsCommittedWithTheChangeWhenTheRegistryCallRunsOnAnotherThread) {
  AllocDomainRequest request = AllocRequest("elsewhere");
  std::thread::id handler_thread;
  std::thread::id commit_thread;
  auto on_another_thread = [&](const AllocDomainRequest& r, Domain* out,
                               CallContext* context) -> absl::Status {
    ++handler_runs_;
    handler_thread = std::this_thread::get_id();
    absl::Status status;
    std::thread worker([&] {
      commit_thread = std::this_thread::get_id();
      status = handlers_->AllocDomain(r, out, context);
    });
    worker.join();
    return status;
  };
  auto rebuild = [&](uint64_t result_ref, Domain* out) {
    return RebuildReply(*handlers_, request, result_ref, out);
  };
  Domain reply;
  ASSERT_OK((keeper_->Run<AllocDomainRequest, Domain>("AllocDomain", "uid:1", request, &reply,
                                                     on_another_thread, rebuild)));
  EXPECT_NE(handler_thread, commit_thread);
  EXPECT_EQ(spy_->request_commits, 1);              // stored exactly once ...
  EXPECT_EQ(spy_->request_commits_with_domain, 1);  // ... in the domain's own transaction
  absl::StatusOr<std::optional<RequestRecord>> found =
      spy_->FindRequest(absl::StrCat(5, ":", "uid:1", ":", "elsewhere"));
  ASSERT_OK(found.status());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->result_ref, reply.id());
  // A retry is answered from that record: nothing runs, nothing more is created.
  Domain again;
  ASSERT_OK((keeper_->Run<AllocDomainRequest, Domain>("AllocDomain", "uid:1", request, &again,
                                                     on_another_thread, rebuild)));
  EXPECT_EQ(handler_runs_, 1);
  EXPECT_EQ(again.id(), reply.id());
  EXPECT_EQ(UserDomains(), 1u);
  EXPECT_EQ(spy_->request_commits, 1);
}

TEST_F(IdempotencyTest, AnErrorAfterAChangeIsRememberedAndReplayed) {
  AllocDomainRequest request = AllocRequest("half");
  auto half_done = [&](const AllocDomainRequest&, Domain*, CallContext* context) -> absl::Status {
    ++handler_runs_;
    StoreBatch batch;  // what a registry call that changed something and then failed commits
    batch.request = *context->pending_record();
    RETURN_IF_ERROR(spy_->Commit(batch));
    context->MarkRecordCommitted();
    return Error(absl::StatusCode::kUnavailable, "BACKEND_FAILED", "the second step failed",
                 {{"step", "2"}});
  };
  auto no_rebuild = [](uint64_t, Domain*) { return absl::InternalError("not expected"); };
  Domain reply;
  absl::Status first = keeper_->Run<AllocDomainRequest, Domain>("AllocDomain", "uid:1", request,
                                                                &reply, half_done, no_rebuild);
  absl::Status retry = keeper_->Run<AllocDomainRequest, Domain>("AllocDomain", "uid:1", request,
                                                                &reply, half_done, no_rebuild);
  EXPECT_EQ(handler_runs_, 1);
  EXPECT_EQ(retry.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorReason(retry), "BACKEND_FAILED");
  EXPECT_EQ(retry.message(), first.message());
  EXPECT_EQ(GetErrorMetadata(retry)["step"], "2");
}

TEST_F(IdempotencyTest, RecordsOutsideTheWindowAreForgottenAndExpired) {
  Domain first, later;
  ASSERT_OK(Alloc("uid:1", AllocRequest("old"), &first));
  clock_.Advance(absl::Minutes(59));
  ASSERT_OK(Alloc("uid:1", AllocRequest("old"), &later));
  EXPECT_EQ(later.id(), first.id());
  ASSERT_OK_AND_ASSIGN(uint64_t expired, keeper_->ExpireNow());
  EXPECT_EQ(expired, 0u);

  clock_.Advance(absl::Minutes(2));
  ASSERT_OK(Alloc("uid:1", AllocRequest("old"), &later));  // a new request now
  EXPECT_NE(later.id(), first.id());
  EXPECT_EQ(UserDomains(), 2u);
  clock_.Advance(absl::Hours(2));
  ASSERT_OK_AND_ASSIGN(expired, keeper_->ExpireNow());
  EXPECT_EQ(expired, 1u);
}

TEST_F(IdempotencyTest, AReplyLostBeforeItWasStoredIsRebuiltFromTheState) {
  spy_->drop_replies = true;  // the daemon dies after the commit, before storing the reply
  Domain first;
  ASSERT_OK(Alloc("uid:1", AllocRequest("lost"), &first));
  spy_->drop_replies = false;
  Domain retry;
  ASSERT_OK(Alloc("uid:1", AllocRequest("lost"), &retry));
  EXPECT_EQ(handler_runs_, 1);
  EXPECT_EQ(retry.id(), first.id());
  EXPECT_EQ(retry.unit(), "u0");
  EXPECT_EQ(retry.owner(), first.owner());
  EXPECT_EQ(Outcome("rebuilt"), 1);
  Domain again;  // the rebuilt reply was stored
  ASSERT_OK(Alloc("uid:1", AllocRequest("lost"), &again));
  EXPECT_EQ(again.SerializeAsString(), retry.SerializeAsString());
  EXPECT_EQ(Outcome("replayed"), 1);
}

// The reply is stored after the call is answered, without waiting for its commit (one commit per
// call, not two): a retry before it is stored gets the reply from the keeper's memory, not a
// REQUEST_IN_PROGRESS or a rebuild; a retry after it gets the stored one.
TEST_F(IdempotencyTest, ARetryBeforeTheReplyIsStoredIsAnsweredFromMemory) {
  spy_->hold_replies = true;
  Domain first, early, late;
  ASSERT_OK(Alloc("uid:1", AllocRequest("held"), &first));
  ASSERT_EQ(spy_->held.size(), 1u);  // answered, its reply not stored yet
  ASSERT_OK(Alloc("uid:1", AllocRequest("held"), &early));
  EXPECT_EQ(early.SerializeAsString(), first.SerializeAsString());
  EXPECT_ERROR(Alloc("uid:1", AllocRequest("held", "other"), &early), kInvalidArgument,
               "REQUEST_ID_REUSED");
  EXPECT_EQ(Outcome("replayed"), 1);
  spy_->ReleaseHeld();
  ASSERT_OK(Alloc("uid:1", AllocRequest("held"), &late));  // from the store now
  EXPECT_EQ(late.SerializeAsString(), first.SerializeAsString());
  EXPECT_EQ(handler_runs_, 1);
  EXPECT_EQ(UserDomains(), 1u);
  EXPECT_EQ(Outcome("replayed"), 2);
  EXPECT_EQ(Outcome("rebuilt"), 0);  // the stored reply was there
  EXPECT_EQ(Outcome("in_progress"), 0);
}

TEST_F(IdempotencyTest, ARebuiltReleaseReplyStillTellsOfTheLeakedAttachment) {
  ASSERT_OK(registry_->ClaimOwnership(Group0(), "vm").status());
  iommu::v1::ReleaseDeviceRequest release;
  release.set_device("d0");
  release.set_request_id("unplug-1");
  release.set_force(true);  // an unforced release of a device in use is refused (DEVICE_IN_USE)
  auto run_release = [&](iommu::v1::ReleaseDeviceResponse* reply) {
    return Run("ReleaseDevice", "uid:1", release, reply, &RequestHandlers::ReleaseDevice);
  };
  spy_->drop_replies = true;
  iommu::v1::ReleaseDeviceResponse first;
  ASSERT_OK(run_release(&first));
  EXPECT_TRUE(first.leaked_attachment());  // released while owned
  spy_->drop_replies = false;
  iommu::v1::ReleaseDeviceResponse retry;
  ASSERT_OK(run_release(&retry));  // the device is gone: a re-run would be DEVICE_NOT_FOUND
  EXPECT_EQ(handler_runs_, 1);
  EXPECT_TRUE(retry.leaked_attachment());
  EXPECT_EQ(Outcome("rebuilt"), 1);
}

TEST_F(IdempotencyTest, ASuccessThatChangedNothingIsRememberedToo) {
  Domain domain;
  ASSERT_OK(Alloc("uid:1", AllocRequest(""), &domain));
  iommu::v1::UnmapRequest unmap;  // nothing is mapped there: a success that changes nothing
  unmap.set_domain_id(domain.id());
  unmap.set_iova(0x10000);
  unmap.set_size(0x1000);
  unmap.set_owner("vm");
  unmap.set_request_id("unmap-1");
  auto run_unmap = [&](iommu::v1::UnmapResponse* reply) {
    return Run("Unmap", "uid:1", unmap, reply, &RequestHandlers::Unmap);
  };
  iommu::v1::UnmapResponse first;
  ASSERT_OK(run_unmap(&first));
  EXPECT_EQ(first.bytes_unmapped(), 0u);
  EXPECT_EQ(spy_->request_commits, 1);  // the record alone

  ASSERT_OK(registry_->Map(domain.id(), 0x10000, 0x80000, 0x1000, kProtRead, "vm").status());
  iommu::v1::UnmapResponse retry;
  ASSERT_OK(run_unmap(&retry));  // replayed, not run: the new mapping stays
  EXPECT_EQ(retry.bytes_unmapped(), 0u);
  EXPECT_EQ(handler_runs_, 2);  // the Alloc and the first Unmap
  ASSERT_OK_AND_ASSIGN(std::vector<Mapping> mappings, registry_->ListMappings(domain.id()));
  EXPECT_EQ(mappings.size(), 1u);
}

TEST_F(IdempotencyTest, RecordsSurviveARestartOverTheSqliteFile) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/idem-", getpid());
  ASSERT_EQ(system(absl::StrCat("rm -rf ", dir, " && mkdir -p ", dir).c_str()), 0);
  SqliteStateStoreOptions options;
  options.path = dir + "/state.db";
  options.create_if_missing = true;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SqliteStateStore> store, SqliteStateStore::Open(options));
  Open(std::move(store));
  Domain first;
  ASSERT_OK(Alloc("uid:1", AllocRequest("durable"), &first));

  // "Restart": a new store object on the same file, a new registry recovered from it.
  keeper_.reset();
  handlers_.reset();
  registry_.reset();
  spy_.reset();
  store_.reset();
  options.create_if_missing = false;
  ASSERT_OK_AND_ASSIGN(store, SqliteStateStore::Open(options));
  Open(std::move(store));
  handler_runs_ = 0;
  Domain retry;
  ASSERT_OK(Alloc("uid:1", AllocRequest("durable"), &retry));
  EXPECT_EQ(handler_runs_, 0);
  EXPECT_EQ(retry.SerializeAsString(), first.SerializeAsString());
  EXPECT_EQ(UserDomains(), 1u);
}

TEST_F(IdempotencyTest, RegionRequestsRunOnceAndARegionMapReplyIsRebuiltFromTheDomain) {
  iommu::v1::RegisterMemoryRequest register_memory;
  register_memory.set_size(kPage2M);
  register_memory.set_owner("vm");
  register_memory.set_request_id("reg-1");
  iommu::v1::MemoryRegion first, again;
  ASSERT_OK(Run("RegisterMemory", "uid:1", register_memory, &first,
                &RequestHandlers::RegisterMemory));
  ASSERT_OK(Run("RegisterMemory", "uid:1", register_memory, &again,
                &RequestHandlers::RegisterMemory));
  EXPECT_EQ(handler_runs_, 1);
  EXPECT_EQ(again.id(), first.id());
  EXPECT_EQ(registry_->ListMemoryRegions().size(), 1u);

  ASSERT_OK_AND_ASSIGN(DomainInfo domain,
                       registry_->AllocDomain("u0", DomainType::kUnmanaged, "vm"));
  spy_->drop_replies = true;  // the daemon "dies" after the map, before storing its reply
  iommu::v1::MapRequest map;
  map.set_domain_id(domain.id);
  map.set_iova(0x10000);
  map.set_region_id(first.id());
  map.set_region_offset(0x1000);
  map.set_size(0x1000);
  map.set_owner("vm");
  map.set_request_id("map-1");
  iommu::v1::MapResponse mapped, rebuilt;
  ASSERT_OK(Run("Map", "uid:1", map, &mapped, &RequestHandlers::Map));
  ASSERT_OK(Run("Map", "uid:1", map, &rebuilt, &RequestHandlers::Map));
  EXPECT_EQ(handler_runs_, 2);
  EXPECT_EQ(rebuilt.mapping().paddr(), first.base() + 0x1000);
  EXPECT_EQ(rebuilt.mapping().paddr(), mapped.mapping().paddr());
  EXPECT_EQ(registry_->GetMemoryRegion(first.id())->mapped_bytes, 0x1000u);  // charged once

  // A RegisterMemory reply cannot be rebuilt: the region went with the daemon.
  iommu::v1::MemoryRegion none;
  EXPECT_ERROR(RebuildReply(*handlers_, register_memory, 0, &none), kNotFound,
               "REGION_NOT_FOUND");
}

}  // namespace
}  // namespace iommud

// InMemoryStateStore: a StateStore kept in maps, for tests and --state=memory. Durability kNone.
// Also the reference the SQLite store's conformance tests compare against.
#ifndef IOMMUD_CORE_STORE_IN_MEMORY_STATE_STORE_H_
#define IOMMUD_CORE_STORE_IN_MEMORY_STATE_STORE_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "core/store/state_store.h"

namespace iommud {

class InMemoryStateStore : public StateStore {
 public:
  absl::string_view kind() const override { return "memory"; }
  StoreDurability durability() const override { return StoreDurability::kNone; }
  absl::Status Commit(const StoreBatch& batch) override;
  absl::StatusOr<StoreSnapshot> Load() override;
  absl::StatusOr<std::optional<RequestRecord>> FindRequest(absl::string_view request_id) override;
  absl::Status SetRequestResponse(absl::string_view request_id,
                                  const std::string& response) override;
  absl::StatusOr<uint64_t> ExpireRequests(int64_t cutoff_unix_nanos) override;

  uint64_t commits() const;  // batches committed (empty ones excluded)

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, UnitRecord> units_ ABSL_GUARDED_BY(mu_);
  std::map<DomainId, DomainRecord> domains_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, DeviceRecord> devices_ ABSL_GUARDED_BY(mu_);
  std::map<GroupId, GroupRecord> groups_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<DomainId, uint64_t>, Mapping> mappings_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, RequestRecord> requests_ ABSL_GUARDED_BY(mu_);
  GroupId next_group_id_ ABSL_GUARDED_BY(mu_) = 1;
  DomainId next_domain_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t commits_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_STORE_IN_MEMORY_STATE_STORE_H_

#include "core/store/in_memory_state_store.h"

#include <algorithm>

#include "core/error.h"
#include "core/error_reasons.h"
#include "core/sync.h"

namespace iommud {

absl::Status InMemoryStateStore::Commit(const StoreBatch& batch) {
  if (batch.empty()) return absl::OkStatus();
  MutexLock lock(&mu_);
  for (DomainId id : batch.delete_domains) {
    domains_.erase(id);
    mappings_.erase(mappings_.lower_bound({id, 0}), mappings_.upper_bound({id, ~uint64_t{0}}));
  }
  for (const std::string& name : batch.delete_devices) devices_.erase(name);
  for (GroupId id : batch.delete_groups) groups_.erase(id);
  for (const auto& key : batch.delete_mappings) mappings_.erase(key);
  for (const UnitRecord& unit : batch.put_units) units_[unit.name] = unit;
  for (const DomainRecord& domain : batch.put_domains) domains_[domain.id] = domain;
  for (const DeviceRecord& device : batch.put_devices) devices_[device.name] = device;
  for (const GroupRecord& group : batch.put_groups) groups_[group.id] = group;
  for (const MappingRecord& record : batch.put_mappings) {
    mappings_[{record.domain, record.mapping.iova}] = record.mapping;
  }
  if (batch.request.has_value()) requests_[batch.request->request_id] = *batch.request;
  next_group_id_ = std::max(next_group_id_, batch.next_group_id);
  next_domain_id_ = std::max(next_domain_id_, batch.next_domain_id);
  ++commits_;
  return absl::OkStatus();
}

absl::StatusOr<StoreSnapshot> InMemoryStateStore::Load() {
  MutexLock lock(&mu_);
  StoreSnapshot snapshot;
  for (const auto& [name, unit] : units_) snapshot.units.push_back(unit);
  for (const auto& [id, domain] : domains_) snapshot.domains.push_back(domain);
  for (const auto& [name, device] : devices_) snapshot.devices.push_back(device);
  for (const auto& [id, group] : groups_) snapshot.groups.push_back(group);
  for (const auto& [key, mapping] : mappings_) snapshot.mappings.push_back({key.first, mapping});
  snapshot.next_group_id = next_group_id_;
  snapshot.next_domain_id = next_domain_id_;
  return snapshot;
}

absl::StatusOr<std::optional<RequestRecord>> InMemoryStateStore::FindRequest(
    absl::string_view request_id) {
  MutexLock lock(&mu_);
  auto it = requests_.find(std::string(request_id));
  if (it == requests_.end()) return std::optional<RequestRecord>();
  return std::optional<RequestRecord>(it->second);
}

absl::Status InMemoryStateStore::SetRequestResponse(absl::string_view request_id,
                                                    const std::string& response) {
  MutexLock lock(&mu_);
  auto it = requests_.find(std::string(request_id));
  if (it == requests_.end()) {
    return Error(absl::StatusCode::kNotFound, reason::kRequestNotFound,
                 "no record of this request id", {{"request_id", std::string(request_id)}});
  }
  it->second.response = response;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> InMemoryStateStore::ExpireRequests(int64_t cutoff_unix_nanos) {
  MutexLock lock(&mu_);
  uint64_t expired = 0;
  for (auto it = requests_.begin(); it != requests_.end();) {
    if (it->second.time_unix_nanos < cutoff_unix_nanos) {
      it = requests_.erase(it);
      ++expired;
    } else {
      ++it;
    }
  }
  return expired;
}

uint64_t InMemoryStateStore::commits() const {
  MutexLock lock(&mu_);
  return commits_;
}

}  // namespace iommud

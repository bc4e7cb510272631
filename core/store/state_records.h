// The durable form of the registry: one record per unit, domain, device, group and mapping, plus
// the idempotency records of requests. A StateStore keeps these; the Registry writes them (in
// StoreBatch-es, under the lock of what they describe) and rebuilds itself from a StoreSnapshot.
#ifndef IOMMUD_CORE_STORE_STATE_RECORDS_H_
#define IOMMUD_CORE_STORE_STATE_RECORDS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/types.h"

namespace iommud {

struct UnitRecord {
  std::string name;
  UnitCaps caps;
  DomainId release_domain = 0;  // the unit's blocked release domain (a DomainRecord too)
};

struct DomainRecord {
  DomainId id = 0;
  std::string unit;
  DomainType type = DomainType::kUnmanaged;
  std::string owner;        // empty for core-owned domains
  bool core_owned = false;  // a group's default/blocking domain or a unit's release domain
};

struct DeviceRecord {
  std::string name;
  std::string unit;
  Rid rid = 0;
  std::vector<Rid> alias_rids;
  GroupId group = 0;
  uint64_t probe_seq = 0;   // orders the devices of a group as they were probed
  DriverBinding binding = DriverBinding::kNone;
};

struct GroupRecord {
  GroupId id = 0;
  std::string unit;
  DomainId domain = 0;
  DomainId default_domain = 0;
  DomainId blocking_domain = 0;
  std::string owner;                         // empty when not owned
  uint32_t owner_cnt = 0;
  bool group_claimed = false;                // ClaimOwnership (counts 1 in owner_cnt)
  std::vector<std::string> claimed_devices;  // ClaimDevice by `owner`, sorted
  // The devices attached to `domain` (AttachDevice / AttachGroup), sorted; empty on a core domain.
  std::vector<std::string> attached_devices;
  // Ownership lease (0 = none): wall-clock expiry and the TTL each renewal extends it by.
  int64_t lease_expiry_unix_nanos = 0;
  int64_t lease_ttl_nanos = 0;
};

struct MappingRecord {
  DomainId domain = 0;
  Mapping mapping;  // keyed by (domain, mapping.iova)
};

// A mutating request that carried a request_id, kept for the idempotency window.
struct RequestRecord {
  std::string request_id;
  std::string method;       // e.g. "AttachGroup"
  std::string fingerprint;  // a hash of the request's fields: a reused id with other fields is refused
  // The one number the response needs that the state after the request cannot give (the id of an
  // allocated domain, the bytes an Unmap removed, 1 if a ReleaseDevice leaked an attachment); 0
  // otherwise.
  uint64_t result_ref = 0;
  // The serialized response, filled in (SetRequestResponse) once the server has built it.
  std::optional<std::string> response;
  int64_t time_unix_nanos = 0;
};

// One atomic change of the store. Deletes are applied before puts; a put replaces the record with
// the same key. Deleting a domain deletes its mappings; deleting a group does not delete its devices.
struct StoreBatch {
  std::vector<UnitRecord> put_units;
  std::vector<DomainRecord> put_domains;
  std::vector<DomainId> delete_domains;
  std::vector<DeviceRecord> put_devices;
  std::vector<std::string> delete_devices;
  std::vector<GroupRecord> put_groups;
  std::vector<GroupId> delete_groups;
  std::vector<MappingRecord> put_mappings;
  std::vector<std::pair<DomainId, uint64_t>> delete_mappings;  // (domain, iova)
  // The request this change answers (see CallContext); stored in the same transaction.
  std::optional<RequestRecord> request;
  // Not stored: the fault-injection scope of the call committing the batch (the store.write
  // point of FaultInjectingStateStore matches scoped faults against it).
  FaultScope fault_scope;
  // Id counters: the next ids the registry will hand out (0 = unchanged). Never decrease.
  GroupId next_group_id = 0;
  DomainId next_domain_id = 0;

  bool empty() const {
    return put_units.empty() && put_domains.empty() && delete_domains.empty() &&
           put_devices.empty() && delete_devices.empty() && put_groups.empty() &&
           delete_groups.empty() && put_mappings.empty() && delete_mappings.empty() &&
           !request.has_value() && next_group_id == 0 && next_domain_id == 0;
  }
};

// Everything the store holds except request records, sorted by key.
struct StoreSnapshot {
  std::vector<UnitRecord> units;        // by name
  std::vector<DomainRecord> domains;    // by id
  std::vector<DeviceRecord> devices;    // by name
  std::vector<GroupRecord> groups;      // by id
  std::vector<MappingRecord> mappings;  // by (domain, iova)
  GroupId next_group_id = 1;
  DomainId next_domain_id = 1;

  bool empty() const { return units.empty() && domains.empty() && devices.empty() && groups.empty(); }
};

}  // namespace iommud

#endif  // IOMMUD_CORE_STORE_STATE_RECORDS_H_

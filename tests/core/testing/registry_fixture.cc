#include "tests/core/testing/registry_fixture.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/backend/backend_factory.h"
#include "core/sync.h"

namespace iommud {
namespace test {

UnitCaps RegistryTest::U0Caps() {
  UnitCaps caps;
  caps.pgsize_bitmap = kPage4K | kPage2M | kPage1G;
  caps.iova_bits = 39;
  return caps;
}

UnitCaps RegistryTest::U1Caps() {
  UnitCaps caps;
  caps.pgsize_bitmap = kPage4K | kPage2M;
  caps.iova_bits = 32;
  return caps;
}

void RegistryTest::SetUp() { Recreate([](RegistryOptions*) {}); }

void RegistryTest::Recreate(const std::function<void(RegistryOptions*)>& tweak) {
  registry_.reset();
  auto hardware = CreateBackend(BackendName());
  ASSERT_TRUE(hardware.ok()) << hardware.status();
  hardware_ = *std::move(hardware);
  backend_ = std::make_unique<FailingBackend>(hardware_.get());
  RegistryOptions options;
  options.backend = backend_.get();
  options.observer = &observer_;
  options.sync_point = [this](absl::string_view point) {
    std::function<void(absl::string_view)> hook;
    {
      MutexLock lock(&hook_mu_);
      hook = hook_;
    }
    if (hook) hook(point);
  };
  tweak(&options);
  auto registry = Registry::Create(options);
  ASSERT_TRUE(registry.ok()) << registry.status();
  registry_ = *std::move(registry);
  ASSERT_TRUE(registry_->AddUnit("u0", U0Caps()).ok());
  ASSERT_TRUE(registry_->AddUnit("u1", U1Caps()).ok());
}

void RegistryTest::SetHook(std::function<void(absl::string_view)> hook) {
  MutexLock lock(&hook_mu_);
  hook_ = std::move(hook);
}

void RegistryTest::TearDown() {
  SetHook(nullptr);
  if (registry_ != nullptr) ExpectConsistent();
}

void RegistryTest::ExpectConsistent() {
  std::vector<std::string> problems;
  for (const InvariantViolation& violation : registry_->CheckInvariants()) {
    problems.push_back(violation.what);
  }
  EXPECT_THAT(problems, ::testing::IsEmpty());
}

DeviceInfo RegistryTest::Probe(const std::string& name, Rid rid, std::vector<Rid> aliases,
                               const std::string& unit) {
  ProbeRequest request;
  request.unit = unit;
  request.device = name;
  request.rid = rid;
  request.alias_rids = std::move(aliases);
  absl::StatusOr<DeviceInfo> device = registry_->ProbeDevice(request);
  EXPECT_TRUE(device.ok()) << device.status();
  return device.ok() ? *device : DeviceInfo{};
}

GroupInfo RegistryTest::Group(GroupId id) {
  absl::StatusOr<GroupInfo> group = registry_->GetGroup(id);
  EXPECT_TRUE(group.ok()) << group.status();
  return group.ok() ? *group : GroupInfo{};
}

GroupInfo RegistryTest::GroupOf(const std::string& device) {
  absl::StatusOr<DeviceInfo> info = registry_->GetDevice(device);
  EXPECT_TRUE(info.ok()) << info.status();
  return info.ok() ? Group(info->group) : GroupInfo{};
}

DomainInfo RegistryTest::Domain(DomainId id) {
  absl::StatusOr<DomainInfo> domain = registry_->GetDomain(id);
  EXPECT_TRUE(domain.ok()) << domain.status();
  return domain.ok() ? *domain : DomainInfo{};
}

DomainId RegistryTest::Hw(Rid rid, const std::string& unit) {
  absl::StatusOr<RidEntry> entry = hardware_->ReadRid(unit, rid);
  EXPECT_TRUE(entry.ok()) << entry.status();
  return entry.ok() ? entry->domain : 0;
}

DomainId RegistryTest::ClaimAndAttach(const std::string& device) {
  const GroupInfo group = GroupOf(device);
  EXPECT_TRUE(registry_->ClaimOwnership(group.id, kOwner).ok());
  absl::StatusOr<DomainInfo> domain =
      registry_->AllocDomain(group.unit, DomainType::kUnmanaged, kOwner);
  EXPECT_TRUE(domain.ok()) << domain.status();
  if (!domain.ok()) return 0;
  absl::StatusOr<GroupInfo> attached = registry_->AttachGroup(group.id, domain->id, kOwner);
  EXPECT_TRUE(attached.ok()) << attached.status();
  return domain->id;
}

std::string RegistryTest::Snapshot() {
  std::string out;
  for (const GroupInfo& group : registry_->ListGroups()) {
    absl::StrAppend(&out, "group ", group.id, " ", group.unit, " [",
                    absl::StrJoin(group.devices, ","), "] domain=", group.domain,
                    " default=", group.default_domain, " blocking=", group.blocking_domain,
                    " owner=", group.owner, " cnt=", group.owner_cnt, " claimed=[",
                    absl::StrJoin(group.claimed_devices, ","), "] attached=[",
                    absl::StrJoin(group.attached_devices, ","), "]");
    if (group.lease_ttl != absl::ZeroDuration()) {
      absl::StrAppend(&out, " lease=", absl::FormatDuration(group.lease_ttl), "@",
                      absl::ToUnixNanos(group.lease_expiry));
    }
    absl::StrAppend(&out, "\n");
  }
  for (const DeviceInfo& device : registry_->ListDevices()) {
    absl::StrAppend(&out, "device ", device.name, " group=", device.group,
                    " binding=", DriverBindingName(device.binding), " domain=", device.domain,
                    device.attached ? " attached" : "",
                    " hw=", Hw(device.rid, device.unit), "\n");
  }
  for (const MemoryRegionInfo& region : registry_->ListMemoryRegions()) {
    absl::StrAppend(&out, "region ", region.id, " owner=", region.owner, " size=", region.size,
                    " base=", region.base, " mapped=", region.mapped_bytes, "\n");
  }
  for (const DomainInfo& domain : registry_->ListDomains()) {
    absl::StrAppend(&out, "domain ", domain.id, " ", DomainTypeName(domain.type), " owner=",
                    domain.owner, " groups=[", absl::StrJoin(domain.attached_groups, ","),
                    "] mappings=", domain.mapping_count, " bytes=", domain.mapped_bytes, "\n");
    absl::StatusOr<std::vector<Mapping>> leaves = hardware_->ReadMappings(domain.id);
    if (leaves.ok()) absl::StrAppend(&out, "  leaves=", leaves->size(), "\n");
  }
  const BackendStats stats = hardware_->Stats();
  absl::StrAppend(&out, "hw domains=", stats.domains, " pt_pages=", stats.page_table_pages,
                  " rids=", stats.programmed_rids, "\n");
  return out;
}

}  // namespace test
}  // namespace iommud

#include "server/observability/state_collector.h"

#include <map>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "core/types.h"

namespace iommud {

namespace {

prometheus::MetricFamily Gauge(const std::string& name, const std::string& help) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = prometheus::MetricType::Gauge;
  return family;
}

void AddSample(prometheus::MetricFamily* family, double value,
               std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  metric.gauge.value = value;
  family->metric.push_back(std::move(metric));
}

}  // namespace

std::vector<prometheus::MetricFamily> StateCollector::Collect() const {
  const std::vector<GroupInfo> groups = registry_->ListGroups();
  const std::vector<DomainInfo> domains = registry_->ListDomains();
  std::map<GroupId, bool> on_user_domain;
  double owned = 0, mappings = 0, mapped_bytes = 0, attachments = 0;
  std::map<std::string, double> by_type;
  for (DomainType type : {DomainType::kBlocked, DomainType::kIdentity, DomainType::kUnmanaged,
                          DomainType::kDma, DomainType::kDmaFq}) {
    by_type[std::string(DomainTypeName(type))] = 0;
  }
  for (const GroupInfo& group : groups) {
    if (!group.owner.empty()) ++owned;
  }
  for (const DomainInfo& domain : domains) {
    ++by_type[std::string(DomainTypeName(domain.type))];
    mappings += static_cast<double>(domain.mapping_count);
    mapped_bytes += static_cast<double>(domain.mapped_bytes);
    if (!domain.core_owned) attachments += static_cast<double>(domain.attached_groups.size());
  }

  std::vector<prometheus::MetricFamily> families;
  auto single = [&](const std::string& name, const std::string& help, double value) {
    prometheus::MetricFamily family = Gauge(name, help);
    AddSample(&family, value);
    families.push_back(std::move(family));
  };
  single("iommud_devices", "Devices probed and not released.",
         static_cast<double>(registry_->ListDevices().size()));
  single("iommud_groups", "Live IOMMU groups.", static_cast<double>(groups.size()));
  single("iommud_owned_groups", "Groups with an external DMA owner.", owned);
  single("iommud_attachments", "Group attachments to user-allocated domains.", attachments);
  single("iommud_mappings", "Mappings in all domains.", mappings);
  single("iommud_mapped_bytes", "Bytes mapped in all domains.", mapped_bytes);
  if (events_ != nullptr) {
    single("iommud_event_watchers", "Open WatchEvents streams.",
           static_cast<double>(events_->watchers()));
  }
  prometheus::MetricFamily regions =
      Gauge("iommud_memory_regions", "Registered memory regions, by kind.");
  prometheus::MetricFamily region_bytes =
      Gauge("iommud_memory_region_mapped_bytes", "Bytes mapped from memory regions, by kind.");
  std::map<std::string, std::pair<double, double>> by_kind = {{"emulated", {0, 0}},
                                                              {"process_memory", {0, 0}}};
  for (const MemoryRegionInfo& region : registry_->ListMemoryRegions()) {
    auto& [count, bytes] = by_kind[absl::AsciiStrToLower(MemoryRegionKindName(region.kind))];
    ++count;
    bytes += static_cast<double>(region.mapped_bytes);
  }
  for (const auto& [kind, values] : by_kind) {
    AddSample(&regions, values.first, {{"kind", kind}});
    AddSample(&region_bytes, values.second, {{"kind", kind}});
  }
  families.push_back(std::move(regions));
  families.push_back(std::move(region_bytes));
  prometheus::MetricFamily typed = Gauge("iommud_domains", "Domains, by type.");
  for (const auto& [type, count] : by_type) {
    AddSample(&typed, count, {{"type", absl::AsciiStrToLower(type)}});
  }
  families.push_back(std::move(typed));
  return families;
}

}  // namespace iommud

// Registry: memory regions, docs/semantics.md "Memory regions". The regions themselves live in a
// MemoryRegionTable (core/memory_regions.h); the registry adds the policy (process memory required,
// pinned-memory limit) and maps (region, offset) ranges through Map's path.
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/registry.h"
#include "core/registry_state.h"
#include "core/status_macros.h"

namespace iommud {

absl::StatusOr<MemoryRegionInfo> Registry::RegisterMemory(absl::string_view owner, uint64_t size,
                                                          std::unique_ptr<ProcessMemory> backing) {
  if (backing == nullptr && options_.regions_need_process_memory) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kMemoryNeedsFd,
                 "this backend maps real memory: register a memfd over the fd channel",
                 {{"size", absl::StrCat(size)}});
  }
  return state_->regions->Add(owner, size, std::move(backing));
}

absl::StatusOr<MemoryRegionInfo> Registry::UnregisterMemory(uint64_t region_id,
                                                            absl::string_view owner) {
  return state_->regions->Remove(region_id, owner);
}

std::vector<MemoryRegionInfo> Registry::ListMemoryRegions() const {
  return state_->regions->List();
}

absl::StatusOr<MemoryRegionInfo> Registry::GetMemoryRegion(uint64_t region_id) const {
  return state_->regions->Get(region_id);
}

absl::StatusOr<Mapping> Registry::MapRegion(DomainId domain, uint64_t iova, uint64_t region_id,
                                            uint64_t offset, uint64_t size, uint32_t prot,
                                            absl::string_view owner, CallContext* context) {
  CallContext own_call;  // the caller passed none
  CallContext& call = context != nullptr ? *context : own_call;
  // Charged before the mapping exists, so that UnregisterMemory cannot remove the region while
  // the backend maps it; given back if the map fails.
  ASSIGN_OR_RETURN(const uint64_t paddr,
                   state_->regions->Charge(region_id, offset, size, owner,
                                           options_.max_pinned_bytes_per_owner));
  absl::StatusOr<std::vector<Mapping>> mapped =
      MapPaddrs(call, domain, {Mapping{iova, paddr, size, prot}}, owner, /*name_entries=*/false);
  if (!mapped.ok()) {
    state_->regions->Discharge(paddr, size);
    return mapped.status();
  }
  return mapped->front();
}

MemoryRegionTable* Registry::memory_regions() const { return state_->regions; }

}  // namespace iommud

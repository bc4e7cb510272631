#include "server/host/kept_regions.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/host/mapped_file.h"
#include "core/status_macros.h"
#include "server/host/kept_memory.h"

namespace iommud {

absl::StatusOr<KeptRegionsOutcome> RestoreKeptRegions(host::FdKeeper* keeper,
                                                      MemoryRegionTable* regions,
                                                      StateStore* store) {
  KeptRegionsOutcome outcome;
  for (const std::string& name : keeper->Untaken()) {
    std::optional<host::MemoryFdInfo> kept = host::ParseMemoryFdName(name);
    if (!kept.has_value()) continue;
    host::UniqueFd file = keeper->TakeBack(name);
    absl::StatusOr<std::unique_ptr<host::MappedFile>> mapped =
        host::MappedFile::Map(file.get(), kept->size);
    absl::Status restored = mapped.status();
    if (mapped.ok()) {
      auto handle = std::make_shared<KeptMemoryHandle>(keeper, host::UniqueFd());
      handle->AlreadyKeptAs(name);
      MemoryRegionInfo info;
      info.id = kept->id;
      info.owner = kept->owner;
      info.size = kept->size;
      info.base = kept->base;
      // On failure the backing goes at once, and with it the store's copy.
      restored = regions->Restore(info, std::make_unique<KeptMemory>(*std::move(mapped), handle));
    } else {
      (void)keeper->Drop(name);
    }
    if (restored.ok()) {
      ++outcome.restored;
      outcome.log.push_back(absl::StrCat("memory region ", kept->id, " of '", kept->owner,
                                         "' taken back from the fd store"));
    } else {
      ++outcome.dropped_regions;
      outcome.log.push_back(absl::StrCat("memory region ", kept->id, " of '", kept->owner,
                                         "' kept in the fd store cannot be put back (",
                                         restored.message(), "): dropped"));
    }
  }
  ASSIGN_OR_RETURN(StoreSnapshot snapshot, store->Load());
  StoreBatch batch;
  for (const MappingRecord& record : snapshot.mappings) {
    const Mapping& mapping = record.mapping;
    if (!OverlapsRegionSpace(mapping.paddr, mapping.size)) continue;
    if (regions->ChargeRestored(mapping.paddr, mapping.size)) continue;
    batch.delete_mappings.emplace_back(record.domain, mapping.iova);
    outcome.log.push_back(absl::StrCat(
        "mapping IOVA 0x", absl::Hex(mapping.iova), " of domain ", record.domain,
        " dropped: the memory region behind it was not kept in the fd store (the kernel dropped it "
        "with the previous process, or it was never stored)"));
  }
  outcome.dropped_mappings = batch.delete_mappings.size();
  if (!batch.empty()) RETURN_IF_ERROR(store->Commit(batch));
  return outcome;
}

}  // namespace iommud

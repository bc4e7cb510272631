// The memory regions a previous process of the daemon kept in the fd store
// (server/host/kept_memory.h), put back before the registry recovers its store: same id, owner,
// size and base, the same file mapped again, so the mappings the store holds resolve to the same
// pages the kernel still maps.
//
// A kept region that cannot be put back (the file is gone or too small, the range is taken) is
// dropped from the store and logged; so is every stored mapping in the region address space that
// no restored region backs (its memory is gone with the process: it must not be shown as in
// place). The restored regions are charged with the mappings that survive.
#ifndef IOMMUD_SERVER_HOST_KEPT_REGIONS_H_
#define IOMMUD_SERVER_HOST_KEPT_REGIONS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/host/fd_keeper.h"
#include "core/memory_regions.h"
#include "core/store/state_store.h"

namespace iommud {

struct KeptRegionsOutcome {
  size_t restored = 0;          // regions put back
  size_t dropped_regions = 0;   // kept but not restorable
  size_t dropped_mappings = 0;  // stored mappings of memory that is gone (deleted from the store)
  std::vector<std::string> log;  // one line each
};

// Takes back every memory-* fd of `keeper` into `regions`, then deletes from `store` the mappings
// no restored region backs (one commit). Errors: the store's (Load, Commit).
absl::StatusOr<KeptRegionsOutcome> RestoreKeptRegions(host::FdKeeper* keeper,
                                                      MemoryRegionTable* regions,
                                                      StateStore* store);

}  // namespace iommud

#endif  // IOMMUD_SERVER_HOST_KEPT_REGIONS_H_

// The device half of the emulated IOMMU: what the hardware does on its own. It consumes the
// command queue, keeps a configuration cache (stream table entries) and an IOTLB (leaf
// translations), both filled by walking memory and cleared only by commands (CFGI_STE,
// TLBI_DOMAIN, TLBI_RANGE), translates DMA, and reports faults into the event queue. So a driver
// that forgets an invalidation sees stale translations, as on real hardware.
// Not thread-safe: the backend's lock guards it.
#ifndef IOMMUD_CORE_BACKEND_EMULATED_EMULATED_DEVICE_H_
#define IOMMUD_CORE_BACKEND_EMULATED_EMULATED_DEVICE_H_

#include <cstdint>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "core/backend/emulated/emulated_memory.h"
#include "core/types.h"

namespace iommud {

class EmulatedDevice {
 public:
  EmulatedDevice(EmulatedMemory* memory, size_t iotlb_capacity)
      : memory_(memory), iotlb_capacity_(iotlb_capacity) {}

  // Executes every command between the consumer and the producer index (the driver's SYNC waits
  // for this), advancing the consumer index.
  void ConsumeCommands();

  // A DMA by `rid` of the unit at table index `unit`. Faults are also written to the event queue.
  Translation Translate(uint64_t unit, Rid rid, uint64_t iova, uint32_t access);

  size_t iotlb_entries() const { return iotlb_.size(); }

 private:
  struct Ste {
    uint64_t control = 0;
    uint64_t domain = 0;
    uint64_t root = 0;
  };
  const Ste& CachedSte(uint64_t unit, Rid rid);
  Translation Fault(uint64_t unit, Rid rid, uint64_t iova, uint32_t access, FaultReason reason,
                    DomainId domain);

  EmulatedMemory* const memory_;
  const size_t iotlb_capacity_;
  absl::flat_hash_map<std::pair<uint64_t, Rid>, Ste> config_cache_;
  // (domain, leaf base iova) -> leaf.
  absl::flat_hash_map<std::pair<DomainId, uint64_t>, Mapping> iotlb_;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_BACKEND_EMULATED_EMULATED_DEVICE_H_

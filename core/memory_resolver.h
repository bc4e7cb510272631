// MemoryResolver: where the bytes of registered memory live in this process.
//
// Clients never hand iommud physical addresses (only admins, on test hosts, may): they register
// memory regions (a memfd, hugetlbfs or shm file they own, or on the simulated backends a range of
// emulated memory) and map (region, offset) ranges. The registry places every region in one
// "region address space" and hands backends the region-space address as the mapping's paddr:
//   - the software and emulated backends treat it as an (emulated) physical address, as before;
//   - the linux backend, which maps this process's memory into a VFIO container, asks the
//     resolver for the process address behind it.
//
// Thread safety: Resolve may be called from any thread, concurrently with registration.
#ifndef IOMMUD_CORE_MEMORY_RESOLVER_H_
#define IOMMUD_CORE_MEMORY_RESOLVER_H_

#include <cstdint>

#include "absl/status/statusor.h"

namespace iommud {

// Process memory behind a registered region (e.g. an mmap of a client's memfd, made by the fd
// channel: core/host/mapped_file.h). The region owns it: it stays mapped until the region is
// unregistered, and the linux backend maps its pages into VFIO containers.
class ProcessMemory {
 public:
  virtual ~ProcessMemory() = default;
  virtual void* data() const = 0;     // page aligned
  virtual uint64_t size() const = 0;  // bytes, a multiple of the page size
};

class MemoryResolver {
 public:
  virtual ~MemoryResolver() = default;

  // The process address of region-space [paddr, paddr + size), which must lie wholly inside one
  // registered region backed by process memory (an mmap the resolver keeps alive until the region
  // is unregistered, which the registry refuses while any of it is mapped).
  // NOT_FOUND (MEMORY_NOT_REGISTERED) otherwise.
  virtual absl::StatusOr<void*> Resolve(uint64_t paddr, uint64_t size) const = 0;
};

}  // namespace iommud

#endif  // IOMMUD_CORE_MEMORY_RESOLVER_H_

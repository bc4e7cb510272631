// The emulated IOMMU's in-memory format (SMMUv3-like). Every structure lives in EmulatedMemory;
// all fields are little-endian 64-bit words at the offsets below.
//
//   0x00000  Header
//            +0x00 magic "IOMMUEMU"        +0x08 format version (1)     +0x10 memory size
//            +0x18 page bump pointer       +0x20 free-page list head    +0x28 pages in use
//            +0x30 command queue producer  +0x38 command queue consumer
//            +0x40 event queue producer    +0x48 event queue consumer   +0x50 events dropped
//   0x01000  Unit table, kMaxUnits x 64 bytes
//            +0x00 flags (bit 0 valid)  +0x08 pgsize_bitmap  +0x10 iova_bits  +0x18 max_rids
//            +0x20 stream table base    +0x28..0x3f name (NUL-padded, at most 23 bytes)
//   0x02000  Domain table, kMaxDomains x 32 bytes
//            +0x00 domain id (0: free slot)  +0x08 unit index | type << 8
//            +0x10 page-table root (0 for non-paging types)  +0x18 stream table entries using it
//   0x42000  Command queue, kCmdqEntries x 32 bytes: opcode, arg0, arg1, arg2
//            CFGI_STE(unit, rid)  TLBI_DOMAIN(domain)  TLBI_RANGE(domain, iova, size)  SYNC(seq)
//   0x44000  Event queue, kEvtqEntries x 32 bytes:
//            +0x00 unit | reason << 8 | access << 16   +0x08 rid  +0x10 iova  +0x18 time (unix ns)
//   0x4c000  Allocation area (4 KiB pages): stream tables (contiguous, per unit) and page-table pages.
//
// Stream table entry (STE), 32 bytes per RID: +0x00 control (bit 0 V; bits 1-2 config: 0 abort,
// 1 bypass, 2 translate), +0x08 domain id, +0x10 page-table root, +0x18 reserved.
//
// Page tables: 4 levels of 512 8-byte descriptors per 4 KiB page (4K granule, 48-bit input).
// Descriptor: bit 0 valid; bit 1 "table" at levels 0-2 (else a 1G/2M block) and "page" at level 3;
// bit 2 readable, bit 3 writable; bits 12-51 the next table's or the output address.
#ifndef IOMMUD_CORE_BACKEND_EMULATED_EMULATED_FORMAT_H_
#define IOMMUD_CORE_BACKEND_EMULATED_EMULATED_FORMAT_H_

#include <cstdint>

namespace iommud {
namespace emu {

inline constexpr uint64_t kMagic = 0x554d45554d4d4f49;  // "IOMMUEMU"
inline constexpr uint64_t kVersion = 1;
inline constexpr uint64_t kPage = 4096;

// Header fields.
inline constexpr uint64_t kHdrMagic = 0x00, kHdrVersion = 0x08, kHdrSize = 0x10,
                          kHdrBump = 0x18, kHdrFreeList = 0x20, kHdrPagesInUse = 0x28,
                          kHdrCmdqProd = 0x30, kHdrCmdqCons = 0x38, kHdrEvtqProd = 0x40,
                          kHdrEvtqCons = 0x48, kHdrEvtqDropped = 0x50;

inline constexpr uint64_t kUnitTable = 0x1000;
inline constexpr uint64_t kUnitEntry = 64;
inline constexpr uint64_t kMaxUnits = 64;
inline constexpr uint64_t kUnitNameBytes = 24;

inline constexpr uint64_t kDomainTable = 0x2000;
inline constexpr uint64_t kDomainEntry = 32;
inline constexpr uint64_t kMaxDomains = 8192;

inline constexpr uint64_t kCmdq = 0x42000;
inline constexpr uint64_t kCmdqEntries = 256;
inline constexpr uint64_t kEvtq = 0x44000;
inline constexpr uint64_t kEvtqEntries = 1024;
inline constexpr uint64_t kQueueEntry = 32;

inline constexpr uint64_t kAllocArea = 0x4c000;

inline constexpr uint64_t kSteBytes = 32;
inline constexpr uint64_t kSteValid = 1;
enum SteConfig : uint64_t { kAbort = 0, kBypass = 1, kTranslate = 2 };

enum Opcode : uint64_t { kCfgiSte = 1, kTlbiDomain = 2, kTlbiRange = 3, kSync = 4 };

inline constexpr uint64_t kPteValid = 1, kPteTable = 2, kPteRead = 4, kPteWrite = 8;
inline constexpr uint64_t kPteAddrMask = 0x000ffffffffff000;
inline constexpr int kLevels = 4;
inline constexpr uint64_t kInputBits = 48;

inline uint64_t UnitAddr(uint64_t index) { return kUnitTable + index * kUnitEntry; }
inline uint64_t DomainAddr(uint64_t slot) { return kDomainTable + slot * kDomainEntry; }
inline uint64_t SpanOf(int level) { return uint64_t{1} << (12 + 9 * (kLevels - 1 - level)); }
inline uint64_t IndexAt(uint64_t iova, int level) {
  return (iova >> (12 + 9 * (kLevels - 1 - level))) & 511;
}

}  // namespace emu
}  // namespace iommud

#endif  // IOMMUD_CORE_BACKEND_EMULATED_EMULATED_FORMAT_H_

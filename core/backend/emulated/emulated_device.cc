#include "core/backend/emulated/emulated_device.h"

#include "absl/time/clock.h"
#include "core/backend/emulated/emulated_format.h"
#include "core/backend/emulated/emulated_page_table.h"

namespace iommud {

using namespace emu;  // NOLINT: the format's constants

void EmulatedDevice::ConsumeCommands() {
  uint64_t cons = memory_->Read64(kHdrCmdqCons);
  const uint64_t prod = memory_->Read64(kHdrCmdqProd);
  for (; cons != prod; ++cons) {
    const uint64_t entry = kCmdq + (cons % kCmdqEntries) * kQueueEntry;
    const uint64_t opcode = memory_->Read64(entry);
    const uint64_t arg0 = memory_->Read64(entry + 8), arg1 = memory_->Read64(entry + 16),
                   arg2 = memory_->Read64(entry + 24);
    switch (opcode) {
      case kCfgiSte:
        config_cache_.erase({arg0, static_cast<Rid>(arg1)});
        break;
      case kTlbiDomain:
        for (auto it = iotlb_.begin(); it != iotlb_.end();) {
          if (it->first.first == arg0) {
            iotlb_.erase(it++);
          } else {
            ++it;
          }
        }
        break;
      case kTlbiRange: {
        const IovaRange range{arg1, arg2};
        for (auto it = iotlb_.begin(); it != iotlb_.end();) {
          if (it->first.first == arg0 && range.Overlaps(it->second.iova, it->second.size)) {
            iotlb_.erase(it++);
          } else {
            ++it;
          }
        }
        break;
      }
      default:  // kSync and unknown opcodes: nothing to do but consume
        break;
    }
  }
  memory_->Write64(kHdrCmdqCons, cons);
}

const EmulatedDevice::Ste& EmulatedDevice::CachedSte(uint64_t unit, Rid rid) {
  auto it = config_cache_.find({unit, rid});
  if (it != config_cache_.end()) return it->second;
  Ste ste;
  const uint64_t unit_entry = UnitAddr(unit);
  if (rid < memory_->Read64(unit_entry + 0x18)) {
    const uint64_t address = memory_->Read64(unit_entry + 0x20) + rid * kSteBytes;
    ste.control = memory_->Read64(address);
    ste.domain = memory_->Read64(address + 8);
    ste.root = memory_->Read64(address + 16);
  }
  return config_cache_.emplace(std::make_pair(unit, rid), ste).first->second;
}

Translation EmulatedDevice::Fault(uint64_t unit, Rid rid, uint64_t iova, uint32_t access,
                                  FaultReason reason, DomainId domain) {
  const uint64_t prod = memory_->Read64(kHdrEvtqProd);
  const uint64_t cons = memory_->Read64(kHdrEvtqCons);
  if (prod - cons >= kEvtqEntries) {
    memory_->Write64(kHdrEvtqDropped, memory_->Read64(kHdrEvtqDropped) + 1);
  } else {
    const uint64_t entry = kEvtq + (prod % kEvtqEntries) * kQueueEntry;
    memory_->Write64(entry, unit | static_cast<uint64_t>(reason) << 8 |
                                static_cast<uint64_t>(access) << 16);
    memory_->Write64(entry + 8, rid);
    memory_->Write64(entry + 16, iova);
    memory_->Write64(entry + 24, static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())));
    memory_->Write64(kHdrEvtqProd, prod + 1);
  }
  Translation translation;
  translation.fault = reason;
  translation.domain = domain;
  return translation;
}

Translation EmulatedDevice::Translate(uint64_t unit, Rid rid, uint64_t iova, uint32_t access) {
  const Ste ste = CachedSte(unit, rid);
  if (!(ste.control & kSteValid)) return Fault(unit, rid, iova, access, FaultReason::kUnknownRid, 0);
  const uint64_t config = (ste.control >> 1) & 3;
  if (config == kAbort) return Fault(unit, rid, iova, access, FaultReason::kBlocked, ste.domain);
  Translation translation;
  translation.domain = ste.domain;
  if (config == kBypass) {
    translation.paddr = iova;
    return translation;
  }
  std::optional<Mapping> leaf;
  for (uint64_t size : {kPage1G, kPage2M, kPage4K}) {
    auto it = iotlb_.find({ste.domain, iova & ~(size - 1)});
    if (it != iotlb_.end() && it->second.size == size) {
      leaf = it->second;
      break;
    }
  }
  if (!leaf.has_value()) {
    // The walk reads memory only; it needs no allocator.
    leaf = EmulatedPageTable(memory_, nullptr, ste.root, 0).Walk(iova);
    if (leaf.has_value()) {
      if (iotlb_.size() >= iotlb_capacity_) iotlb_.clear();
      iotlb_[{ste.domain, leaf->iova}] = *leaf;
    }
  }
  if (!leaf.has_value()) {
    return Fault(unit, rid, iova, access, FaultReason::kNoMapping, ste.domain);
  }
  if ((leaf->prot & access) != access) {
    return Fault(unit, rid, iova, access, FaultReason::kPermission, ste.domain);
  }
  translation.paddr = leaf->paddr + (iova - leaf->iova);
  return translation;
}

}  // namespace iommud

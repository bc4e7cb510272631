// iommuctl subcommands: memory regions, mappings and DMA.
#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "clients/iommuctl/command_table.h"
#include "clients/iommuctl/numbers.h"
#include "clients/iommuctl/table.h"

namespace iommud {
namespace iommuctl {

void AddMemoryCommands(CommandTable& commands) {
  const CommandAdder add(commands);
  // Memory regions.
  add("register-memory", "SIZE", "register an (emulated) memory region owned by --owner", 1, 1,
      {}, [](Context& ctx, const Args& a) {
        iommu::v1::RegisterMemoryRequest request;
        request.set_size(Number(a.positional[0], "SIZE"));
        request.set_owner(ctx.options.owner);
        return Print<iommu::v1::MemoryRegion>(
            ctx, ctx.client.RegisterMemory(request),
            [&](const iommu::v1::MemoryRegion& r) { PrintRegions(ctx, {r}); });
      });
  add("unregister-memory", "REGION", "unregister a memory region (refused while mapped)", 1, 1,
      {}, [](Context& ctx, const Args& a) {
        iommu::v1::UnregisterMemoryRequest request;
        request.set_region_id(Number(a.positional[0], "REGION"));
        request.set_owner(ctx.options.owner);
        return Print<iommu::v1::MemoryRegion>(
            ctx, ctx.client.UnregisterMemory(request),
            [&](const iommu::v1::MemoryRegion& r) { PrintRegions(ctx, {r}); });
      });
  add("regions", "", "list the registered memory regions", 0, 0, {},
      [](Context& ctx, const Args&) {
        iommu::v1::ListMemoryRegionsRequest request;
        request.set_page_size(1000);
        std::vector<iommu::v1::MemoryRegion> all;
        for (;;) {
          absl::StatusOr<iommu::v1::ListMemoryRegionsResponse> page =
              ctx.client.ListMemoryRegions(request);
          if (!page.ok()) return page.status();
          for (const auto& r : page->regions()) all.push_back(r);
          if (page->next_page_token().empty()) break;
          request.set_page_token(page->next_page_token());
        }
        if (ctx.options.json) {
          PrintListJson(ctx, all, &iommu::v1::ListMemoryRegionsResponse::mutable_regions);
        } else {
          PrintRegions(ctx, all);
        }
        return absl::OkStatus();
      });

  // Mappings and DMA.
  add("map-region", "DOMAIN IOVA REGION OFFSET SIZE [--prot rw|r|w]",
      "map IOVA -> a range of a memory region", 5, 5, {"prot"}, [](Context& ctx, const Args& a) {
        iommu::v1::MapRequest request;
        request.set_domain_id(Number(a.positional[0], "DOMAIN"));
        request.set_iova(Number(a.positional[1], "IOVA"));
        request.set_region_id(Number(a.positional[2], "REGION"));
        request.set_region_offset(Number(a.positional[3], "OFFSET"));
        request.set_size(Number(a.positional[4], "SIZE"));
        request.set_prot(Prot(a.Option("prot", "rw"), "--prot"));
        request.set_owner(ctx.options.owner);
        return Print<iommu::v1::MapResponse>(
            ctx, ctx.client.Map(request), [&](const iommu::v1::MapResponse& r) {
              ctx.out << "mapped " << Hex(r.mapping().iova()) << " -> region "
                      << request.region_id() << " + " << Hex(request.region_offset()) << " ("
                      << Hex(r.mapping().paddr()) << ") size " << HumanSize(r.mapping().size())
                      << " " << ProtName(r.mapping().prot()) << "\n";
            });
      });
  add("map", "DOMAIN IOVA PADDR SIZE [--prot rw|r|w]",
      "map IOVA -> a raw physical address (admins only; others use map-region)", 4, 4, {"prot"},
      [](Context& ctx, const Args& a) {
        iommu::v1::MapRequest request;
        request.set_domain_id(Number(a.positional[0], "DOMAIN"));
        request.set_iova(Number(a.positional[1], "IOVA"));
        request.set_paddr(Number(a.positional[2], "PADDR"));
        request.set_size(Number(a.positional[3], "SIZE"));
        request.set_prot(Prot(a.Option("prot", "rw"), "--prot"));
        request.set_owner(ctx.options.owner);
        return Print<iommu::v1::MapResponse>(
            ctx, ctx.client.Map(request), [&](const iommu::v1::MapResponse& r) {
              ctx.out << "mapped " << Hex(r.mapping().iova()) << " -> " << Hex(r.mapping().paddr())
                      << " size " << HumanSize(r.mapping().size()) << " "
                      << ProtName(r.mapping().prot()) << "\n";
            });
      });
  add("unmap", "DOMAIN IOVA SIZE", "unmap whole mappings in a range", 3, 3, {},
      [](Context& ctx, const Args& a) {
        iommu::v1::UnmapRequest request;
        request.set_domain_id(Number(a.positional[0], "DOMAIN"));
        request.set_iova(Number(a.positional[1], "IOVA"));
        request.set_size(Number(a.positional[2], "SIZE"));
        request.set_owner(ctx.options.owner);
        return Print<iommu::v1::UnmapResponse>(
            ctx, ctx.client.Unmap(request), [&](const iommu::v1::UnmapResponse& r) {
              ctx.out << "unmapped " << HumanSize(r.bytes_unmapped()) << "\n";
            });
      });
  add("unmap-all", "DOMAIN", "unmap every mapping of a domain", 1, 1, {},
      [](Context& ctx, const Args& a) {
        iommu::v1::UnmapRequest request;
        request.set_domain_id(Number(a.positional[0], "DOMAIN"));
        request.set_iova(0);
        request.set_size(~uint64_t{0});  // iova 0, size 2^64 - 1: all (as IOMMU_IOAS_UNMAP)
        request.set_owner(ctx.options.owner);
        return Print<iommu::v1::UnmapResponse>(
            ctx, ctx.client.Unmap(request), [&](const iommu::v1::UnmapResponse& r) {
              ctx.out << "unmapped " << HumanSize(r.bytes_unmapped()) << "\n";
            });
      });
  add("translate", "NAME IOVA [--access r|w|rw]", "emulate a DMA by the device", 2, 2, {"access"},
      [](Context& ctx, const Args& a) {
        iommu::v1::TranslateRequest request;
        request.set_device(a.positional[0]);
        request.set_iova(Number(a.positional[1], "IOVA"));
        request.set_access(Prot(a.Option("access", "r"), "--access"));
        return Print<iommu::v1::TranslateResponse>(
            ctx, ctx.client.Translate(request), [&](const iommu::v1::TranslateResponse& r) {
              if (r.fault() == iommu::v1::FAULT_REASON_NONE) {
                ctx.out << Hex(request.iova()) << " -> " << Hex(r.paddr()) << " (domain "
                        << r.domain_id() << ")\n";
              } else {
                ctx.out << "fault " << Short(iommu::v1::FaultReason_Name(r.fault()), "FAULT_REASON_")
                        << " at " << Hex(request.iova()) << " (domain " << r.domain_id() << ")\n";
              }
            });
      });
}

}  // namespace iommuctl
}  // namespace iommud

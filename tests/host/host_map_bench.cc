// Map+unmap of N 4K pages through iommud's API (per page: context; batched: MapBatch of the N
// pages, each its own mapping, then one Unmap over them) vs a direct VFIO_IOMMU_MAP_DMA loop, in
// the VM that `tests/host/run.sh --bench` boots (Debian's kernel, QEMU's intel-iommu, the edu at 00:02.0), as
// root. Reports pages/s (map+unmap pairs per second) of each and their ratio (goal >= 0.5); the
// figures are reported, never asserted: the exit status is non-zero only if a measurement could
// not run.
//
//   host_map_bench [--pages N] [--rounds R]      (IOMMUD_BIN names the iommud binary)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clients/cpp/fd_channel_client.h"
#include "clients/cpp/iommud_client.h"
#include "core/host/pci_driver_binder.h"
#include "core/host/sysfs_inventory.h"
#include "core/host/unique_fd.h"
#include "core/host/vfio_container.h"
#include "core/host/vfio_group.h"
#include "tests/host/vm_daemon.h"
#include "tests/host/vm_scenario_support.h"

namespace iommud {
namespace host {
namespace test {
namespace {

constexpr char kStateDir[] = "/tmp/iommud-bench";
constexpr char kSocket[] = "/tmp/iommud-bench/iommud.sock";  // StartVmDaemon's
constexpr char kFdSocket[] = "/tmp/iommud-bench/iommud.sock.fds";
constexpr char kOwner[] = "bench";
constexpr uint64_t kIovaBase = 0x100000;

absl::Status Step(const absl::Status& status, const char* what) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(what, ": ", status.ToString()));
}

#define BENCH_RETURN_IF_ERROR(expr, what)                 \
  do {                                                    \
    const absl::Status bench_status_ = Step((expr), what); \
    if (!bench_status_.ok()) return bench_status_;         \
  } while (0)

// What MeasureApi measures, in map+unmap pairs (pages) per second, and calls per second.
struct ApiRates {
  double health = 0;    // health Check round trips on the same connection (the RPC floor)
  double per_call = 0;  // one Map RPC per page, then one Unmap RPC per page (one round)
  double batched = 0;   // one MapBatch RPC of every page, then one Unmap RPC over them all
};

// Map+unmap pairs per second through iommud's API, per page and batched.
absl::StatusOr<ApiRates> MeasureApi(const char* binary, size_t pages, int rounds) {
  absl::StatusOr<pid_t> daemon = StartVmDaemon(binary, kStateDir);
  if (!daemon.ok()) return daemon.status();
  ApiRates rates;
  absl::Status result = [&]() -> absl::Status {
    ClientOptions options;
    options.target = absl::StrCat("unix:", kSocket);
    absl::StatusOr<std::unique_ptr<IommuClient>> client_or = IommuClient::Connect(options);
    BENCH_RETURN_IF_ERROR(client_or.status(), "connect");
    IommuClient& client = **client_or;
    const absl::Time health_start = absl::Now();
    for (size_t i = 0; i < pages; ++i) {
      BENCH_RETURN_IF_ERROR(client.CheckHealth().status(), "CheckHealth");
    }
    rates.health =
        static_cast<double>(pages) / absl::ToDoubleSeconds(absl::Now() - health_start);
    absl::StatusOr<std::unique_ptr<FdChannelClient>> fds = FdChannelClient::Connect(kFdSocket);
    BENCH_RETURN_IF_ERROR(fds.status(), "fd channel connect");

    iommu::v1::GetDeviceRequest get;
    get.set_device(kEduAlone);
    absl::StatusOr<iommu::v1::Device> device = client.GetDevice(get);
    BENCH_RETURN_IF_ERROR(device.status(), "GetDevice");
    const uint64_t group = device->group_id();
    iommu::v1::ClaimOwnershipRequest claim;
    claim.set_group_id(group);
    claim.set_owner(kOwner);
    BENCH_RETURN_IF_ERROR(client.ClaimOwnership(claim).status(), "ClaimOwnership");
    iommu::v1::AllocDomainRequest alloc;
    alloc.set_unit("dmar0");
    alloc.set_type(iommu::v1::DOMAIN_TYPE_UNMANAGED);
    alloc.set_owner(kOwner);
    absl::StatusOr<iommu::v1::Domain> domain = client.AllocDomain(alloc);
    BENCH_RETURN_IF_ERROR(domain.status(), "AllocDomain");
    iommu::v1::AttachGroupRequest attach;
    attach.set_group_id(group);
    attach.set_domain_id(domain->id());
    attach.set_owner(kOwner);
    BENCH_RETURN_IF_ERROR(client.AttachGroup(attach).status(), "AttachGroup");
    MemfdPages memory(pages);
    if (!memory.ok()) return absl::InternalError("memfd of the pages failed");
    absl::StatusOr<iommu::v1::MemoryRegionRef> region =
        (*fds)->RegisterMemory(memory.fd(), memory.size(), kOwner);
    BENCH_RETURN_IF_ERROR(region.status(), "RegisterMemory");

    iommu::v1::MapRequest map;
    map.set_domain_id(domain->id());
    map.set_region_id(region->id());
    map.set_size(kPage);
    map.set_prot(iommu::v1::PROT_READ | iommu::v1::PROT_WRITE);
    map.set_owner(kOwner);
    iommu::v1::UnmapRequest unmap;
    unmap.set_domain_id(domain->id());
    unmap.set_size(kPage);
    unmap.set_owner(kOwner);
    const absl::Time per_call_start = absl::Now();
    for (size_t i = 0; i < pages; ++i) {
      map.set_iova(kIovaBase + i * kPage);
      map.set_region_offset(i * kPage);
      BENCH_RETURN_IF_ERROR(client.Map(map).status(), "Map");
    }
    for (size_t i = 0; i < pages; ++i) {
      unmap.set_iova(kIovaBase + i * kPage);
      BENCH_RETURN_IF_ERROR(client.Unmap(unmap).status(), "Unmap");
    }
    rates.per_call =
        static_cast<double>(pages) / absl::ToDoubleSeconds(absl::Now() - per_call_start);

    // Batched: every page a mapping of its own (as above and as the direct loop), in one call.
    iommu::v1::MapBatchRequest batch;
    batch.set_domain_id(domain->id());
    batch.set_owner(kOwner);
    for (size_t i = 0; i < pages; ++i) {
      iommu::v1::MapBatchEntry* entry = batch.add_entries();
      entry->set_iova(kIovaBase + i * kPage);
      entry->set_size(kPage);
      entry->set_prot(iommu::v1::PROT_READ | iommu::v1::PROT_WRITE);
      entry->set_region_id(region->id());
      entry->set_region_offset(i * kPage);
    }
    iommu::v1::UnmapRequest unmap_all = unmap;
    unmap_all.set_iova(kIovaBase);
    unmap_all.set_size(pages * kPage);
    const absl::Time start = absl::Now();
    for (int round = 0; round < rounds; ++round) {
      absl::StatusOr<iommu::v1::MapBatchResponse> mapped = client.MapBatch(batch);
      BENCH_RETURN_IF_ERROR(mapped.status(), "MapBatch");
      if (static_cast<size_t>(mapped->mappings_size()) != pages) {
        return absl::InternalError("MapBatch returned a mapping count other than the pages'");
      }
      absl::StatusOr<iommu::v1::UnmapResponse> unmapped = client.Unmap(unmap_all);
      BENCH_RETURN_IF_ERROR(unmapped.status(), "Unmap of the batch");
      if (unmapped->bytes_unmapped() != pages * kPage) {
        return absl::InternalError("the Unmap of the batch removed less than every page");
      }
    }
    rates.batched =
        static_cast<double>(pages) * rounds / absl::ToDoubleSeconds(absl::Now() - start);

    // Everything back through the API (nothing is mapped after the last round).
    iommu::v1::DetachGroupRequest detach;
    detach.set_group_id(group);
    detach.set_domain_id(domain->id());
    detach.set_owner(kOwner);
    BENCH_RETURN_IF_ERROR(client.DetachGroup(detach).status(), "DetachGroup");
    iommu::v1::FreeDomainRequest free_domain;
    free_domain.set_domain_id(domain->id());
    free_domain.set_owner(kOwner);
    BENCH_RETURN_IF_ERROR(client.FreeDomain(free_domain).status(), "FreeDomain");
    iommu::v1::ReleaseOwnershipRequest release;
    release.set_group_id(group);
    release.set_owner(kOwner);
    BENCH_RETURN_IF_ERROR(client.ReleaseOwnership(release).status(), "ReleaseOwnership");
    iommu::v1::UnregisterMemoryRequest unregister;
    unregister.set_region_id(region->id());
    unregister.set_owner(kOwner);
    BENCH_RETURN_IF_ERROR(client.UnregisterMemory(unregister).status(), "UnregisterMemory");
    return absl::OkStatus();
  }();
  const absl::Status stopped = StopVmDaemon(*daemon, kStateDir);
  if (!result.ok()) return result;
  if (!stopped.ok()) return stopped;
  return rates;
}

// Map+unmap pairs per second with VFIO_IOMMU_MAP_DMA / UNMAP_DMA on a container of our own.
absl::StatusOr<double> MeasureDirect(size_t pages, int rounds) {
  SysfsInventory inventory;
  absl::StatusOr<PciDeviceInfo> info = inventory.PciDevice(kEduAlone);
  BENCH_RETURN_IF_ERROR(info.status(), "inventory of the edu");
  if (!info->iommu_group.has_value()) return absl::NotFoundError("the edu has no IOMMU group");
  PciDriverBinder binder;
  absl::StatusOr<std::vector<DriverBinding>> bindings =
      binder.BindGroupToVfio(*info->iommu_group);
  BENCH_RETURN_IF_ERROR(bindings.status(), "BindGroupToVfio");
  double rate = 0;
  absl::Status result = [&]() -> absl::Status {
    absl::StatusOr<std::unique_ptr<VfioContainer>> container = VfioContainer::Open();
    BENCH_RETURN_IF_ERROR(container.status(), "VfioContainer::Open");
    absl::StatusOr<std::unique_ptr<VfioGroup>> group = VfioGroup::Open(*info->iommu_group);
    BENCH_RETURN_IF_ERROR(group.status(), "VfioGroup::Open");
    BENCH_RETURN_IF_ERROR((*container)->Attach(**group), "Attach");
    MemfdPages memory(pages);
    if (!memory.ok()) return absl::InternalError("memfd of the pages failed");
    const absl::Time start = absl::Now();
    for (int round = 0; round < rounds; ++round) {
      for (size_t i = 0; i < pages; ++i) {
        BENCH_RETURN_IF_ERROR(
            (*container)->Map(kIovaBase + i * kPage, memory.data(i), kPage, kDmaReadWrite),
            "VFIO map");
      }
      for (size_t i = 0; i < pages; ++i) {
        BENCH_RETURN_IF_ERROR((*container)->Unmap(kIovaBase + i * kPage, kPage).status(),
                              "VFIO unmap");
      }
    }
    rate = static_cast<double>(pages) * rounds / absl::ToDoubleSeconds(absl::Now() - start);
    return Step((*container)->Detach(**group), "Detach");
  }();
  const absl::Status restored = Step(binder.RestoreAll(*bindings), "RestoreAll");
  if (!result.ok()) return result;
  if (!restored.ok()) return restored;
  return rate;
}

int Main(int argc, char** argv) {
  size_t pages = 1024;
  int rounds = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--pages" && i + 1 < argc) {
      pages = std::strtoul(argv[++i], nullptr, 10);
    } else if (arg == "--rounds" && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: host_map_bench [--pages N] [--rounds R]\n");
      return 2;
    }
  }
  if (pages == 0 || rounds <= 0) {
    std::fprintf(stderr, "host_map_bench: --pages and --rounds must be positive\n");
    return 2;
  }
  if (pages > 1024) {  // one MapBatch holds at most --max_repeated (1024) entries
    std::fprintf(stderr, "host_map_bench: --pages must be at most 1024\n");
    return 2;
  }
  const char* binary = std::getenv("IOMMUD_BIN");
  if (binary == nullptr) {
    std::fprintf(stderr, "host_map_bench: IOMMUD_BIN must name the iommud binary\n");
    return 2;
  }
  std::printf("host_map_bench: %zu pages of 4 KiB, %d rounds of map each then unmap each\n",
              pages, rounds);
  std::fflush(stdout);
  absl::StatusOr<ApiRates> api = MeasureApi(binary, pages, rounds);
  if (!api.ok()) {
    std::printf("host_map_bench: FAILED via iommud API: %s\n", api.status().ToString().c_str());
    return 1;
  }
  std::printf("host_map_bench: RPC floor (health Check round trips, context): %.0f calls/s\n",
              api->health);
  std::printf("host_map_bench: via iommud API, one Map and one Unmap RPC per page (context): "
              "%.0f pages/s\n",
              api->per_call);
  std::printf("host_map_bench: via iommud API, MapBatch of all pages + one Unmap: %.0f pages/s\n",
              api->batched);
  std::fflush(stdout);
  absl::StatusOr<double> direct = MeasureDirect(pages, rounds);
  if (!direct.ok()) {
    std::printf("host_map_bench: FAILED direct VFIO: %s\n", direct.status().ToString().c_str());
    return 1;
  }
  std::printf("host_map_bench: direct VFIO: %.0f pages/s\n", *direct);
  std::printf("host_map_bench: ratio per call (context): %.4f\n", api->per_call / *direct);
  std::printf("host_map_bench: ratio (API batched / direct): %.3f (goal >= 0.5)\n",
              api->batched / *direct);
  return 0;
}

}  // namespace
}  // namespace test
}  // namespace host
}  // namespace iommud

int main(int argc, char** argv) { return iommud::host::test::Main(argc, argv); }

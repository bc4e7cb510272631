// Resident memory per device and per 4K mapping, in-process (software backend): probes N devices
// (each in its own group, with its default and blocking domains), then maps P 4K pages in one
// domain (one Map call; the paddr is only 4K-aligned, so every page is a 4K leaf). Prints JSON.
//   memory_bench [DEVICES] [PAGES]   (defaults: 100000 devices, 10000000 pages)
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "core/backend/backend_factory.h"
#include "core/registry.h"

namespace {

uint64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace

int main(int argc, char** argv) {
  using namespace iommud;  // NOLINT
  const uint64_t devices = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 100000;
  const uint64_t pages = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 10000000;
  std::unique_ptr<IommuBackend> backend = CreateBackend("software").value();
  RegistryOptions options;
  options.backend = backend.get();
  std::unique_ptr<Registry> registry = Registry::Create(options).value();
  UnitCaps caps;
  caps.max_rids = static_cast<uint32_t>(devices + 16);
  caps.iova_bits = 48;
  if (!registry->AddUnit("u0", caps).ok()) return 1;

  const uint64_t before_devices = ResidentBytes();
  for (uint64_t i = 0; i < devices; ++i) {
    ProbeRequest request;
    request.unit = "u0";
    request.device = absl::StrCat("0000:", i);
    request.rid = static_cast<Rid>(i);
    if (!registry->ProbeDevice(request).ok()) return 1;
  }
  const uint64_t after_devices = ResidentBytes();

  const GroupId group = registry->GetDevice("0000:0").value().group;
  if (!registry->ClaimOwnership(group, "bench").ok()) return 1;
  const DomainId domain = registry->AllocDomain("u0", DomainType::kUnmanaged, "bench").value().id;
  const uint64_t before_pages = ResidentBytes();
  // Above the MSI window (a reserved region of the default caps).
  const uint64_t iova = uint64_t{64} << 30;
  if (!registry->Map(domain, iova, kPage4K, pages * kPage4K, kProtRead, "bench").ok()) return 1;
  const uint64_t after_pages = ResidentBytes();
  std::printf(
      "{\"devices\": %llu, \"bytes_per_device\": %.0f, \"pages\": %llu, "
      "\"bytes_per_4k_mapping\": %.1f, \"page_table_pages\": %llu}\n",
      static_cast<unsigned long long>(devices),
      devices ? double(after_devices - before_devices) / devices : 0.0,
      static_cast<unsigned long long>(pages),
      pages ? double(after_pages - before_pages) / pages : 0.0,
      static_cast<unsigned long long>(backend->Stats().page_table_pages));
  return 0;
}

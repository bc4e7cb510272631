#include "server/observability/instrumented_backend.h"

#include <chrono>

namespace iommud {

namespace {

// Observes the lifetime of the scope into `histogram`.
class ScopedTimer {
 public:
  explicit ScopedTimer(prometheus::Histogram& histogram)
      : histogram_(histogram), start_(std::chrono::steady_clock::now()) {}
  ~ScopedTimer() {
    histogram_.Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }

 private:
  prometheus::Histogram& histogram_;
  const std::chrono::steady_clock::time_point start_;
};

}  // namespace

InstrumentedBackend::InstrumentedBackend(IommuBackend* wrapped, DaemonMetrics* metrics)
    : ForwardingBackend(wrapped),
      add_unit_(metrics->BackendOpHistogram("add_unit")),
      alloc_domain_(metrics->BackendOpHistogram("alloc_domain")),
      free_domain_(metrics->BackendOpHistogram("free_domain")),
      attach_rid_(metrics->BackendOpHistogram("attach_rid")),
      release_rid_(metrics->BackendOpHistogram("release_rid")),
      map_(metrics->BackendOpHistogram("map")),
      unmap_(metrics->BackendOpHistogram("unmap")),
      invalidate_(metrics->BackendOpHistogram("invalidate_iotlb")),
      translate_(metrics->BackendOpHistogram("translate")),
      read_back_(metrics->BackendOpHistogram("read_back")) {}

absl::Status InstrumentedBackend::AddUnit(absl::string_view unit, const UnitCaps& caps) {
  ScopedTimer timer(add_unit_);
  return wrapped()->AddUnit(unit, caps);
}

absl::Status InstrumentedBackend::AllocDomain(absl::string_view unit, DomainId id,
                                              DomainType type) {
  ScopedTimer timer(alloc_domain_);
  return wrapped()->AllocDomain(unit, id, type);
}

absl::Status InstrumentedBackend::FreeDomain(DomainId id) {
  ScopedTimer timer(free_domain_);
  return wrapped()->FreeDomain(id);
}

absl::Status InstrumentedBackend::AttachRid(absl::string_view unit, Rid rid, DomainId domain) {
  ScopedTimer timer(attach_rid_);
  return wrapped()->AttachRid(unit, rid, domain);
}

absl::Status InstrumentedBackend::ReleaseRid(absl::string_view unit, Rid rid) {
  ScopedTimer timer(release_rid_);
  return wrapped()->ReleaseRid(unit, rid);
}

absl::Status InstrumentedBackend::Map(DomainId domain, uint64_t iova, uint64_t paddr,
                                      uint64_t size, uint32_t prot) {
  ScopedTimer timer(map_);
  return wrapped()->Map(domain, iova, paddr, size, prot);
}

absl::StatusOr<uint64_t> InstrumentedBackend::Unmap(DomainId domain, uint64_t iova,
                                                    uint64_t size) {
  ScopedTimer timer(unmap_);
  return wrapped()->Unmap(domain, iova, size);
}

absl::Status InstrumentedBackend::InvalidateIotlb(DomainId domain, uint64_t iova, uint64_t size) {
  ScopedTimer timer(invalidate_);
  return wrapped()->InvalidateIotlb(domain, iova, size);
}

Translation InstrumentedBackend::Translate(absl::string_view unit, Rid rid, uint64_t iova,
                                           uint32_t access) {
  ScopedTimer timer(translate_);
  return wrapped()->Translate(unit, rid, iova, access);
}

absl::StatusOr<RidEntry> InstrumentedBackend::ReadRid(absl::string_view unit, Rid rid) {
  ScopedTimer timer(read_back_);
  return wrapped()->ReadRid(unit, rid);
}

absl::StatusOr<std::vector<RidEntry>> InstrumentedBackend::ReadRids(absl::string_view unit) {
  ScopedTimer timer(read_back_);
  return wrapped()->ReadRids(unit);
}

std::vector<DomainId> InstrumentedBackend::ReadDomains() {
  ScopedTimer timer(read_back_);
  return wrapped()->ReadDomains();
}

absl::StatusOr<std::vector<Mapping>> InstrumentedBackend::ReadMappings(DomainId domain) {
  ScopedTimer timer(read_back_);
  return wrapped()->ReadMappings(domain);
}

}  // namespace iommud

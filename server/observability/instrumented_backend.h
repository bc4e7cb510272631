// InstrumentedBackend: an IommuBackend decorator timing every call of the wrapped backend into
// iommud_backend_op_seconds{op}. Thread-safe as the wrapped backend is.
#ifndef IOMMUD_SERVER_OBSERVABILITY_INSTRUMENTED_BACKEND_H_
#define IOMMUD_SERVER_OBSERVABILITY_INSTRUMENTED_BACKEND_H_

#include <prometheus/histogram.h>

#include <vector>

#include "core/backend/forwarding_backend.h"
#include "server/observability/daemon_metrics.h"

namespace iommud {

class InstrumentedBackend : public ForwardingBackend {
 public:
  // Neither is owned; both must outlive this.
  InstrumentedBackend(IommuBackend* wrapped, DaemonMetrics* metrics);

  absl::Status AddUnit(absl::string_view unit, const UnitCaps& caps) override;
  absl::Status AllocDomain(absl::string_view unit, DomainId id, DomainType type) override;
  absl::Status FreeDomain(DomainId id) override;
  absl::Status AttachRid(absl::string_view unit, Rid rid, DomainId domain) override;
  absl::Status ReleaseRid(absl::string_view unit, Rid rid) override;
  absl::Status Map(DomainId domain, uint64_t iova, uint64_t paddr, uint64_t size,
                   uint32_t prot) override;
  absl::StatusOr<uint64_t> Unmap(DomainId domain, uint64_t iova, uint64_t size) override;
  absl::Status InvalidateIotlb(DomainId domain, uint64_t iova, uint64_t size) override;
  Translation Translate(absl::string_view unit, Rid rid, uint64_t iova, uint32_t access) override;
  absl::StatusOr<RidEntry> ReadRid(absl::string_view unit, Rid rid) override;
  absl::StatusOr<std::vector<RidEntry>> ReadRids(absl::string_view unit) override;
  std::vector<DomainId> ReadDomains() override;
  absl::StatusOr<std::vector<Mapping>> ReadMappings(DomainId domain) override;

 private:
  prometheus::Histogram& add_unit_;
  prometheus::Histogram& alloc_domain_;
  prometheus::Histogram& free_domain_;
  prometheus::Histogram& attach_rid_;
  prometheus::Histogram& release_rid_;
  prometheus::Histogram& map_;
  prometheus::Histogram& unmap_;
  prometheus::Histogram& invalidate_;
  prometheus::Histogram& translate_;
  prometheus::Histogram& read_back_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_OBSERVABILITY_INSTRUMENTED_BACKEND_H_

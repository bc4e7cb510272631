#include "tests/core/testing/failing_backend.h"

#include "core/sync.h"

namespace iommud {

void FailingBackend::FailNth(Op op, int nth, absl::Status error) {
  MutexLock lock(&mu_);
  plans_[op] = Plan{nth, false, std::move(error)};
}

void FailingBackend::FailNext(Op op, int count, absl::Status error) {
  MutexLock lock(&mu_);
  Plan plan;
  plan.next = count;
  plan.error = std::move(error);
  plans_[op] = plan;
}

void FailingBackend::FailAll(Op op, absl::Status error) {
  MutexLock lock(&mu_);
  plans_[op] = Plan{0, true, std::move(error)};
}

void FailingBackend::Clear() {
  MutexLock lock(&mu_);
  plans_.clear();
}

int FailingBackend::calls(Op op) const {
  MutexLock lock(&mu_);
  auto it = calls_.find(op);
  return it == calls_.end() ? 0 : it->second;
}

absl::Status FailingBackend::Check(Op op) {
  MutexLock lock(&mu_);
  ++calls_[op];
  auto it = plans_.find(op);
  if (it == plans_.end()) return absl::OkStatus();
  Plan& plan = it->second;
  if (plan.always) return plan.error;
  if (plan.next > 0) {
    --plan.next;
    return plan.error;
  }
  if (plan.countdown <= 0) return absl::OkStatus();
  if (--plan.countdown == 0) return plan.error;
  return absl::OkStatus();
}

absl::Status FailingBackend::AddUnit(absl::string_view unit, const UnitCaps& caps) {
  absl::Status injected = Check(Op::kAddUnit);
  return injected.ok() ? wrapped()->AddUnit(unit, caps) : injected;
}

absl::Status FailingBackend::AllocDomain(absl::string_view unit, DomainId id, DomainType type) {
  absl::Status injected = Check(Op::kAllocDomain);
  return injected.ok() ? wrapped()->AllocDomain(unit, id, type) : injected;
}

absl::Status FailingBackend::FreeDomain(DomainId id) {
  absl::Status injected = Check(Op::kFreeDomain);
  return injected.ok() ? wrapped()->FreeDomain(id) : injected;
}

absl::Status FailingBackend::AttachRid(absl::string_view unit, Rid rid, DomainId domain) {
  absl::Status injected = Check(Op::kAttachRid);
  return injected.ok() ? wrapped()->AttachRid(unit, rid, domain) : injected;
}

absl::Status FailingBackend::ReleaseRid(absl::string_view unit, Rid rid) {
  absl::Status injected = Check(Op::kReleaseRid);
  return injected.ok() ? wrapped()->ReleaseRid(unit, rid) : injected;
}

absl::Status FailingBackend::Map(DomainId domain, uint64_t iova, uint64_t paddr, uint64_t size,
                                 uint32_t prot) {
  absl::Status injected = Check(Op::kMap);
  return injected.ok() ? wrapped()->Map(domain, iova, paddr, size, prot) : injected;
}

absl::StatusOr<uint64_t> FailingBackend::Unmap(DomainId domain, uint64_t iova, uint64_t size) {
  absl::Status injected = Check(Op::kUnmap);
  if (!injected.ok()) return injected;
  return wrapped()->Unmap(domain, iova, size);
}

absl::Status FailingBackend::InvalidateIotlb(DomainId domain, uint64_t iova, uint64_t size) {
  absl::Status injected = Check(Op::kInvalidateIotlb);
  return injected.ok() ? wrapped()->InvalidateIotlb(domain, iova, size) : injected;
}

}  // namespace iommud

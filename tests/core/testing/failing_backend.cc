#include "tests/core/testing/failing_backend.h"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace iommud {
namespace {

std::string PointOf(FailingBackend::Op op) {
  switch (op) {
    case FailingBackend::Op::kAddUnit: return "backend.add_unit";
    case FailingBackend::Op::kAllocDomain: return "backend.alloc_domain";
    case FailingBackend::Op::kFreeDomain: return "backend.free_domain";
    case FailingBackend::Op::kAttachRid: return "backend.attach";
    case FailingBackend::Op::kReleaseRid: return "backend.release";
    case FailingBackend::Op::kMap: return "backend.map";
    case FailingBackend::Op::kUnmap: return "backend.unmap";
    case FailingBackend::Op::kInvalidateIotlb: return "backend.invalidate";
  }
  return "";
}

void MustAdd(FaultInjector& injector, const FaultSpec& spec) {
  absl::StatusOr<uint64_t> id = injector.Add(spec);
  if (!id.ok()) {
    std::fprintf(stderr, "FailingBackend: %s\n", id.status().ToString().c_str());
    std::abort();
  }
}

}  // namespace

FailingBackend::FailingBackend(IommuBackend* wrapped)
    : FaultInjectingBackend(wrapped, &injector) {}

void FailingBackend::AddFault(Op op, FaultSpec::Mode mode, int n, absl::StatusCode code) {
  FaultSpec spec;
  spec.point = PointOf(op);
  spec.mode = mode;
  spec.n = n;
  spec.code = code == absl::StatusCode::kOk ? absl::StatusCode::kInternal : code;
  MustAdd(injector, spec);
}

void FailingBackend::FailNth(Op op, int nth, absl::Status error) {
  AddFault(op, FaultSpec::Mode::kNth, nth, error.code());
}

void FailingBackend::FailNext(Op op, int count, absl::Status error) {
  for (int nth = 1; nth <= count; ++nth) AddFault(op, FaultSpec::Mode::kNth, nth, error.code());
}

void FailingBackend::FailAll(Op op, absl::Status error) {
  AddFault(op, FaultSpec::Mode::kEveryKth, 1, error.code());
}

}  // namespace iommud

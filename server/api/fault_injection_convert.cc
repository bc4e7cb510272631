#include "server/api/fault_injection_convert.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"

namespace iommud {

namespace {

absl::Status Invalid(const std::string& why) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidFault, why);
}

// "UNAVAILABLE" -> kUnavailable (the names absl::StatusCodeToString prints).
bool ParseCode(const std::string& name, absl::StatusCode* code) {
  for (int value = 1; value <= 16; ++value) {
    const auto candidate = static_cast<absl::StatusCode>(value);
    if (absl::StatusCodeToString(candidate) == name) {
      *code = candidate;
      return true;
    }
  }
  return false;
}

}  // namespace

absl::StatusOr<FaultSpec> FaultSpecFromProto(const iommu::v1::FaultSpec& wire) {
  FaultSpec spec;
  spec.point = wire.point();
  switch (wire.mode()) {
    case iommu::v1::FaultSpec::MODE_UNSPECIFIED:
    case iommu::v1::FaultSpec::NTH: spec.mode = FaultSpec::Mode::kNth; break;
    case iommu::v1::FaultSpec::EVERY_KTH: spec.mode = FaultSpec::Mode::kEveryKth; break;
    case iommu::v1::FaultSpec::PROBABILITY: spec.mode = FaultSpec::Mode::kProbability; break;
    default: return Invalid(absl::StrCat("unknown mode ", wire.mode()));
  }
  spec.n = wire.n() == 0 ? 1 : wire.n();
  spec.probability = wire.probability();
  spec.seed = wire.seed() == 0 ? 1 : wire.seed();
  spec.fail = !wire.latency_only();
  if (!wire.code().empty() &&
      !ParseCode(absl::AsciiStrToUpper(wire.code()), &spec.code)) {
    return Invalid(absl::StrCat("unknown status code '", wire.code(), "'"));
  }
  spec.latency = absl::Microseconds(wire.latency_micros());
  spec.group = wire.group_id();
  spec.device = wire.device();
  return spec;
}

void FaultSpecToProto(const FaultSpec& spec, iommu::v1::FaultSpec* out) {
  out->set_point(spec.point);
  switch (spec.mode) {
    case FaultSpec::Mode::kNth: out->set_mode(iommu::v1::FaultSpec::NTH); break;
    case FaultSpec::Mode::kEveryKth: out->set_mode(iommu::v1::FaultSpec::EVERY_KTH); break;
    case FaultSpec::Mode::kProbability: out->set_mode(iommu::v1::FaultSpec::PROBABILITY); break;
  }
  out->set_n(spec.n);
  out->set_probability(spec.probability);
  out->set_seed(spec.seed);
  out->set_latency_only(!spec.fail);
  out->set_code(absl::StatusCodeToString(spec.code));
  out->set_latency_micros(absl::ToInt64Microseconds(spec.latency));
  out->set_group_id(spec.group);
  out->set_device(spec.device);
}

void FaultStateToProto(const FaultState& state, iommu::v1::InjectedFault* out) {
  out->set_fault_id(state.id);
  FaultSpecToProto(state.spec, out->mutable_spec());
  out->set_hits(state.hits);
  out->set_injected(state.injected);
}

}  // namespace iommud

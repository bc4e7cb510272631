// RegistryTest: a Registry over a real backend (wrapped in a FailingBackend), with a recording
// observer and a sync-point hook, plus helpers for the scenarios of docs/semantics.md. Every test
// ends with CheckInvariants(): the registry and the hardware must agree after every scenario.
//
// Parameterized by backend name ("software", and "emulated" where it is built).
#ifndef IOMMUD_TESTS_CORE_TESTING_REGISTRY_FIXTURE_H_
#define IOMMUD_TESTS_CORE_TESTING_REGISTRY_FIXTURE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "core/backend/iommu_backend.h"
#include "core/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/testing/backends_under_test.h"
#include "tests/core/testing/failing_backend.h"
#include "tests/core/testing/recording_observer.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace test {

inline constexpr char kOwner[] = "vmm-a";
inline constexpr char kOther[] = "vmm-b";

class RegistryTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override;
  void TearDown() override;

  // The backend under test: the parameter (a suite with more dimensions overrides it).
  virtual std::string BackendName() const { return GetParam(); }

  // Recreates the registry with `options` changes applied (backend/observer/hook are set here).
  void Recreate(const std::function<void(RegistryOptions*)>& tweak);

  // u0: 4K|2M|1G, 39-bit aperture; u1: 4K|2M, 32-bit aperture. Both have the MSI window reserved.
  static UnitCaps U0Caps();
  static UnitCaps U1Caps();

  DeviceInfo Probe(const std::string& name, Rid rid, std::vector<Rid> aliases = {},
                   const std::string& unit = "u0");
  GroupInfo Group(GroupId id);
  GroupInfo GroupOf(const std::string& device);
  DomainInfo Domain(DomainId id);
  // The domain the hardware says `rid` of `unit` points at (0: no valid entry).
  DomainId Hw(Rid rid, const std::string& unit = "u0");
  // Claims `device`'s group for kOwner and allocates + attaches an UNMANAGED domain to it.
  DomainId ClaimAndAttach(const std::string& device);
  // A snapshot of everything the registry shows, to check that a failed op changed nothing.
  std::string Snapshot();
  void ExpectConsistent();

  std::unique_ptr<IommuBackend> hardware_;
  std::unique_ptr<FailingBackend> backend_;  // what the registry uses
  RecordingObserver observer_;
  std::unique_ptr<Registry> registry_;

  // Called at every sync point (set by tests; null: nothing).
  absl::Mutex hook_mu_;
  std::function<void(absl::string_view)> hook_ ABSL_GUARDED_BY(hook_mu_);
  void SetHook(std::function<void(absl::string_view)> hook);
};

}  // namespace test
}  // namespace iommud

#endif  // IOMMUD_TESTS_CORE_TESTING_REGISTRY_FIXTURE_H_

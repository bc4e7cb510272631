// Concurrency stress: threads run random operations on a shared set of groups; every error must be
// one the rules allow, and the registry and the hardware must agree at the end. Bounded (a few
// thousand operations per thread) so it runs in seconds, also under ThreadSanitizer. A longer run:
// IOMMUD_STRESS_OPS=200000.
#include <atomic>
#include <cstdlib>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/testing/registry_fixture.h"

namespace iommud {
namespace test {
namespace {

constexpr int kThreads = 4;
constexpr int kGroups = 16;
constexpr int kDevicesPerGroup = 3;

int OpsPerThread() {
  const char* env = std::getenv("IOMMUD_STRESS_OPS");
  return env != nullptr ? std::atoi(env) : 3000;
}

class RegistryStressTest : public RegistryTest {
 protected:
  // Device k of group g: its own RID plus the group's shared alias, so the group forms by alias.
  static std::string DeviceName(int g, int k) { return absl::StrCat("g", g, "-d", k); }
  static Rid OwnRid(int g, int k) { return 0x1000 + g * 16 + k + 1; }
  static Rid GroupAlias(int g) { return 0x1000 + g * 16; }

  void Worker(int seed, std::atomic<int>* unexpected, std::atomic<int>* succeeded) {
    std::mt19937_64 rng(seed);
    const std::string owners[] = {kOwner, kOther};
    std::vector<DomainId> my_domains;
    auto pick = [&](int n) { return static_cast<int>(rng() % n); };
    for (int i = 0; i < OpsPerThread(); ++i) {
      const int g = pick(kGroups);
      const std::string device = DeviceName(g, pick(kDevicesPerGroup));
      const std::string& owner = owners[pick(2)];
      absl::StatusOr<DeviceInfo> info = registry_->GetDevice(device);
      const GroupId group = info.ok() ? info->group : static_cast<GroupId>(pick(64) + 1);
      absl::Status status;
      switch (pick(14)) {
        case 0: {
          ProbeRequest request;
          request.unit = "u0";
          request.device = device;
          request.rid = OwnRid(g, device.back() - '0');
          request.alias_rids = {GroupAlias(g)};
          status = registry_->ProbeDevice(request).status();
          break;
        }
        case 1: status = registry_->ReleaseDevice(device).status(); break;
        case 2: status = registry_->UseDefaultDomain(device).status(); break;
        case 3: status = registry_->UnuseDefaultDomain(device).status(); break;
        case 4: status = registry_->ClaimOwnership(group, owner).status(); break;
        case 5: status = registry_->ReleaseOwnership(group, owner).status(); break;
        case 6: status = registry_->ClaimDevice(device, owner).status(); break;
        case 7: status = registry_->ReleaseDeviceOwnership(device, owner).status(); break;
        case 8: {
          absl::StatusOr<DomainInfo> domain =
              registry_->AllocDomain("u0", DomainType::kUnmanaged, owner);
          status = domain.status();
          if (domain.ok()) my_domains.push_back(domain->id);
          break;
        }
        case 9: {
          if (my_domains.empty()) break;
          const size_t k = pick(static_cast<int>(my_domains.size()));
          status = registry_->FreeDomain(my_domains[k], owner).status();
          if (status.ok()) my_domains.erase(my_domains.begin() + k);
          break;
        }
        case 10:
        case 11: {
          if (my_domains.empty()) break;
          const DomainId domain = my_domains[pick(static_cast<int>(my_domains.size()))];
          status = pick(2) == 0 ? registry_->AttachGroup(group, domain, owner).status()
                                : registry_->DetachGroup(group, domain, owner).status();
          break;
        }
        case 12: {
          if (my_domains.empty()) break;
          const DomainId domain = my_domains[pick(static_cast<int>(my_domains.size()))];
          const uint64_t iova = pick(64) * kPage4K * 8;
          status = pick(2) == 0
                       ? registry_->Map(domain, iova, iova, kPage4K * (1 + pick(8)),
                                        kProtRead | kProtWrite, owner)
                             .status()
                       : registry_->Unmap(domain, iova, kPage4K * 8, owner).status();
          break;
        }
        case 13:
          status = registry_->Translate(device, pick(64) * kPage4K * 8, kProtRead).status();
          break;
      }
      // The only errors the rules allow here; never INTERNAL, UNKNOWN, DATA_LOSS, ...
      const absl::StatusCode code = status.code();
      if (code == absl::StatusCode::kOk) succeeded->fetch_add(1);
      if (code != absl::StatusCode::kOk && code != absl::StatusCode::kNotFound &&
          code != absl::StatusCode::kAlreadyExists &&
          code != absl::StatusCode::kFailedPrecondition &&
          code != absl::StatusCode::kPermissionDenied &&
          code != absl::StatusCode::kInvalidArgument) {
        ADD_FAILURE() << "unexpected " << status;
        unexpected->fetch_add(1);
      }
    }
    // Clean up this thread's domains where possible (attached ones stay; the checks cover them).
    for (DomainId domain : my_domains) {
      (void)registry_->FreeDomain(domain, kOwner);
      (void)registry_->FreeDomain(domain, kOther);
    }
  }
};

TEST_P(RegistryStressTest, RandomOperationsKeepTheRegistryAndTheHardwareInAgreement) {
  std::atomic<int> unexpected{0};
  std::atomic<int> succeeded{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back(
        [this, t, &unexpected, &succeeded] { Worker(1000 + t, &unexpected, &succeeded); });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(unexpected.load(), 0);
  // The mix must do real work, not just bounce off errors.
  EXPECT_GT(succeeded.load(), kThreads * OpsPerThread() / 5);
  ExpectConsistent();
  EXPECT_EQ(observer_.locks_acquired(), observer_.locks_released());

  // Everything can be torn down: release every device, then every domain must be freeable.
  for (const DeviceInfo& device : registry_->ListDevices()) {
    ASSERT_TRUE(registry_->ReleaseDevice(device.name).ok());
  }
  for (const DomainInfo& domain : registry_->ListDomains()) {
    if (domain.core_owned) continue;
    EXPECT_TRUE(domain.attached_groups.empty()) << "domain " << domain.id;
    EXPECT_TRUE(registry_->FreeDomain(domain.id, domain.owner).ok());
  }
  EXPECT_THAT(registry_->ListGroups(), ::testing::IsEmpty());
  EXPECT_EQ(hardware_->Stats().programmed_rids, 0u);
  EXPECT_EQ(hardware_->Stats().domains, 2u);  // the two units' release domains
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(RegistryStressTest);
INSTANTIATE_TEST_SUITE_P(Backends, RegistryStressTest, ::testing::ValuesIn(BackendsUnderTest()));

}  // namespace
}  // namespace test
}  // namespace iommud

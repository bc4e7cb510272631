// Many clients, many groups, one real iommud: each client thread has its own channel and walks its
// own groups through claim -> alloc -> attach -> map -> translate -> unmap -> detach -> free ->
// release, while other threads fight over one shared group and poll the inventory. Every call must
// succeed or fail with a code the rules allow; at the end every group is back on its default domain
// with no owner and no user domain is left. Bounded (seconds); IOMMUD_STRESS_ROUNDS raises it.
#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/cpp/iommud_client.h"
#include "core/error.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/daemon_fixture.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::iommud::test::TestDaemon;
using ::iommud::test::TestDaemonOptions;

constexpr int kWalkers = 6;
constexpr int kGroupsPerWalker = 2;
constexpr int kFighters = 3;

int Rounds() {
  const char* env = std::getenv("IOMMUD_STRESS_ROUNDS");
  return env != nullptr ? std::atoi(env) : 15;
}

std::string DeviceName(int walker, int k) { return absl::StrCat("0000:", 10 + walker, ":0", k, ".0"); }

// One unit; kWalkers x kGroupsPerWalker single-device groups, plus a shared group "0000:99:00.0".
std::string Topology() {
  std::string text = R"(units { name: "u0" caps { pgsize_bitmap: 0x201000 iova_bits: 39 } })";
  uint32_t rid = 0x100;
  for (int w = 0; w < kWalkers; ++w) {
    for (int k = 0; k < kGroupsPerWalker; ++k) {
      absl::StrAppend(&text, "\ndevices { unit: \"u0\" name: \"", DeviceName(w, k),
                      "\" rid: ", rid++, " }");
    }
  }
  absl::StrAppend(&text, "\ndevices { unit: \"u0\" name: \"0000:99:00.0\" rid: 0x999 }");
  return text;
}

class IommudStressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TestDaemonOptions options;
    options.topology = Topology();
    ASSERT_OK_AND_ASSIGN(daemon_, TestDaemon::Start(options));
  }
  void TearDown() override {
    if (daemon_ == nullptr) return;
    absl::StatusOr<int> exit_status = daemon_->Stop();
    ASSERT_TRUE(exit_status.ok()) << exit_status.status();
    EXPECT_EQ(*exit_status, 0) << daemon_->Log();
  }

  void Fail(const std::string& what, const absl::Status& status) {
    ADD_FAILURE() << what << ": " << status;
    failures_.fetch_add(1);
  }

  // The full VMM walkthrough on `device`'s group, `Rounds()` times.
  void Walk(const std::string& device, const std::string& owner) {
    absl::StatusOr<std::unique_ptr<IommuClient>> connected = daemon_->Connect();
    if (!connected.ok()) return Fail("connect", connected.status());
    IommuClient& client = **connected;
    iommu::v1::GetDeviceRequest get;
    get.set_device(device);
    absl::StatusOr<iommu::v1::Device> info = client.GetDevice(get);
    if (!info.ok()) return Fail("get device", info.status());
    const uint64_t group = info->group_id();
    for (int round = 0; round < Rounds(); ++round) {
      iommu::v1::ClaimOwnershipRequest claim;
      claim.set_group_id(group);
      claim.set_owner(owner);
      if (auto s = client.ClaimOwnership(claim); !s.ok()) return Fail("claim", s.status());
      iommu::v1::AllocDomainRequest alloc;
      alloc.set_unit("u0");
      alloc.set_owner(owner);
      absl::StatusOr<iommu::v1::Domain> domain = client.AllocDomain(alloc);
      if (!domain.ok()) return Fail("alloc", domain.status());
      iommu::v1::AttachGroupRequest attach;
      attach.set_group_id(group);
      attach.set_domain_id(domain->id());
      attach.set_owner(owner);
      if (auto s = client.AttachGroup(attach); !s.ok()) return Fail("attach", s.status());
      const uint64_t iova = 0x200000 * (1 + round % 8);
      iommu::v1::MapRequest map;
      map.set_domain_id(domain->id());
      map.set_iova(iova);
      map.set_paddr(0x40000000 + round * 0x200000);
      map.set_size(0x200000);
      map.set_owner(owner);
      if (auto s = client.Map(map); !s.ok()) return Fail("map", s.status());
      iommu::v1::TranslateRequest dma;
      dma.set_device(device);
      dma.set_iova(iova + 0x40);
      absl::StatusOr<iommu::v1::TranslateResponse> hit = client.Translate(dma);
      if (!hit.ok()) return Fail("translate", hit.status());
      EXPECT_EQ(hit->paddr(), 0x40000000 + round * 0x200000 + 0x40);
      iommu::v1::UnmapRequest unmap;
      unmap.set_domain_id(domain->id());
      unmap.set_iova(iova);
      unmap.set_size(0x200000);
      unmap.set_owner(owner);
      absl::StatusOr<iommu::v1::UnmapResponse> unmapped = client.Unmap(unmap);
      if (!unmapped.ok()) return Fail("unmap", unmapped.status());
      EXPECT_EQ(unmapped->bytes_unmapped(), 0x200000u);
      absl::StatusOr<iommu::v1::TranslateResponse> miss = client.Translate(dma);
      if (!miss.ok()) return Fail("translate", miss.status());
      EXPECT_EQ(miss->fault(), iommu::v1::FAULT_REASON_NO_MAPPING);
      iommu::v1::DetachGroupRequest detach;
      detach.set_group_id(group);
      detach.set_domain_id(domain->id());
      detach.set_owner(owner);
      if (auto s = client.DetachGroup(detach); !s.ok()) return Fail("detach", s.status());
      iommu::v1::FreeDomainRequest free;
      free.set_domain_id(domain->id());
      free.set_owner(owner);
      if (auto s = client.FreeDomain(free); !s.ok()) return Fail("free", s.status());
      iommu::v1::ReleaseOwnershipRequest release;
      release.set_group_id(group);
      release.set_owner(owner);
      if (auto s = client.ReleaseOwnership(release); !s.ok()) return Fail("release", s.status());
    }
  }

  // Claim/release the shared group as `owner`: losing the race is GROUP_IN_USE, NOT_OWNER or
  // GROUP_NOT_OWNED, never anything else.
  void Fight(uint64_t group, const std::string& owner, std::atomic<int>* wins) {
    absl::StatusOr<std::unique_ptr<IommuClient>> connected = daemon_->Connect();
    if (!connected.ok()) return Fail("connect", connected.status());
    IommuClient& client = **connected;
    for (int round = 0; round < Rounds() * 4; ++round) {
      iommu::v1::ClaimOwnershipRequest claim;
      claim.set_group_id(group);
      claim.set_owner(owner);
      absl::StatusOr<iommu::v1::Group> claimed = client.ClaimOwnership(claim);
      if (!claimed.ok()) {
        if (ErrorReason(claimed.status()) != "GROUP_IN_USE") Fail("fight claim", claimed.status());
        continue;
      }
      wins->fetch_add(1);
      EXPECT_EQ(claimed->owner(), test::OwnOwner(owner));
      iommu::v1::ReleaseOwnershipRequest release;
      release.set_group_id(group);
      release.set_owner(owner);
      if (auto s = client.ReleaseOwnership(release); !s.ok()) Fail("fight release", s.status());
    }
  }

  void Poll(std::atomic<bool>* stop) {
    absl::StatusOr<std::unique_ptr<IommuClient>> connected = daemon_->Connect();
    if (!connected.ok()) return Fail("connect", connected.status());
    while (!stop->load()) {
      absl::StatusOr<std::vector<iommu::v1::Group>> groups = (*connected)->ListAllGroups();
      if (!groups.ok()) return Fail("list groups", groups.status());
      EXPECT_EQ(groups->size(), static_cast<size_t>(kWalkers * kGroupsPerWalker + 1));
    }
  }

  std::unique_ptr<TestDaemon> daemon_;
  std::atomic<int> failures_{0};
};

TEST_F(IommudStressTest, ManyClientsOnManyGroupsLeaveEveryGroupClean) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<IommuClient> client, daemon_->Connect());
  iommu::v1::GetDeviceRequest get;
  get.set_device("0000:99:00.0");
  ASSERT_OK_AND_ASSIGN(iommu::v1::Device shared, client->GetDevice(get));

  std::atomic<bool> stop{false};
  std::atomic<int> wins{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWalkers; ++w) {
    for (int k = 0; k < kGroupsPerWalker; ++k) {
      threads.emplace_back([this, w, k] { Walk(DeviceName(w, k), absl::StrCat("vmm-", w)); });
    }
  }
  for (int f = 0; f < kFighters; ++f) {
    threads.emplace_back([this, &shared, f, &wins] {
      Fight(shared.group_id(), absl::StrCat("fighter-", f), &wins);
    });
  }
  std::thread poller([this, &stop] { Poll(&stop); });
  for (std::thread& thread : threads) thread.join();
  stop.store(true);
  poller.join();

  EXPECT_EQ(failures_.load(), 0);
  EXPECT_GT(wins.load(), 0);
  ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::Group> groups, client->ListAllGroups());
  for (const iommu::v1::Group& group : groups) {
    EXPECT_EQ(group.owner(), "") << group.id();
    EXPECT_EQ(group.owner_cnt(), 0u) << group.id();
    EXPECT_EQ(group.domain_id(), group.default_domain_id()) << group.id();
  }
  ASSERT_OK_AND_ASSIGN(std::vector<iommu::v1::Domain> domains, client->ListAllDomains());
  for (const iommu::v1::Domain& domain : domains) {
    EXPECT_TRUE(domain.core_owned()) << "user domain " << domain.id() << " left behind";
  }
}

}  // namespace
}  // namespace iommud

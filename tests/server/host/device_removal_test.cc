// DeviceRemovalCoordinator and HostEventWatcher on a real registry (software backend), with a
// scripted uevent source and real eventfds standing in for the kernel's request triggers.
#include "server/host/device_removal.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "core/backend/backend_factory.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/sync.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/host/host_event_watcher.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using Kind = RegistryEvent::Kind;

constexpr char kOwner[] = "uid:1000/vm1";

class RecordingObserver : public RegistryObserver {
 public:
  void OnEvent(const RegistryEvent& event) override {
    MutexLock lock(&mu_);
    events_.push_back(event);
  }
  std::vector<RegistryEvent> Of(Kind kind) const {
    MutexLock lock(&mu_);
    std::vector<RegistryEvent> out;
    for (const RegistryEvent& event : events_) {
      if (event.kind == kind) out.push_back(event);
    }
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<RegistryEvent> events_;
};

class ScriptedUevents : public host::UeventSource {
 public:
  void Push(host::Uevent event) {
    MutexLock lock(&mu_);
    queue_.push_back(std::move(event));
    pushed_.SignalAll();
  }
  absl::StatusOr<std::optional<host::Uevent>> Next(absl::Duration timeout) override {
    MutexLock lock(&mu_);
    const absl::Time deadline = absl::Now() + timeout;
    while (queue_.empty()) {
      if (WaitWithDeadline(&pushed_, &mu_, deadline)) break;
    }
    if (queue_.empty()) return std::optional<host::Uevent>();
    host::Uevent event = std::move(queue_.front());
    queue_.pop_front();
    return std::optional<host::Uevent>(std::move(event));
  }

 private:
  absl::Mutex mu_;
  absl::CondVar pushed_;
  std::deque<host::Uevent> queue_ ABSL_GUARDED_BY(mu_);
};

host::Uevent PciEvent(const std::string& action, const std::string& device) {
  host::Uevent event;
  event.action = action;
  event.subsystem = "pci";
  event.devpath = "/devices/pci0000:00/" + device;
  event.vars["PCI_SLOT_NAME"] = device;
  return event;
}

class DeviceRemovalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(backend_, CreateBackend("software"));
    RegistryOptions options;
    options.backend = backend_.get();
    ASSERT_OK_AND_ASSIGN(registry_, Registry::Create(options));
    UnitCaps caps;
    caps.pgsize_bitmap = kPage4K;
    caps.iova_bits = 32;
    ASSERT_TRUE(registry_->AddUnit("u0", caps).ok());
    // Two devices sharing RID 9 (an alias, as behind a conventional PCI bridge): one group.
    for (const auto& [name, rid] : std::vector<std::pair<std::string, Rid>>{{"a", 1}, {"b", 2}}) {
      ASSERT_OK(registry_->ProbeDevice(Probe(name, rid)).status());
    }
    ASSERT_OK_AND_ASSIGN(DeviceInfo a, registry_->GetDevice("a"));
    group_ = a.group;

    DeviceRemovalOptions removal;
    removal.registry = registry_.get();
    removal.observer = &observer_;
    removal.release_timeout = absl::Seconds(2);
    removal.probe_for = [this](const std::string& device) -> absl::StatusOr<ProbeRequest> {
      if (device == "a") return Probe("a", 1);
      return Error(absl::StatusCode::kNotFound, reason::kDeviceNotFound, "not at start-up");
    };
    removal.count_outcome = [this](absl::string_view outcome) {
      MutexLock lock(&mu_);
      outcomes_.emplace_back(outcome);
    };
    coordinator_ = std::make_unique<DeviceRemovalCoordinator>(std::move(removal));
  }

  static ProbeRequest Probe(const std::string& name, Rid rid) {
    ProbeRequest probe;
    probe.unit = "u0";
    probe.device = name;
    probe.rid = rid;
    probe.alias_rids = {9};
    return probe;
  }

  // kOwner claims the group, attaches it to its domain and maps one page.
  DomainId OwnAndMap() {
    EXPECT_TRUE(registry_->ClaimOwnership(group_, kOwner).ok());
    absl::StatusOr<DomainInfo> domain = registry_->AllocDomain("u0", DomainType::kUnmanaged, kOwner);
    EXPECT_TRUE(domain.ok());
    EXPECT_TRUE(registry_->AttachGroup(group_, domain->id, kOwner).ok());
    EXPECT_TRUE(registry_->Map(domain->id, 0x10000, 0x200000, 0x1000, kProtRead | kProtWrite, kOwner)
                    .ok());
    return domain->id;
  }

  std::vector<std::string> Outcomes() {
    MutexLock lock(&mu_);
    return outcomes_;
  }

  std::unique_ptr<IommuBackend> backend_;
  std::unique_ptr<Registry> registry_;
  GroupId group_ = 0;
  RecordingObserver observer_;
  std::unique_ptr<DeviceRemovalCoordinator> coordinator_;
  absl::Mutex mu_;
  std::vector<std::string> outcomes_;
};

TEST_F(DeviceRemovalTest, AKernelRemovalGoesThroughTheRegistryAndKeepsTheSharedRid) {
  const DomainId domain = OwnAndMap();
  coordinator_->OnUevent(PciEvent("remove", "a"), absl::Now());
  EXPECT_FALSE(registry_->GetDevice("a").ok());
  ASSERT_OK_AND_ASSIGN(GroupInfo group, registry_->GetGroup(group_));
  EXPECT_THAT(group.devices, ElementsAre("b"));
  EXPECT_EQ(group.owner, kOwner);  // the survivor stays owned, on the owner's domain
  EXPECT_EQ(group.domain, domain);
  ASSERT_OK_AND_ASSIGN(RidEntry shared, backend_->ReadRid("u0", 9));
  EXPECT_EQ(shared.domain, domain) << "the shared RID must never be reprogrammed";
  EXPECT_EQ(coordinator_->stats().removed, 1u);
  EXPECT_THAT(Outcomes(), IsEmpty());  // no release request: no outcome

  // The kernel adds it back: probed again; an unknown device is not adopted.
  coordinator_->OnUevent(PciEvent("add", "a"), absl::Now());
  coordinator_->OnUevent(PciEvent("add", "z"), absl::Now());
  EXPECT_TRUE(registry_->GetDevice("a").ok());
  EXPECT_FALSE(registry_->GetDevice("z").ok());
  EXPECT_EQ(coordinator_->stats().added, 1u);
  EXPECT_EQ(coordinator_->stats().add_refused, 1u);
  // Other subsystems and unknown removals are ignored.
  host::Uevent vfio = PciEvent("remove", "7");
  vfio.subsystem = "vfio";
  coordinator_->OnUevent(vfio, absl::Now());
  coordinator_->OnUevent(PciEvent("remove", "z"), absl::Now());
  EXPECT_EQ(coordinator_->stats().removed, 1u);
}

TEST_F(DeviceRemovalTest, TheOwnerReleasingInTimeIsReleased) {
  const DomainId domain = OwnAndMap();
  const absl::Time t0 = absl::Now();
  coordinator_->OnReleaseRequested("a", t0);
  coordinator_->OnReleaseRequested("a", t0 + absl::Seconds(1));  // the kernel's repeat
  ASSERT_EQ(observer_.Of(Kind::kReleaseRequested).size(), 1u);
  EXPECT_EQ(observer_.Of(Kind::kReleaseRequested)[0].owner, kOwner);
  EXPECT_EQ(observer_.Of(Kind::kReleaseRequested)[0].group, group_);
  coordinator_->Tick(t0 + absl::Seconds(1));  // not yet
  coordinator_->OnUevent(PciEvent("remove", "a"), t0 + absl::Milliseconds(1500));
  coordinator_->Tick(t0 + absl::Seconds(5));  // nothing left to revoke
  EXPECT_THAT(Outcomes(), ElementsAre("released"));
  ASSERT_EQ(observer_.Of(Kind::kReleaseResolved).size(), 1u);
  EXPECT_EQ(observer_.Of(Kind::kReleaseResolved)[0].detail, "released");
  ASSERT_OK_AND_ASSIGN(std::vector<Mapping> mappings, registry_->ListMappings(domain));
  EXPECT_EQ(mappings.size(), 1u);  // the owner's mappings are untouched
}

TEST_F(DeviceRemovalTest, TheOwnerKeepingTheFdIsRevokedAfterTheTimeout) {
  const DomainId domain = OwnAndMap();
  const absl::Time t0 = absl::Now();
  coordinator_->OnReleaseRequested("a", t0);
  EXPECT_EQ(coordinator_->NextDeadline(), t0 + absl::Seconds(2));
  coordinator_->Tick(t0 + absl::Seconds(2));
  EXPECT_THAT(Outcomes(), ElementsAre("revoked"));
  ASSERT_OK_AND_ASSIGN(std::vector<Mapping> mappings, registry_->ListMappings(domain));
  EXPECT_THAT(mappings, IsEmpty());
  const Translation t = backend_->Translate("u0", 9, 0x10000, kProtRead);
  EXPECT_NE(t.fault, FaultReason::kNone) << "the device must no longer reach the owner's memory";
  EXPECT_EQ(observer_.Of(Kind::kReleaseResolved).at(0).detail, "revoked");
  // The kernel's later repeats are ignored; its removal (once the owner closes) is applied.
  coordinator_->OnReleaseRequested("a", t0 + absl::Seconds(10));
  coordinator_->OnUevent(PciEvent("remove", "a"), t0 + absl::Seconds(11));
  EXPECT_THAT(Outcomes(), ElementsAre("revoked"));
  EXPECT_FALSE(registry_->GetDevice("a").ok());
  EXPECT_EQ(observer_.Of(Kind::kReleaseRequested).size(), 1u);
}

TEST_F(DeviceRemovalTest, TheWatcherHearsEventfdsAndUevents) {
  OwnAndMap();
  auto source = std::make_unique<ScriptedUevents>();
  ScriptedUevents* uevents = source.get();
  HostEventWatcher watcher(coordinator_.get(), std::move(source), absl::Milliseconds(20));
  watcher.Start();
  host::UniqueFd request(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  ASSERT_TRUE(request.valid());
  const int request_fd = request.get();
  // A replaced eventfd is closed by the watcher (not by us).
  watcher.WatchReleaseRequests("a", host::UniqueFd(eventfd(0, EFD_CLOEXEC)));
  host::UniqueFd mine(dup(request_fd));
  watcher.WatchReleaseRequests("a", std::move(request));
  EXPECT_EQ(watcher.watched(), 1u);
  const uint64_t one = 1;
  ASSERT_EQ(write(mine.get(), &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (Outcomes().empty() && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_THAT(Outcomes(), ElementsAre("revoked"));  // nobody removed it within 2 s
  uevents->Push(PciEvent("remove", "a"));
  while (registry_->GetDevice("a").ok() && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_FALSE(registry_->GetDevice("a").ok());
  while (watcher.watched() != 0 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(watcher.watched(), 0u);  // the removed device's eventfd is dropped
  watcher.Stop();
}

TEST_F(DeviceRemovalTest, ADeviceAddedIntoAHeldGroupIsProbedOnlyAfterTheRelease) {
  std::atomic<bool> held{true};
  DeviceRemovalOptions removal;
  removal.registry = registry_.get();
  removal.probe_for = [](const std::string& device) -> absl::StatusOr<ProbeRequest> {
    return Probe(device, 1);
  };
  removal.holds_group = [&](const std::string&) { return held.load(); };
  DeviceRemovalCoordinator coordinator(std::move(removal));
  coordinator.OnUevent(PciEvent("remove", "a"), absl::Now());
  coordinator.OnUevent(PciEvent("add", "a"), absl::Now());
  EXPECT_FALSE(registry_->GetDevice("a").ok());  // not adopted while the group is held
  coordinator.Tick(absl::Now());
  EXPECT_FALSE(registry_->GetDevice("a").ok());
  held = false;
  coordinator.Tick(absl::Now());
  EXPECT_TRUE(registry_->GetDevice("a").ok());
  EXPECT_EQ(coordinator.stats().held_back, 1u);
  EXPECT_EQ(coordinator.stats().added, 1u);
  // Held back, then removed again before the release: forgotten.
  held = true;
  coordinator.OnUevent(PciEvent("remove", "a"), absl::Now());
  coordinator.OnUevent(PciEvent("add", "a"), absl::Now());
  coordinator.OnUevent(PciEvent("remove", "a"), absl::Now());
  held = false;
  coordinator.Tick(absl::Now());
  EXPECT_FALSE(registry_->GetDevice("a").ok());
}

TEST_F(DeviceRemovalTest, AnEventfdIsDroppedOnceNoDeviceFdCanBeOpen) {
  const DomainId domain = OwnAndMap();
  HostEventWatcher watcher(coordinator_.get(), nullptr, absl::Milliseconds(20));
  watcher.Start();
  watcher.WatchReleaseRequests("b", host::UniqueFd(eventfd(0, EFD_CLOEXEC)));
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(watcher.watched(), 1u);  // the group is on the owner's domain: fds may be open
  ASSERT_OK(registry_->DetachGroup(group_, domain, kOwner).status());
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (watcher.watched() != 0 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(watcher.watched(), 0u);
  watcher.Stop();
}

// The kernel signalled a device's eventfd (its removal started) and a new fd of the device was
// armed before the request thread polled the old eventfd: the request is not retired with it.
// (The watcher is started only after the re-arming, so the old eventfd is never polled.)
TEST_F(DeviceRemovalTest, ARequestSignalledBeforeTheEventfdIsReplacedIsNotLost) {
  OwnAndMap();
  HostEventWatcher watcher(coordinator_.get(), nullptr, absl::Milliseconds(20));
  host::UniqueFd first(eventfd(0, EFD_CLOEXEC));  // blocking: replacing it must not block
  ASSERT_TRUE(first.valid());
  host::UniqueFd kernel(dup(first.get()));
  watcher.WatchReleaseRequests("a", std::move(first));
  const uint64_t one = 1;
  ASSERT_EQ(write(kernel.get(), &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
  watcher.WatchReleaseRequests("a", host::UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)));
  EXPECT_EQ(watcher.watched(), 1u);
  watcher.Start();
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (observer_.Of(Kind::kReleaseRequested).empty() && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ(observer_.Of(Kind::kReleaseRequested).size(), 1u);
  EXPECT_EQ(observer_.Of(Kind::kReleaseRequested)[0].device, "a");
  EXPECT_EQ(coordinator_->stats().requests, 1u);
  watcher.Stop();
}

// A replaced eventfd that was never signalled is no request.
TEST_F(DeviceRemovalTest, AQuietReplacedEventfdIsNoRequest) {
  OwnAndMap();
  HostEventWatcher watcher(coordinator_.get(), nullptr, absl::Milliseconds(20));
  watcher.WatchReleaseRequests("a", host::UniqueFd(eventfd(0, EFD_CLOEXEC)));
  watcher.WatchReleaseRequests("a", host::UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)));
  watcher.Start();
  absl::SleepFor(absl::Milliseconds(200));  // ten poll intervals
  EXPECT_THAT(observer_.Of(Kind::kReleaseRequested), IsEmpty());
  EXPECT_EQ(coordinator_->stats().requests, 0u);
  watcher.Stop();
}

}  // namespace
}  // namespace iommud

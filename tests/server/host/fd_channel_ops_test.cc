// RegistryFdChannelOps on a real registry (software backend) with a fake DeviceFdProvider: only the
// owner of an attached group gets a device fd, and the fd is the provider's.
#include "server/host/fd_channel_ops.h"

#include <fcntl.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/backend/backend_factory.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/host/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kOwner[] = "uid:1000/vm1";
constexpr char kOther[] = "uid:1001/vm2";

// Hands out the write end of a new pipe per call and keeps the read end, so a test can check that
// the fd it got is the one made here.
class FakeDeviceFds : public host::DeviceFdProvider {
 public:
  absl::StatusOr<host::UniqueFd> DeviceFd(absl::string_view device) override {
    asked.emplace_back(device);
    if (fail) {
      return Error(absl::StatusCode::kInternal, reason::kDeviceFdFailed, "VFIO said no",
                   {{"device", std::string(device)}});
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return absl::InternalError("pipe");
    read_ends.emplace_back(p[0]);
    return host::UniqueFd(p[1]);
  }

  std::vector<std::string> asked;
  std::vector<host::UniqueFd> read_ends;
  bool fail = false;
};

class FdChannelOpsTest : public ::testing::Test {
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
    for (const auto& [name, rid] : std::vector<std::pair<std::string, Rid>>{{"d0", 1}, {"d1", 2}}) {
      ProbeRequest probe;
      probe.unit = "u0";
      probe.device = name;
      probe.rid = rid;
      ASSERT_OK_AND_ASSIGN(DeviceInfo device, registry_->ProbeDevice(probe));
      groups_.push_back(device.group);
    }
  }

  // kOwner claims d0's group and attaches it to a domain of its own.
  void ClaimAndAttachD0() {
    ASSERT_TRUE(registry_->ClaimOwnership(groups_[0], kOwner).ok());
    ASSERT_OK_AND_ASSIGN(DomainInfo domain,
                         registry_->AllocDomain("u0", DomainType::kUnmanaged, kOwner));
    ASSERT_TRUE(registry_->AttachGroup(groups_[0], domain.id, kOwner).ok());
  }

  std::unique_ptr<IommuBackend> backend_;
  std::unique_ptr<Registry> registry_;
  std::vector<GroupId> groups_;
  FakeDeviceFds device_fds_;
};

TEST_F(FdChannelOpsTest, TheOwnerOfAnAttachedGroupGetsTheProvidersFd) {
  ClaimAndAttachD0();
  RegistryFdChannelOps ops(registry_.get(), &device_fds_);
  ASSERT_OK_AND_ASSIGN(host::UniqueFd fd, ops.OpenDevice("d0", kOwner));
  EXPECT_THAT(device_fds_.asked, ElementsAre("d0"));
  ASSERT_EQ(write(fd.get(), "dev", 3), 3);
  char back[3] = {};
  ASSERT_EQ(read(device_fds_.read_ends[0].get(), back, 3), 3);
  EXPECT_EQ(std::string(back, 3), "dev");
}

TEST_F(FdChannelOpsTest, AnotherOwnerIsRefusedBeforeTheProviderIsAsked) {
  ClaimAndAttachD0();
  RegistryFdChannelOps ops(registry_.get(), &device_fds_);
  EXPECT_ERROR(ops.OpenDevice("d0", kOther), kPermissionDenied, "NOT_OWNER");
  EXPECT_THAT(device_fds_.asked, IsEmpty());
}

TEST_F(FdChannelOpsTest, AnUnattachedOrUnownedGroupIsRefused) {
  RegistryFdChannelOps ops(registry_.get(), &device_fds_);
  EXPECT_ERROR(ops.OpenDevice("d1", kOwner), kFailedPrecondition, "GROUP_NOT_OWNED");
  ASSERT_TRUE(registry_->ClaimOwnership(groups_[1], kOwner).ok());  // blocked, not attached
  EXPECT_ERROR(ops.OpenDevice("d1", kOwner), kFailedPrecondition, "GROUP_NOT_ATTACHED");
  EXPECT_ERROR(ops.OpenDevice("nope", kOwner), kNotFound, "DEVICE_NOT_FOUND");
  EXPECT_THAT(device_fds_.asked, IsEmpty());
}

TEST_F(FdChannelOpsTest, TheProvidersErrorComesBackUnchanged) {
  ClaimAndAttachD0();
  device_fds_.fail = true;
  RegistryFdChannelOps ops(registry_.get(), &device_fds_);
  EXPECT_ERROR(ops.OpenDevice("d0", kOwner), kInternal, "DEVICE_FD_FAILED");
  EXPECT_THAT(device_fds_.asked, ElementsAre("d0"));
}

TEST_F(FdChannelOpsTest, WithoutAProviderTheOwnerGetsNoDeviceFds) {
  RegistryFdChannelOps ops(registry_.get(), nullptr);
  // The registry's rules come first: a stranger learns nothing about the backend.
  EXPECT_ERROR(ops.OpenDevice("d0", kOwner), kFailedPrecondition, "GROUP_NOT_OWNED");
  ClaimAndAttachD0();
  EXPECT_ERROR(ops.OpenDevice("d0", kOther), kPermissionDenied, "NOT_OWNER");
  EXPECT_ERROR(ops.OpenDevice("d0", kOwner), kFailedPrecondition, "NO_DEVICE_FDS");
}

// Process memory of a test: page-aligned heap bytes.
class TestMemory : public ProcessMemory {
 public:
  explicit TestMemory(uint64_t size) : bytes_(size + 4096) {}
  void* data() const override {
    const uintptr_t at = reinterpret_cast<uintptr_t>(bytes_.data());
    return reinterpret_cast<void*>((at + 4095) & ~uintptr_t{4095});
  }
  uint64_t size() const override { return bytes_.size() - 4096; }

 private:
  std::vector<uint8_t> bytes_;
};

TEST_F(FdChannelOpsTest, RegisterMemoryMakesAProcessMemoryRegionOfTheOwner) {
  RegistryFdChannelOps ops(registry_.get(), &device_fds_);
  ASSERT_OK_AND_ASSIGN(RegisteredRegion region,
                       ops.RegisterMemory(kOwner, 2 * 4096, std::make_unique<TestMemory>(2 * 4096),
                                          host::UniqueFd()));
  EXPECT_EQ(region.size, 2 * 4096u);
  ASSERT_OK_AND_ASSIGN(MemoryRegionInfo info, registry_->GetMemoryRegion(region.id));
  EXPECT_EQ(info.owner, kOwner);
  EXPECT_EQ(info.base, region.base);
  EXPECT_EQ(info.kind, MemoryRegionKind::kProcessMemory);
  // A bad size registers nothing.
  EXPECT_ERROR(ops.RegisterMemory(kOwner, 100, std::make_unique<TestMemory>(4096),
                                  host::UniqueFd()),
               kInvalidArgument, "INVALID_REGION_SIZE");
  EXPECT_EQ(registry_->ListMemoryRegions().size(), 1u);
}

}  // namespace
}  // namespace iommud

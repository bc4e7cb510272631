// Bad input on iommud's fd side channel (issue #12 item 5), against `iommud --backend=linux` in the
// VM that tests/host/run.sh boots, as root: a caller of another uid, devices of groups the caller
// does not own, memory fds that are too small, read-only, sealed or not memory at all, fd floods,
// truncated and abandoned messages, more connections than allowed. Each is refused with a clear
// reason or closed; afterwards the daemon holds exactly the descriptors it held before, no memory
// region was left behind but those of valid requests whose sender vanished (listed as the
// owner's, and unregistered by it), its audit is clean, and it still serves: the owner's memfd
// is mapped and the edu's DMA lands in it.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "clients/cpp/fd_channel_client.h"
#include "clients/cpp/iommud_client.h"
#include "core/error.h"
#include "core/host/fd_passing.h"
#include "core/host/sysfs_io.h"
#include "core/host/unique_fd.h"
#include "core/host/vfio_device.h"
#include "core/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "iommu/v1/fd_channel.pb.h"
#include "proto/status_codec.h"
#include "tests/host/edu_device.h"
#include "tests/host/vm_daemon.h"
#include "tests/host/vm_scenario_support.h"
#include "tests/testing/status_test_macros.h"

namespace iommud {
namespace host {
namespace test {
namespace {

using ::testing::ElementsAre;

constexpr char kStateDir[] = "/tmp/iommud-fdch";
constexpr char kSocket[] = "/tmp/iommud-fdch/iommud.sock";
constexpr char kFdSocket[] = "/tmp/iommud-fdch/iommud.sock.fds";
constexpr char kOwner[] = "vmm-1";
constexpr char kOtherOwner[] = "vmm-2";
constexpr int kMaxConnections = 8;  // --fd_channel_max_connections of this daemon

// The descriptors process `pid` holds.
int OpenFdsOf(pid_t pid) {
  absl::StatusOr<std::vector<std::string>> fds =
      ListSysfsDirectory(absl::StrCat("/proc/", pid, "/fd"));
  return fds.ok() ? static_cast<int>(fds->size()) : -1;
}

// A raw SOCK_SEQPACKET connection to the fd channel (-1 on failure); its receives time out after
// 5 s, so that a daemon that neither answers nor closes fails the scenario instead of hanging it.
UniqueFd RawConnect() {
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return fd;
  const timeval timeout = {5, 0};
  if (setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) != 0) {
    return UniqueFd();
  }
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", kFdSocket);
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return UniqueFd();
  }
  return fd;
}

// Sends `payload` with `fds` and reads the daemon's answer: its status, or, when the daemon
// closed the connection instead, UNAVAILABLE (ReceiveFds' closed peer).
absl::Status RawCall(int socket, const std::string& payload, const std::vector<int>& fds = {}) {
  RETURN_IF_ERROR(SendFds(socket, payload, fds));
  absl::StatusOr<ReceivedFds> reply = ReceiveFds(socket, 65536);
  if (!reply.ok()) return reply.status();
  iommu::v1::FdResponse response;
  if (!response.ParseFromString(reply->payload)) return absl::InternalError("reply not parsed");
  if (!reply->fds.empty()) return absl::InternalError("an error reply carried descriptors");
  return FromRpcStatus(response.status());
}

// sendmsg of `payload` with every one of `fds` (SendFds refuses more than kMaxPassedFds; the
// kernel takes up to 253).
absl::Status SendManyFds(int socket, const std::string& payload, const std::vector<int>& fds) {
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  iovec data = {const_cast<char*>(payload.data()), payload.size()};
  msghdr message = {};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  message.msg_control = control.data();
  message.msg_controllen = control.size();
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  std::memcpy(CMSG_DATA(header), fds.data(), sizeof(int) * fds.size());
  if (sendmsg(socket, &message, MSG_NOSIGNAL) < 0) {
    return absl::UnavailableError(absl::StrCat("sendmsg: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

std::string RegisterOp(uint64_t size, const std::string& owner = kOwner) {
  iommu::v1::FdRequest request;
  request.mutable_register_memory()->set_owner(owner);
  request.mutable_register_memory()->set_size(size);
  return request.SerializeAsString();
}

class HostFdChannelVmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* binary = std::getenv("IOMMUD_BIN");
    ASSERT_NE(binary, nullptr) << "IOMMUD_BIN must name the iommud binary (run.sh sets it)";
    ASSERT_OK_AND_ASSIGN(daemon_,
                         StartVmDaemon(binary, kStateDir,
                                       {absl::StrCat("--fd_channel_max_connections=",
                                                     kMaxConnections)}));
    ClientOptions options;
    options.target = absl::StrCat("unix:", kSocket);
    ASSERT_OK_AND_ASSIGN(client_, IommuClient::Connect(options));
    ASSERT_OK(client_->CheckHealth().status());
    ASSERT_OK_AND_ASSIGN(fds_, FdChannelClient::Connect(kFdSocket));
    // One call on each connection, so that both are accepted and served before the baseline.
    ASSERT_OK(client_->ListAllGroups().status());
    EXPECT_ERROR(fds_->OpenDevice(kEduAlone, kOwner), kFailedPrecondition, "GROUP_NOT_OWNED");
    daemon_fds_before_ = OpenFdsOf(daemon_);
    ASSERT_GT(daemon_fds_before_, 0);
  }

  void TearDown() override {
    fds_.reset();
    client_.reset();
    if (daemon_ > 0) EXPECT_OK(StopVmDaemon(daemon_, kStateDir));
  }

  // Waits (the daemon closes refused connections on its own thread) until the daemon holds as
  // many descriptors as at the baseline; returns the last count seen.
  int DaemonFdsSettled() {
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    int now = OpenFdsOf(daemon_);
    while (now != daemon_fds_before_ && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(50));
      now = OpenFdsOf(daemon_);
    }
    return now;
  }

  absl::StatusOr<uint64_t> GroupOf(const std::string& device) {
    iommu::v1::GetDeviceRequest request;
    request.set_device(device);
    absl::StatusOr<iommu::v1::Device> got = client_->GetDevice(request);
    if (!got.ok()) return got.status();
    return got->group_id();
  }

  // Claims `group` for `owner` and attaches it to a new domain; returns the domain.
  absl::StatusOr<uint64_t> ClaimAndAttach(uint64_t group, const std::string& owner) {
    iommu::v1::ClaimOwnershipRequest claim;
    claim.set_group_id(group);
    claim.set_owner(owner);
    RETURN_IF_ERROR(client_->ClaimOwnership(claim).status());
    iommu::v1::AllocDomainRequest alloc;
    alloc.set_unit("dmar0");
    alloc.set_type(iommu::v1::DOMAIN_TYPE_UNMANAGED);
    alloc.set_owner(owner);
    absl::StatusOr<iommu::v1::Domain> domain = client_->AllocDomain(alloc);
    if (!domain.ok()) return domain.status();
    iommu::v1::AttachGroupRequest attach;
    attach.set_group_id(group);
    attach.set_domain_id(domain->id());
    attach.set_owner(owner);
    RETURN_IF_ERROR(client_->AttachGroup(attach).status());
    return domain->id();
  }

  absl::Status DetachFreeRelease(uint64_t group, uint64_t domain, const std::string& owner) {
    iommu::v1::DetachGroupRequest detach;
    detach.set_group_id(group);
    detach.set_domain_id(domain);
    detach.set_owner(owner);
    RETURN_IF_ERROR(client_->DetachGroup(detach).status());
    iommu::v1::FreeDomainRequest free_domain;
    free_domain.set_domain_id(domain);
    free_domain.set_owner(owner);
    RETURN_IF_ERROR(client_->FreeDomain(free_domain).status());
    iommu::v1::ReleaseOwnershipRequest release;
    release.set_group_id(group);
    release.set_owner(owner);
    return client_->ReleaseOwnership(release).status();
  }

  pid_t daemon_ = -1;
  int daemon_fds_before_ = -1;
  std::unique_ptr<IommuClient> client_;
  std::unique_ptr<FdChannelClient> fds_;
};

TEST_F(HostFdChannelVmTest, BadInputIsRefusedLeaksNothingAndTheDaemonKeepsServing) {
  int refused = 0;
  // 1. Another uid cannot even reach the channel: the socket is root's, mode 0660.
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (setgid(4242) != 0 || setuid(4242) != 0) _exit(2);
    _exit(RawConnect().valid() ? 1 : 0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "uid 4242 connected to the fd channel (" << DescribeExit(status) << ")";
  ++refused;

  // 2. Device fds of groups the caller does not own or has not attached.
  ASSERT_OK_AND_ASSIGN(const uint64_t alone, GroupOf(kEduAlone));
  ASSERT_OK_AND_ASSIGN(const uint64_t others_domain, ClaimAndAttach(alone, kOtherOwner));
  EXPECT_ERROR(fds_->OpenDevice(kEduAlone, kOwner), kPermissionDenied, "NOT_OWNER");
  EXPECT_ERROR(fds_->OpenDevice(kEduBehindRootPort, kOwner), kFailedPrecondition,
               "GROUP_NOT_OWNED");
  EXPECT_ERROR(fds_->OpenDevice("0000:00:1f.7", kOwner), kNotFound, "DEVICE_NOT_FOUND");
  refused += 3;
  ASSERT_OK(DetachFreeRelease(alone, others_domain, kOtherOwner));

  // 3. Memory that is not the owner's writable memory.
  MemfdPages small(1);
  ASSERT_TRUE(small.ok());
  EXPECT_ERROR(fds_->RegisterMemory(small.fd(), 2 * kPage, kOwner), kInvalidArgument,
               "MEMORY_FD_TOO_SMALL");
  EXPECT_ERROR(fds_->RegisterMemory(small.fd(), 100, kOwner), kInvalidArgument, "INVALID_SIZE");
  UniqueFd read_only(open(absl::StrCat("/proc/self/fd/", small.fd()).c_str(),
                          O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(read_only.valid()) << std::strerror(errno);
  absl::StatusOr<iommu::v1::MemoryRegionRef> ro =
      fds_->RegisterMemory(read_only.get(), kPage, kOwner);
  EXPECT_ERROR(ro, kPermissionDenied, "MEMORY_MAP_FAILED");
  UniqueFd sealed = WriteSealedMemfd(1);
  ASSERT_TRUE(sealed.valid()) << std::strerror(errno);
  EXPECT_ERROR(fds_->RegisterMemory(sealed.get(), kPage, kOwner), kPermissionDenied,
               "MEMORY_MAP_FAILED");
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd pipe_read(p[0]), pipe_write(p[1]);
  EXPECT_ERROR(fds_->RegisterMemory(pipe_read.get(), kPage, kOwner), kInvalidArgument,
               "MEMORY_FD_NOT_REGULAR");
  UniqueFd directory(open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(directory.valid());
  EXPECT_ERROR(fds_->RegisterMemory(directory.get(), kPage, kOwner), kInvalidArgument,
               "MEMORY_FD_NOT_REGULAR");
  refused += 6;

  // 4. Floods: every descriptor a message may carry, on every op; many messages in a row.
  std::vector<UniqueFd> flood;
  std::vector<int> flood_fds;
  for (size_t i = 0; i < kMaxPassedFds; ++i) {
    flood.push_back(UniqueFd(dup(small.fd())));
    ASSERT_TRUE(flood.back().valid());
    flood_fds.push_back(flood.back().get());
  }
  UniqueFd raw = RawConnect();
  ASSERT_TRUE(raw.valid());
  const int rounds = 200;
  for (int i = 0; i < rounds; ++i) {
    absl::Status flooded = RawCall(raw.get(), RegisterOp(kPage), flood_fds);
    ASSERT_EQ(ErrorReason(flooded), "WRONG_FD_COUNT") << "round " << i << ": " << flooded;
  }
  refused += rounds;
  iommu::v1::FdRequest open_device;
  open_device.mutable_open_device()->set_owner(kOwner);
  open_device.mutable_open_device()->set_device(kEduAlone);
  EXPECT_ERROR(RawCall(raw.get(), open_device.SerializeAsString(), flood_fds), kInvalidArgument,
               "WRONG_FD_COUNT");
  ++refused;
  // More descriptors than a message may carry: the daemon gets a truncated message and closes
  // what arrived.
  std::vector<UniqueFd> too_many;
  std::vector<int> too_many_fds;
  for (size_t i = 0; i < kMaxPassedFds + 8; ++i) {
    too_many.push_back(UniqueFd(dup(small.fd())));
    too_many_fds.push_back(too_many.back().get());
  }
  const int daemon_fds_now = OpenFdsOf(daemon_);
  UniqueFd overloaded = RawConnect();
  ASSERT_TRUE(overloaded.valid());
  ASSERT_OK(SendManyFds(overloaded.get(), RegisterOp(kPage), too_many_fds));
  absl::StatusOr<ReceivedFds> answer = ReceiveFds(overloaded.get(), 65536);
  if (answer.ok()) {  // an error reply, or the connection closed: never a region
    iommu::v1::FdResponse response;
    ASSERT_TRUE(response.ParseFromString(answer->payload));
    EXPECT_NE(response.status().code(), 0) << response.DebugString();
  }
  overloaded = UniqueFd();
  EXPECT_LE(OpenFdsOf(daemon_), daemon_fds_now + 1) << "the daemon kept descriptors it refused";
  ++refused;

  // 5. Half-sent and abandoned messages.
  UniqueFd half = RawConnect();
  ASSERT_TRUE(half.valid());
  const std::string whole = RegisterOp(kPage);
  EXPECT_ERROR(RawCall(half.get(), whole.substr(0, whole.size() / 2), {small.fd()}),
               kInvalidArgument, "MALFORMED_REQUEST");
  EXPECT_ERROR(RawCall(half.get(), std::string("\x0a\x80", 2), {small.fd()}), kInvalidArgument,
               "MALFORMED_REQUEST");
  refused += 2;
  // Sent, then gone before the reply: a refused request leaves nothing; a valid one may have
  // taken effect before the peer went (as a gRPC call whose reply is lost): its region is the
  // owner's, listed, and the owner unregisters it through the API.
  const int abandoned = 10;
  for (int i = 0; i < abandoned; ++i) {
    UniqueFd gone = RawConnect();
    ASSERT_TRUE(gone.valid());
    ASSERT_OK(SendFds(gone.get(), RegisterOp(2 * kPage), {small.fd()}));  // too small
    UniqueFd gone_valid = RawConnect();
    ASSERT_TRUE(gone_valid.valid());
    ASSERT_OK(SendFds(gone_valid.get(), RegisterOp(kPage), {small.fd()}));
  }
  for (int i = 0; i < 20; ++i) {  // connected and gone without a word
    UniqueFd silent = RawConnect();
    ASSERT_TRUE(silent.valid());
  }

  // 6. More connections than allowed: the extra ones are closed at accept.
  std::vector<UniqueFd> crowd;
  int closed_at_accept = 0;
  for (int i = 0; i < kMaxConnections + 4; ++i) {
    crowd.push_back(RawConnect());
    ASSERT_TRUE(crowd.back().valid());
  }
  for (UniqueFd& connection : crowd) {
    // A served connection answers WRONG_FD_COUNT; a refused one was closed (a failed send or
    // receive).
    const absl::Status answer = RawCall(connection.get(), RegisterOp(kPage), {});
    if (ErrorReason(answer) != "WRONG_FD_COUNT") {
      EXPECT_TRUE(absl::IsUnavailable(answer) || ErrorReason(answer) == "FD_SEND_FAILED" ||
                  ErrorReason(answer) == "FD_RECEIVE_FAILED")
          << answer;
      ++closed_at_accept;
    }
  }
  EXPECT_GE(closed_at_accept, 4) << "more than --fd_channel_max_connections were served";
  crowd.clear();
  raw = UniqueFd();
  half = UniqueFd();
  flood.clear();
  too_many.clear();

  // Nothing stayed but the abandoned valid registrations that took effect (each the owner's,
  // of the size asked, and unregistered by the owner); descriptors as before; audit clean.
  EXPECT_EQ(DaemonFdsSettled(), daemon_fds_before_) << "the daemon leaked descriptors";
  ASSERT_OK_AND_ASSIGN(iommu::v1::ListMemoryRegionsResponse regions,
                       client_->ListMemoryRegions(iommu::v1::ListMemoryRegionsRequest()));
  EXPECT_LE(regions.regions_size(), abandoned) << regions.DebugString();
  const int took_effect = regions.regions_size();
  for (const iommu::v1::MemoryRegion& region : regions.regions()) {
    EXPECT_EQ(region.owner(), "uid:0/vmm-1");
    EXPECT_EQ(region.size(), kPage);
    iommu::v1::UnregisterMemoryRequest unregister;
    unregister.set_region_id(region.id());
    unregister.set_owner(kOwner);
    EXPECT_OK(client_->UnregisterMemory(unregister).status());
  }
  ASSERT_OK_AND_ASSIGN(regions,
                       client_->ListMemoryRegions(iommu::v1::ListMemoryRegionsRequest()));
  EXPECT_EQ(regions.regions_size(), 0) << regions.DebugString();
  ASSERT_OK_AND_ASSIGN(iommu::v1::AuditResponse audit,
                       client_->Audit(iommu::v1::AuditRequest()));
  EXPECT_EQ(audit.leaks_size(), 0) << audit.DebugString();

  // And it still serves: the owner's memory mapped, the edu's DMA lands in it.
  ASSERT_OK_AND_ASSIGN(const uint64_t domain, ClaimAndAttach(alone, kOwner));
  MemfdPages memory(2);
  ASSERT_TRUE(memory.ok());
  const std::string pattern = Pattern(kCount, 21);
  std::memcpy(memory.data(0), pattern.data(), kCount);
  memory.Fill(0x5a, 1);
  ASSERT_OK_AND_ASSIGN(iommu::v1::MemoryRegionRef region,
                       fds_->RegisterMemory(memory.fd(), memory.size(), kOwner));
  iommu::v1::MapBatchRequest batch;
  batch.set_domain_id(domain);
  batch.set_owner(kOwner);
  for (uint64_t page = 0; page < 2; ++page) {
    iommu::v1::MapBatchEntry* entry = batch.add_entries();
    entry->set_iova(page == 0 ? kIovaA : kIovaB);
    entry->set_size(kPage);
    entry->set_region_id(region.id());
    entry->set_region_offset(page * kPage);
  }
  ASSERT_OK(client_->MapBatch(batch).status());
  {
    ASSERT_OK_AND_ASSIGN(UniqueFd device_fd, fds_->OpenDevice(kEduAlone, kOwner));
    VfioDevice device(kEduAlone, std::move(device_fd));
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<EduDevice> edu, EduDevice::Open(device));
    ASSERT_OK(edu->CopyToDevice(kIovaA, kCount));
    ASSERT_OK(edu->CopyFromDevice(kIovaB, kCount));
  }
  EXPECT_EQ(memory.ReadFile(kCount, 1), pattern) << "the DMA did not land after the bad input";
  iommu::v1::UnmapRequest unmap;
  unmap.set_domain_id(domain);
  unmap.set_iova(kIovaA);
  unmap.set_size(kIovaB + kPage - kIovaA);
  unmap.set_owner(kOwner);
  ASSERT_OK_AND_ASSIGN(iommu::v1::UnmapResponse unmapped, client_->Unmap(unmap));
  EXPECT_EQ(unmapped.bytes_unmapped(), 2 * kPage);
  ASSERT_OK(DetachFreeRelease(alone, domain, kOwner));
  iommu::v1::UnregisterMemoryRequest unregister;
  unregister.set_region_id(region.id());
  unregister.set_owner(kOwner);
  ASSERT_OK(client_->UnregisterMemory(unregister).status());
  EXPECT_EQ(DaemonFdsSettled(), daemon_fds_before_) << "the daemon leaked descriptors";
  absl::StatusOr<std::vector<std::string>> vfio = ListSysfsDirectory("/dev/vfio");
  ASSERT_OK(vfio);
  EXPECT_THAT(*vfio, ElementsAre("vfio")) << "a /dev/vfio group node outlived its owner";
  std::printf("FIGURES fd channel bad input: refused %d, flood rounds %d x %zu fds, connections "
              "closed at accept %d, abandoned valid registrations that took effect %d of %d "
              "(unregistered by the owner), daemon fds %d before / %d after, leaks found %d\n",
              refused + abandoned, rounds, kMaxPassedFds, closed_at_accept, took_effect,
              abandoned, daemon_fds_before_, OpenFdsOf(daemon_), audit.leaks_size());
}

}  // namespace
}  // namespace test
}  // namespace host
}  // namespace iommud

// VmmSession: one VMM's session with the daemon in a VM scenario — its gRPC client on the unix
// socket and its fd-channel client, and the calls of an owner's workload (claim, a user domain
// on dmar0 with the group attached, map and unmap one page, detach, release, free, unregister),
// each one request with the session's owner. HeldDevice: the device fd a VMM holds and the edu
// driven through it. Shared by the crash and fd-store scenarios (host_crash_vm_test,
// host_fdstore_vm_test), which kill the daemon under a live session.
#ifndef IOMMUD_TESTS_HOST_VMM_SESSION_H_
#define IOMMUD_TESTS_HOST_VMM_SESSION_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "clients/cpp/fd_channel_client.h"
#include "clients/cpp/iommud_client.h"
#include "core/host/vfio_device.h"
#include "tests/host/edu_device.h"

namespace iommud {
namespace host {
namespace test {

class VmmSession {
 public:
  // `socket`: the daemon's gRPC unix socket; `fd_socket`: its fd channel; `owner`: the owner
  // every call names (Claim may name another, to check a refusal).
  VmmSession(std::string socket, std::string fd_socket, std::string owner);

  // Connects both clients (again, after Disconnect: a daemon restarted on the same sockets).
  absl::Status Connect();
  void Disconnect();
  // Connect must have succeeded.
  IommuClient& client() { return *client_; }
  FdChannelClient& fds() { return *fds_; }
  const std::string& owner() const { return owner_; }

  absl::Status Claim(uint64_t group) { return Claim(group, owner_); }
  absl::Status Claim(uint64_t group, const std::string& owner);
  absl::Status Release(uint64_t group);
  // A user (unmanaged) domain on dmar0 with `group` attached; its id.
  absl::StatusOr<uint64_t> AllocAndAttach(uint64_t group);
  // One page at `iova` from `region` at `offset`.
  absl::Status Map(uint64_t domain, uint64_t iova, uint64_t region, uint64_t offset,
                   uint32_t prot);
  absl::Status Unmap(uint64_t domain, uint64_t iova);
  absl::Status Detach(uint64_t group, uint64_t domain);
  absl::Status Free(uint64_t domain);
  absl::Status Unregister(uint64_t region);
  absl::StatusOr<iommu::v1::Group> GetGroup(uint64_t group);
  absl::StatusOr<iommu::v1::AuditResponse> Audit();

 private:
  const std::string socket_;
  const std::string fd_socket_;
  const std::string owner_;
  std::unique_ptr<IommuClient> client_;
  std::unique_ptr<FdChannelClient> fds_;
};

// The device fd a VMM holds, and the edu driven through it.
struct HeldDevice {
  std::unique_ptr<VfioDevice> device;
  std::unique_ptr<EduDevice> edu;
  void Close() {
    edu.reset();
    device.reset();
  }
  bool open() const { return device != nullptr; }
};

}  // namespace test
}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_TESTS_HOST_VMM_SESSION_H_

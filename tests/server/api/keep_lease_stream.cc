#include "tests/server/api/keep_lease_stream.h"

#include "proto/status_codec.h"
#include "tests/server/daemon_fixture.h"

namespace iommud {
namespace test {

DaemonOptions InProcessDaemonOptions(const TempDir& dir, const Limits& limits) {
  DaemonOptions options;
  options.state_dir = dir.path() + "/state";
  options.topology = dir.WriteFile("topology.textpb", kTestTopology);
  options.metrics_listen = "";
  options.audit_interval = absl::ZeroDuration();
  options.limits = limits;
  return options;
}

absl::StatusOr<std::unique_ptr<IommuClient>> ConnectTo(const std::string& target) {
  ClientOptions options;
  options.target = target;
  return IommuClient::Connect(options);
}

absl::StatusOr<iommu::v1::Group> ClaimLeased(IommuClient& client, uint64_t ttl_millis) {
  iommu::v1::GetDeviceRequest get;
  get.set_device(kLeasedDevice);
  absl::StatusOr<iommu::v1::Device> device = client.GetDevice(get);
  if (!device.ok()) return device.status();
  iommu::v1::ClaimOwnershipRequest claim;
  claim.set_group_id(device->group_id());
  claim.set_owner(kLeaseOwner);
  claim.set_lease_ttl_millis(ttl_millis);
  return client.ClaimOwnership(claim);
}

KeepLeaseStream::KeepLeaseStream(IommuClient& client, uint64_t group, absl::Duration deadline)
    : group_(group) {
  context_.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  stream_ = client.stub()->KeepLease(&context_);
}

absl::StatusOr<iommu::v1::Group> KeepLeaseStream::Send(bool bind) {
  iommu::v1::KeepLeaseRequest keep;
  keep.set_group_id(group_);
  keep.set_owner(kLeaseOwner);
  keep.set_bind(bind);
  stream_->Write(keep);  // fails when the daemon already ended the stream: Read says so
  iommu::v1::Group group;
  if (stream_->Read(&group)) return group;
  return FromGrpcStatus(stream_->Finish());
}

absl::Status KeepLeaseStream::Close() {
  stream_->WritesDone();
  iommu::v1::Group ignored;
  while (stream_->Read(&ignored)) {
  }
  return FromGrpcStatus(stream_->Finish());
}

}  // namespace test
}  // namespace iommud

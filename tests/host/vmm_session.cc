#include "tests/host/vmm_session.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "tests/host/vm_scenario_support.h"

namespace iommud {
namespace host {
namespace test {

VmmSession::VmmSession(std::string socket, std::string fd_socket, std::string owner)
    : socket_(std::move(socket)), fd_socket_(std::move(fd_socket)), owner_(std::move(owner)) {}

absl::Status VmmSession::Connect() {
  ClientOptions options;
  options.target = absl::StrCat("unix:", socket_);
  absl::StatusOr<std::unique_ptr<IommuClient>> client = IommuClient::Connect(options);
  if (!client.ok()) return client.status();
  client_ = *std::move(client);
  absl::StatusOr<std::unique_ptr<FdChannelClient>> fds = FdChannelClient::Connect(fd_socket_);
  if (!fds.ok()) return fds.status();
  fds_ = *std::move(fds);
  return absl::OkStatus();
}

void VmmSession::Disconnect() {
  fds_.reset();
  client_.reset();
}

absl::Status VmmSession::Claim(uint64_t group, const std::string& owner) {
  iommu::v1::ClaimOwnershipRequest request;
  request.set_group_id(group);
  request.set_owner(owner);
  return client_->ClaimOwnership(request).status();
}

absl::Status VmmSession::Release(uint64_t group) {
  iommu::v1::ReleaseOwnershipRequest request;
  request.set_group_id(group);
  request.set_owner(owner_);
  return client_->ReleaseOwnership(request).status();
}

absl::StatusOr<uint64_t> VmmSession::AllocAndAttach(uint64_t group) {
  iommu::v1::AllocDomainRequest alloc;
  alloc.set_unit("dmar0");
  alloc.set_type(iommu::v1::DOMAIN_TYPE_UNMANAGED);
  alloc.set_owner(owner_);
  absl::StatusOr<iommu::v1::Domain> domain = client_->AllocDomain(alloc);
  if (!domain.ok()) return domain.status();
  iommu::v1::AttachGroupRequest attach;
  attach.set_group_id(group);
  attach.set_domain_id(domain->id());
  attach.set_owner(owner_);
  absl::Status attached = client_->AttachGroup(attach).status();
  if (!attached.ok()) return attached;
  return domain->id();
}

absl::Status VmmSession::Map(uint64_t domain, uint64_t iova, uint64_t region, uint64_t offset,
                             uint32_t prot) {
  iommu::v1::MapRequest request;
  request.set_domain_id(domain);
  request.set_iova(iova);
  request.set_region_id(region);
  request.set_region_offset(offset);
  request.set_size(kPage);
  request.set_prot(prot);
  request.set_owner(owner_);
  return client_->Map(request).status();
}

absl::Status VmmSession::Unmap(uint64_t domain, uint64_t iova) {
  iommu::v1::UnmapRequest request;
  request.set_domain_id(domain);
  request.set_iova(iova);
  request.set_size(kPage);
  request.set_owner(owner_);
  return client_->Unmap(request).status();
}

absl::Status VmmSession::Detach(uint64_t group, uint64_t domain) {
  iommu::v1::DetachGroupRequest request;
  request.set_group_id(group);
  request.set_domain_id(domain);
  request.set_owner(owner_);
  return client_->DetachGroup(request).status();
}

absl::Status VmmSession::Free(uint64_t domain) {
  iommu::v1::FreeDomainRequest request;
  request.set_domain_id(domain);
  request.set_owner(owner_);
  return client_->FreeDomain(request).status();
}

absl::Status VmmSession::Unregister(uint64_t region) {
  iommu::v1::UnregisterMemoryRequest request;
  request.set_region_id(region);
  request.set_owner(owner_);
  return client_->UnregisterMemory(request).status();
}

absl::StatusOr<iommu::v1::Group> VmmSession::GetGroup(uint64_t group) {
  iommu::v1::GetGroupRequest request;
  request.set_group_id(group);
  return client_->GetGroup(request);
}

absl::StatusOr<iommu::v1::AuditResponse> VmmSession::Audit() {
  return client_->Audit(iommu::v1::AuditRequest());
}

}  // namespace test
}  // namespace host
}  // namespace iommud

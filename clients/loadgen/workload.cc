#include "clients/loadgen/workload.h"

#include <unistd.h>

#include <atomic>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/cpp/iommud_client.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/status_macros.h"
#include "core/sync.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "iommu/v1/iommu.grpc.pb.h"

namespace iommud {

absl::StatusOr<Mix> ParseMix(const std::string& name) {
  if (name == "health") return Mix::kHealth;
  if (name == "attach_detach") return Mix::kAttachDetach;
  if (name == "use_unuse") return Mix::kUseUnuse;
  if (name == "map_unmap") return Mix::kMapUnmap;
  if (name == "read") return Mix::kRead;
  return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidMix,
               absl::StrCat("unknown mix '", name,
                            "' (health, attach_detach, use_unuse, map_unmap, read)"));
}

namespace {

// What one call slot owns on the daemon.
struct SlotResources {
  std::string device;
  uint64_t group = 0;
  uint64_t domain = 0;
};

class LoadRun {
 public:
  explicit LoadRun(const LoadOptions& options) : options_(options) {}

  absl::Status SetUp() {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection per channel
    for (int c = 0; c < options_.channels; ++c) {
      channels_.push_back(
          grpc::CreateCustomChannel(options_.target, grpc::InsecureChannelCredentials(), args));
    }
    ClientOptions client_options;
    client_options.target = options_.target;
    ASSIGN_OR_RETURN(admin_, IommuClient::Connect(client_options));
    const int slots = options_.channels * options_.outstanding;
    resources_.resize(slots);
    if (options_.mix == Mix::kHealth || options_.mix == Mix::kRead) return absl::OkStatus();
    const int groups = options_.groups > 0 ? options_.groups : slots;
    for (int i = 0; i < slots; ++i) {
      SlotResources& slot = resources_[i];
      iommu::v1::ProbeDeviceRequest probe;
      probe.set_unit(options_.unit);
      probe.set_device(absl::StrCat("loadgen-", getpid(), "-", i));
      probe.set_rid(options_.rid_base + (options_.mix == Mix::kUseUnuse ? i % groups : i));
      ASSIGN_OR_RETURN(iommu::v1::Device device, admin_->ProbeDevice(probe));
      slot.device = device.name();
      slot.group = device.group_id();
      if (options_.mix == Mix::kUseUnuse) continue;
      iommu::v1::ClaimOwnershipRequest claim;
      claim.set_group_id(slot.group);
      claim.set_owner(options_.owner);
      RETURN_IF_ERROR(admin_->ClaimOwnership(claim).status());
      iommu::v1::AllocDomainRequest alloc;
      alloc.set_unit(options_.unit);
      alloc.set_owner(options_.owner);
      ASSIGN_OR_RETURN(iommu::v1::Domain domain, admin_->AllocDomain(alloc));
      slot.domain = domain.id();
      if (options_.mix == Mix::kMapUnmap) {
        iommu::v1::AttachGroupRequest attach;
        attach.set_group_id(slot.group);
        attach.set_domain_id(slot.domain);
        attach.set_owner(options_.owner);
        RETURN_IF_ERROR(admin_->AttachGroup(attach).status());
      }
    }
    return absl::OkStatus();
  }

  // Undoes SetUp as far as it got (errors ignored: the daemon's state is what it is).
  void TearDown() {
    if (admin_ == nullptr) return;
    for (const SlotResources& slot : resources_) {
      if (slot.device.empty()) continue;
      if (slot.domain != 0) {
        iommu::v1::ReleaseOwnershipRequest release;  // detaches the domain too
        release.set_group_id(slot.group);
        release.set_owner(options_.owner);
        (void)admin_->ReleaseOwnership(release);
        iommu::v1::FreeDomainRequest free;
        free.set_domain_id(slot.domain);
        free.set_owner(options_.owner);
        (void)admin_->FreeDomain(free);
      }
      iommu::v1::ReleaseDeviceRequest release;
      release.set_device(slot.device);
      (void)admin_->ReleaseDevice(release);
    }
  }

  LatencySummary Run() {
    const int slots = options_.channels * options_.outstanding;
    deadline_ = absl::Now() + options_.duration;
    start_ = absl::Now();
    {
      MutexLock lock(&mu_);
      active_ = slots;
    }
    calls_.reserve(slots);
    for (int i = 0; i < slots; ++i) {
      calls_.push_back(std::make_unique<Call>());
      calls_[i]->index = i;
      calls_[i]->channel = channels_[i % channels_.size()];
      calls_[i]->iommu = iommu::v1::Iommu::NewStub(calls_[i]->channel);
      calls_[i]->health = grpc::health::v1::Health::NewStub(calls_[i]->channel);
    }
    for (auto& call : calls_) Issue(*call);
    {
      MutexLock lock(&mu_);
      while (active_ > 0) WaitWithDeadline(&done_, &mu_, absl::InfiniteFuture());
    }
    return stats_.Summarize(absl::Now() - start_);
  }

 private:
  struct Call {
    int index = 0;
    bool second_half = false;  // attach vs detach, use vs unuse, map vs unmap
    uint64_t sent = 0;         // names the request ids (--request_ids)
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<iommu::v1::Iommu::Stub> iommu;
    std::unique_ptr<grpc::health::v1::Health::Stub> health;
    std::unique_ptr<grpc::ClientContext> context;
    absl::Time started;
    // Requests and responses of every mix (only the mix's are used).
    grpc::health::v1::HealthCheckRequest health_request;
    grpc::health::v1::HealthCheckResponse health_response;
    iommu::v1::AttachGroupRequest attach;
    iommu::v1::DetachGroupRequest detach;
    iommu::v1::Group group;
    iommu::v1::UseDefaultDomainRequest use;
    iommu::v1::UnuseDefaultDomainRequest unuse;
    iommu::v1::MapRequest map;
    iommu::v1::MapResponse map_response;
    iommu::v1::UnmapRequest unmap;
    iommu::v1::UnmapResponse unmap_response;
    iommu::v1::ListGroupsRequest list;
    iommu::v1::ListGroupsResponse list_response;
  };

  bool ShouldIssue() {
    if (absl::Now() >= deadline_) return false;
    if (options_.count == 0) return true;
    return issued_.fetch_add(1) < options_.count;
  }

  void Issue(Call& call) {
    if (!ShouldIssue()) {
      MutexLock lock(&mu_);
      if (--active_ == 0) done_.SignalAll();
      return;
    }
    call.context = std::make_unique<grpc::ClientContext>();
    call.context->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    call.started = absl::Now();
    auto done = [this, &call](grpc::Status status) {
      stats_.Record(absl::Now() - call.started, status.ok());
      call.second_half = !call.second_half;
      Issue(call);
    };
    const SlotResources& slot = resources_[call.index];
    grpc::ClientContext* context = call.context.get();
    const std::string request_id =
        options_.request_ids ? absl::StrCat("lg-", call.index, "-", ++call.sent) : "";
    switch (options_.mix) {
      case Mix::kHealth:
        call.health->async()->Check(context, &call.health_request, &call.health_response, done);
        break;
      case Mix::kRead:
        call.list.set_page_size(100);
        call.iommu->async()->ListGroups(context, &call.list, &call.list_response, done);
        break;
      case Mix::kAttachDetach:
        if (!call.second_half) {
          call.attach.set_group_id(slot.group);
          call.attach.set_domain_id(slot.domain);
          call.attach.set_owner(options_.owner);
          call.attach.set_request_id(request_id);
          call.iommu->async()->AttachGroup(context, &call.attach, &call.group, done);
        } else {
          call.detach.set_group_id(slot.group);
          call.detach.set_domain_id(slot.domain);
          call.detach.set_owner(options_.owner);
          call.detach.set_request_id(request_id);
          call.iommu->async()->DetachGroup(context, &call.detach, &call.group, done);
        }
        break;
      case Mix::kUseUnuse:
        if (!call.second_half) {
          call.use.set_device(slot.device);
          call.use.set_request_id(request_id);
          call.iommu->async()->UseDefaultDomain(context, &call.use, &call.group, done);
        } else {
          call.unuse.set_device(slot.device);
          call.unuse.set_request_id(request_id);
          call.iommu->async()->UnuseDefaultDomain(context, &call.unuse, &call.group, done);
        }
        break;
      case Mix::kMapUnmap:
        if (!call.second_half) {
          call.map.set_domain_id(slot.domain);
          call.map.set_iova(0x100000);
          call.map.set_paddr(0x100000);
          call.map.set_size(4096);
          call.map.set_owner(options_.owner);
          call.map.set_request_id(request_id);
          call.iommu->async()->Map(context, &call.map, &call.map_response, done);
        } else {
          call.unmap.set_domain_id(slot.domain);
          call.unmap.set_iova(0x100000);
          call.unmap.set_size(4096);
          call.unmap.set_owner(options_.owner);
          call.unmap.set_request_id(request_id);
          call.iommu->async()->Unmap(context, &call.unmap, &call.unmap_response, done);
        }
        break;
    }
  }

  const LoadOptions options_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::unique_ptr<IommuClient> admin_;
  std::vector<SlotResources> resources_;
  std::vector<std::unique_ptr<Call>> calls_;
  absl::Time start_, deadline_;
  std::atomic<uint64_t> issued_{0};
  LatencyStats stats_;
  absl::Mutex mu_;
  absl::CondVar done_;
  int active_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

absl::StatusOr<LatencySummary> RunLoad(const LoadOptions& options) {
  if (options.channels < 1 || options.outstanding < 1 || options.groups < 0 ||
      options.duration <= absl::ZeroDuration() || options.target.empty()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidLoad,
                 "need a target, channels >= 1, outstanding >= 1, groups >= 0, duration > 0");
  }
  LoadRun run(options);
  absl::Status set_up = run.SetUp();
  if (!set_up.ok()) {
    run.TearDown();
    return set_up;
  }
  LatencySummary summary = run.Run();
  run.TearDown();
  return summary;
}

}  // namespace iommud

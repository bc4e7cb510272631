#include "clients/cpp/iommud_client.h"

#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>
#include <type_traits>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "clients/cpp/unix_socket_probe.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/status_macros.h"
#include "proto/status_codec.h"

namespace iommud {

namespace {

absl::StatusOr<std::string> ReadPemFile(absl::string_view flag, const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  if (file) text << file.rdbuf();
  if (!file || text.str().empty()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kTlsFileUnreadable,
                 absl::StrCat("cannot read ", flag, " file '", path, "'"),
                 {{"path", path}});
  }
  return text.str();
}

absl::Status InvalidTls(absl::string_view message) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidTlsOptions, message);
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const ClientOptions& options, grpc::ChannelArguments* arguments) {
  const bool tls = !options.tls_ca.empty() || !options.tls_cert.empty() ||
                   !options.tls_key.empty() || !options.tls_server_name.empty();
  if (!tls) return grpc::InsecureChannelCredentials();
  if (absl::StartsWith(options.target, "unix:")) {
    return InvalidTls("TLS options apply to host:port targets, not unix sockets");
  }
  if (options.tls_ca.empty()) return InvalidTls("TLS needs the CA of the daemon's certificate");
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return InvalidTls("a client certificate needs its key and the other way round");
  }
  grpc::SslCredentialsOptions ssl;
  ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPemFile("CA", options.tls_ca));
  if (!options.tls_cert.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPemFile("certificate", options.tls_cert));
    ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPemFile("key", options.tls_key));
  }
  if (!options.tls_server_name.empty()) {
    arguments->SetSslTargetNameOverride(options.tls_server_name);
  }
  return grpc::SslCredentials(ssl);
}

void ApplyClientKeepalive(const ClientOptions& options, grpc::ChannelArguments* arguments) {
  if (options.keepalive_time <= absl::ZeroDuration()) return;
  arguments->SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
                    static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
  arguments->SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                    static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
  arguments->SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  arguments->SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
}

absl::StatusOr<std::unique_ptr<IommuClient>> IommuClient::Connect(const ClientOptions& options) {
  if (options.target.empty()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidTarget,
                 "no target: give unix:/path/to/iommud.sock or host:port");
  }
  grpc::ChannelArguments arguments;
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                   ChannelCredentialsFor(options, &arguments));
  ApplyClientKeepalive(options, &arguments);
  // A socket the caller may not use is said at once: the channel would only time out.
  RETURN_IF_ERROR(CheckUnixSocketAccess(options.target));
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(options.target, credentials, arguments);
  if (!channel->WaitForConnected(absl::ToChronoTime(absl::Now() + options.connect_timeout))) {
    return Error(absl::StatusCode::kUnavailable, reason::kConnectFailed,
                 absl::StrCat("cannot connect to ", options.target, " within ",
                              absl::FormatDuration(options.connect_timeout),
                              !UnixSocketPath(options.target).empty() &&
                                      !UnixSocketExists(options.target)
                                  ? absl::StrCat(" (no socket at ", UnixSocketPath(options.target),
                                                 ": is iommud running?)")
                                  : " (is iommud running?)"),
                 {{"target", options.target}});
  }
  return std::make_unique<IommuClient>(std::move(channel), options);
}

IommuClient::IommuClient(std::shared_ptr<grpc::Channel> channel, absl::Duration rpc_timeout)
    : channel_(std::move(channel)),
      rpc_timeout_(rpc_timeout),
      stub_(iommu::v1::Iommu::NewStub(channel_)),
      health_(grpc::health::v1::Health::NewStub(channel_)) {}

IommuClient::IommuClient(std::shared_ptr<grpc::Channel> channel, const ClientOptions& options)
    : IommuClient(std::move(channel), options.rpc_timeout) {
  request_id_ = options.request_id;
  retry_mutations_ = std::max(options.retry_mutations, 0);
  retry_backoff_ = options.retry_backoff;
}

std::unique_ptr<grpc::ClientContext> IommuClient::NewContext(absl::Duration asked_wait) const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (rpc_timeout_ != absl::InfiniteDuration()) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + rpc_timeout_ + asked_wait));
  }
  return context;
}

namespace {

template <typename T, typename = void>
struct HasRequestId : std::false_type {};
template <typename T>
struct HasRequestId<T, std::void_t<decltype(std::declval<T&>().set_request_id(std::string()))>>
    : std::true_type {};

// "c-" and 32 random hex digits.
std::string RandomRequestId() {
  thread_local std::mt19937_64 random(std::random_device{}() ^
                                      static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())));
  return absl::StrCat("c-", absl::Hex(random(), absl::kZeroPad16),
                      absl::Hex(random(), absl::kZeroPad16));
}

// How long the daemon may wait on purpose before answering `request`: ReleaseDevice waits for
// the device's owner for its wait_millis, or the daemon's default when unset, both at most
// kMaxReleaseDeviceWait.
template <typename Request>
absl::Duration AskedWait(const Request& request) {
  if constexpr (std::is_same_v<Request, iommu::v1::ReleaseDeviceRequest>) {
    if (!request.has_wait_millis()) return kMaxReleaseDeviceWait;
    return std::min(absl::Milliseconds(request.wait_millis()), kMaxReleaseDeviceWait);
  } else {
    return absl::ZeroDuration();
  }
}

bool Retryable(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
         (status.code() == absl::StatusCode::kAborted &&
          ErrorReason(status) == reason::kRequestInProgress);
}

}  // namespace

template <typename Request, typename Response>
absl::StatusOr<Response> IommuClient::Unary(
    grpc::Status (iommu::v1::Iommu::Stub::*method)(grpc::ClientContext*, const Request&,
                                                   Response*),
    const Request& request) {
  auto call = [&](const Request& sent) -> absl::StatusOr<Response> {
    std::unique_ptr<grpc::ClientContext> context = NewContext(AskedWait(sent));
    Response response;
    const grpc::Status status = (stub_.get()->*method)(context.get(), sent, &response);
    if (!status.ok()) return FromGrpcStatus(status);
    return response;
  };
  if constexpr (HasRequestId<Request>::value) {
    if (retry_mutations_ == 0 && (!request.request_id().empty() || request_id_.empty())) {
      return call(request);  // nothing to add: sent as it is
    }
    Request sent = request;
    if (sent.request_id().empty()) {
      sent.set_request_id(!request_id_.empty() ? request_id_ : RandomRequestId());
    }
    absl::StatusOr<Response> result = call(sent);
    for (int attempt = 1; attempt <= retry_mutations_ && !result.ok() && Retryable(result.status());
         ++attempt) {
      absl::SleepFor(retry_backoff_ * attempt);
      result = call(sent);
    }
    return result;
  } else {
    return call(request);
  }
}

#define IOMMUD_CLIENT_RPC(Method, Request, Response)                                   \
  absl::StatusOr<iommu::v1::Response> IommuClient::Method(                             \
      const iommu::v1::Request& request) {                                             \
    return Unary(&iommu::v1::Iommu::Stub::Method, request);                            \
  }
#include "clients/cpp/iommu_rpcs.inc"
#undef IOMMUD_CLIENT_RPC

namespace {

// Calls `list` page after page and collects `items` of each response.
template <typename Item, typename Request, typename Response, typename List, typename Items>
absl::StatusOr<std::vector<Item>> FollowPages(List list, Items items) {
  std::vector<Item> all;
  Request request;
  request.set_page_size(500);
  for (;;) {
    absl::StatusOr<Response> page = list(request);
    if (!page.ok()) return page.status();
    for (const Item& item : items(*page)) all.push_back(item);
    if (page->next_page_token().empty()) return all;
    request.set_page_token(page->next_page_token());
  }
}

}  // namespace

absl::StatusOr<std::vector<iommu::v1::IommuUnit>> IommuClient::ListAllUnits() {
  return FollowPages<iommu::v1::IommuUnit, iommu::v1::ListUnitsRequest,
                     iommu::v1::ListUnitsResponse>(
      [this](const iommu::v1::ListUnitsRequest& r) { return ListUnits(r); },
      [](const iommu::v1::ListUnitsResponse& r) { return r.units(); });
}

absl::StatusOr<std::vector<iommu::v1::Group>> IommuClient::ListAllGroups() {
  return FollowPages<iommu::v1::Group, iommu::v1::ListGroupsRequest,
                     iommu::v1::ListGroupsResponse>(
      [this](const iommu::v1::ListGroupsRequest& r) { return ListGroups(r); },
      [](const iommu::v1::ListGroupsResponse& r) { return r.groups(); });
}

absl::StatusOr<std::vector<iommu::v1::Device>> IommuClient::ListAllDevices() {
  return FollowPages<iommu::v1::Device, iommu::v1::ListDevicesRequest,
                     iommu::v1::ListDevicesResponse>(
      [this](const iommu::v1::ListDevicesRequest& r) { return ListDevices(r); },
      [](const iommu::v1::ListDevicesResponse& r) { return r.devices(); });
}

absl::StatusOr<std::vector<iommu::v1::Domain>> IommuClient::ListAllDomains() {
  return FollowPages<iommu::v1::Domain, iommu::v1::ListDomainsRequest,
                     iommu::v1::ListDomainsResponse>(
      [this](const iommu::v1::ListDomainsRequest& r) { return ListDomains(r); },
      [](const iommu::v1::ListDomainsResponse& r) { return r.domains(); });
}

absl::Status IommuClient::WatchEvents(
    const iommu::v1::WatchEventsRequest& request,
    const std::function<bool(const iommu::v1::Event&)>& on_event, absl::Duration timeout) {
  grpc::ClientContext context;
  if (timeout != absl::InfiniteDuration()) {
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
  std::unique_ptr<grpc::ClientReader<iommu::v1::Event>> reader =
      stub_->WatchEvents(&context, request);
  iommu::v1::Event event;
  bool stopped = false;
  bool received = false;
  while (reader->Read(&event)) {
    received = true;
    if (!on_event(event)) {
      stopped = true;
      context.TryCancel();
      break;
    }
  }
  const grpc::Status status = reader->Finish();
  if (stopped) return absl::OkStatus();
  if (received && status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return absl::OkStatus();
  }
  return FromGrpcStatus(status);
}

absl::Status IommuClient::KeepLease(
    const iommu::v1::KeepLeaseRequest& request, absl::Duration every,
    const std::function<bool(const iommu::v1::Group&)>& on_renewed, absl::Duration duration) {
  if (every <= absl::ZeroDuration()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidArgument,
                 "KeepLease needs a positive renewal interval");
  }
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderWriter<iommu::v1::KeepLeaseRequest, iommu::v1::Group>> stream =
      stub_->KeepLease(&context);
  const absl::Time end = duration == absl::InfiniteDuration() ? absl::InfiniteFuture()
                                                              : absl::Now() + duration;
  iommu::v1::Group group;
  for (;;) {
    if (!stream->Write(request) || !stream->Read(&group)) break;  // the daemon ended the stream
    if (!on_renewed(group)) {
      stream->WritesDone();
      return FromGrpcStatus(stream->Finish());
    }
    const absl::Time next = absl::Now() + every;
    if (next >= end) {
      absl::SleepFor(std::max(end - absl::Now(), absl::ZeroDuration()));
      stream->WritesDone();
      return FromGrpcStatus(stream->Finish());
    }
    absl::SleepFor(every);
  }
  return FromGrpcStatus(stream->Finish());
}

absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> IommuClient::CheckHealth(
    const std::string& service) {
  std::unique_ptr<grpc::ClientContext> context = NewContext();
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = health_->Check(context.get(), request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response.status();
}

}  // namespace iommud

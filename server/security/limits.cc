#include "server/security/limits.h"

#include <grpcpp/resource_quota.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/sync.h"

namespace iommud {
namespace {

absl::Status InvalidLimit(absl::string_view flag, absl::string_view value, absl::string_view why) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidFlag,
               absl::StrCat("--", flag, "=", value, ": ", why),
               {{"flag", std::string(flag)}, {"value", std::string(value)}});
}

absl::Status RequirePositive(absl::string_view flag, int64_t value) {
  if (value > 0) return absl::OkStatus();
  return InvalidLimit(flag, absl::StrCat(value), "must be at least 1");
}

}  // namespace

absl::Status Limits::Validate() const {
  for (const auto& [flag, value] : std::initializer_list<std::pair<absl::string_view, int64_t>>{
           {"max_message_bytes", max_message_bytes},
           {"max_send_message_bytes", max_send_message_bytes},
           {"max_concurrent_streams", max_concurrent_streams},
           {"max_grpc_memory_bytes", max_grpc_memory_bytes},
           {"max_calls_per_client", max_calls_per_client},
           {"max_watchers", max_watchers},
           {"max_watchers_per_client", max_watchers_per_client},
           {"max_tracked_clients", max_tracked_clients},
           {"max_string_bytes", request.max_string_bytes},
           {"max_repeated", request.max_repeated},
           {"max_page_size", request.max_page_size}}) {
    if (absl::Status status = RequirePositive(flag, value); !status.ok()) return status;
  }
  if (request.max_map_bytes == 0) return InvalidLimit("max_map_bytes", "0", "must be at least 1");
  if (!(rate_per_client >= 0) || std::isinf(rate_per_client)) {
    return InvalidLimit("rate_per_client", absl::StrCat(rate_per_client),
                        "must be a finite number >= 0 (0 = unlimited)");
  }
  if (rate_per_client > 0 && !(burst_per_client >= 1)) {
    return InvalidLimit("burst_per_client", absl::StrCat(burst_per_client),
                        "must be at least 1 when --rate_per_client is set");
  }
  return absl::OkStatus();
}

void ApplyTransportLimits(const Limits& limits, grpc::ServerBuilder* builder) {
  builder->SetMaxReceiveMessageSize(limits.max_message_bytes);
  builder->SetMaxSendMessageSize(limits.max_send_message_bytes);
  builder->AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, limits.max_concurrent_streams);
  grpc::ResourceQuota quota("iommud");
  quota.Resize(static_cast<size_t>(limits.max_grpc_memory_bytes));
  builder->SetResourceQuota(quota);
}

// --- Permit ---

ClientLimiter::Permit& ClientLimiter::Permit::operator=(Permit&& other) noexcept {
  if (this != &other) {
    reset();
    limiter_ = std::exchange(other.limiter_, nullptr);
    principal_ = std::move(other.principal_);
    kind_ = other.kind_;
  }
  return *this;
}

void ClientLimiter::Permit::reset() {
  if (limiter_ == nullptr) return;
  std::exchange(limiter_, nullptr)->Release(principal_, kind_);
}

// --- ClientLimiter ---

ClientLimiter::ClientLimiter(const Limits& limits, const Clock* clock,
                             prometheus::Registry* metrics)
    : limits_(limits), clock_(clock) {
  if (metrics != nullptr) {
    limited_ = &prometheus::BuildCounter()
                    .Name("iommud_limited_total")
                    .Help("Calls refused by a limit (server/security/limits.h), by reason.")
                    .Register(*metrics);
    for (absl::string_view name : {reason::kRateLimited, reason::kTooManyCalls,
                                   reason::kTooManyWatchers, reason::kTooManyClients,
                                   reason::kRequestTooLarge}) {
      limited_->Add({{"reason", std::string(name)}});  // present at 0 from the start
    }
  }
}

absl::Status ClientLimiter::Refused(const absl::Status& status, absl::string_view principal) const {
  const std::string reason = ErrorReason(status);
  if (limited_ != nullptr) limited_->Add({{"reason", reason}}).Increment();
  ErrorMetadata metadata = GetErrorMetadata(status);
  metadata["principal"] = std::string(principal);
  return Error(status.code(), reason, status.message(), metadata);
}

bool ClientLimiter::Idle(Client* client, absl::Time now) const {
  if (client->calls != 0 || client->watchers != 0) return false;
  if (limits_.rate_per_client <= 0) return true;
  const double refill = absl::ToDoubleSeconds(now - client->refilled) * limits_.rate_per_client;
  return client->tokens + refill >= limits_.burst_per_client;
}

absl::StatusOr<ClientLimiter::Client*> ClientLimiter::Track(absl::string_view principal,
                                                             absl::Time now) {
  auto it = clients_.find(principal);
  if (it != clients_.end()) return &it->second;
  if (clients_.size() >= static_cast<size_t>(limits_.max_tracked_clients)) {
    for (auto idle = clients_.begin(); idle != clients_.end();) {
      if (Idle(&idle->second, now)) {
        clients_.erase(idle++);
      } else {
        ++idle;
      }
    }
  }
  if (clients_.size() >= static_cast<size_t>(limits_.max_tracked_clients)) {
    return Refused(
        Error(absl::StatusCode::kResourceExhausted, reason::kTooManyClients,
              absl::StrCat("the daemon already serves ", clients_.size(),
                           " busy principals (--max_tracked_clients); retry later"),
              {{"limit", absl::StrCat(limits_.max_tracked_clients)}}),
        principal);
  }
  Client& client = clients_[principal];
  client.tokens = limits_.burst_per_client;
  client.refilled = now;
  return &client;
}

absl::Status ClientLimiter::TakeToken(absl::string_view principal, Client* client,
                                      absl::Time now) {
  const double rate = limits_.rate_per_client;
  if (rate <= 0) return absl::OkStatus();
  if (now > client->refilled) {
    const double refill = absl::ToDoubleSeconds(now - client->refilled) * rate;
    client->tokens = std::min(limits_.burst_per_client, client->tokens + refill);
    client->refilled = now;
  }
  if (client->tokens >= 1) {
    client->tokens -= 1;
    return absl::OkStatus();
  }
  const int64_t retry_ms =
      static_cast<int64_t>(std::ceil((1 - client->tokens) / rate * 1000));
  return Refused(Error(absl::StatusCode::kResourceExhausted, reason::kRateLimited,
                       absl::StrCat(principal, " exceeds its rate of ", rate,
                                    " calls/s (burst ", limits_.burst_per_client,
                                    "; --rate_per_client); retry in ", retry_ms, " ms"),
                       {{"limit", absl::StrCat(rate)},
                        {"burst", absl::StrCat(limits_.burst_per_client)},
                        {"retry_after_ms", absl::StrCat(retry_ms)}}),
                 principal);
}

absl::StatusOr<ClientLimiter::Permit> ClientLimiter::AdmitCall(absl::string_view principal) {
  MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  absl::StatusOr<Client*> client = Track(principal, now);
  if (!client.ok()) return client.status();
  if ((*client)->calls >= limits_.max_calls_per_client) {
    return Refused(Error(absl::StatusCode::kResourceExhausted, reason::kTooManyCalls,
                         absl::StrCat(principal, " already has ", (*client)->calls,
                                      " calls in flight (--max_calls_per_client)"),
                         {{"limit", absl::StrCat(limits_.max_calls_per_client)}}),
                   principal);
  }
  if (absl::Status token = TakeToken(principal, *client, now); !token.ok()) return token;
  ++(*client)->calls;
  return Permit(this, std::string(principal), Permit::Kind::kCall);
}

absl::Status ClientLimiter::AdmitMessage(absl::string_view principal) {
  MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  absl::StatusOr<Client*> client = Track(principal, now);
  if (!client.ok()) return client.status();
  return TakeToken(principal, *client, now);
}

absl::StatusOr<ClientLimiter::Permit> ClientLimiter::AdmitWatcher(absl::string_view principal) {
  MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  absl::StatusOr<Client*> client = Track(principal, now);
  if (!client.ok()) return client.status();
  const bool own_limit = (*client)->watchers >= limits_.max_watchers_per_client;
  if (own_limit || watchers_ >= limits_.max_watchers) {
    return Refused(
        Error(absl::StatusCode::kResourceExhausted, reason::kTooManyWatchers,
              own_limit ? absl::StrCat(principal, " already has ", (*client)->watchers,
                                       " WatchEvents streams open (--max_watchers_per_client)")
                        : absl::StrCat("the daemon already serves ", watchers_,
                                       " WatchEvents streams (--max_watchers)"),
              {{"limit", absl::StrCat(own_limit ? limits_.max_watchers_per_client
                                                : limits_.max_watchers)},
               {"scope", own_limit ? "client" : "daemon"}}),
        principal);
  }
  if (absl::Status token = TakeToken(principal, *client, now); !token.ok()) return token;
  ++(*client)->watchers;
  ++watchers_;
  return Permit(this, std::string(principal), Permit::Kind::kWatcher);
}

void ClientLimiter::Release(const std::string& principal, Permit::Kind kind) {
  MutexLock lock(&mu_);
  auto it = clients_.find(principal);
  if (it == clients_.end()) return;  // cannot happen: entries with permits are never evicted
  Client& client = it->second;
  if (kind == Permit::Kind::kCall) {
    --client.calls;
  } else {
    --client.watchers;
    --watchers_;
  }
  if (Idle(&client, clock_->Now())) clients_.erase(it);
}

size_t ClientLimiter::tracked_clients() const {
  MutexLock lock(&mu_);
  return clients_.size();
}

int ClientLimiter::watchers() const {
  MutexLock lock(&mu_);
  return watchers_;
}

}  // namespace iommud

#include "server/api/idempotency.h"

#include <google/protobuf/any.pb.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <openssl/sha.h>

#include <iostream>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/sync.h"
#include "google/rpc/status.pb.h"
#include "proto/status_codec.h"
#include "server/observability/log.h"

namespace iommud {
namespace {

// The store key: ids are per principal. Length-prefixed so no (principal, id) pair can collide
// with another.
std::string StoreKey(absl::string_view principal, absl::string_view request_id) {
  return absl::StrCat(principal.size(), ":", principal, ":", request_id);
}

std::string DeterministicBytes(const google::protobuf::Message& message) {
  std::string bytes;
  google::protobuf::io::StringOutputStream stream(&bytes);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  message.SerializeToCodedStream(&coded);
  coded.Trim();
  return bytes;
}

std::string Fingerprint(absl::string_view method, const google::protobuf::Message& request) {
  const std::string bytes = absl::StrCat(method, "\n", DeterministicBytes(request));
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

// A stored reply is a google.rpc.Status: code 0 with the response packed in details[0], or the
// wire form of the error (what ToGrpcStatus puts in the status-details trailer).
std::string EncodeReply(const absl::Status& status, const google::protobuf::Message& response) {
  if (status.ok()) {
    google::rpc::Status reply;
    reply.add_details()->PackFrom(response);
    return reply.SerializeAsString();
  }
  return ToGrpcStatus(status).error_details();
}

absl::Status DecodeReply(const std::string& bytes, google::protobuf::Message* response) {
  google::rpc::Status reply;
  if (!reply.ParseFromString(bytes)) {
    return Error(absl::StatusCode::kDataLoss, reason::kStateCorrupt,
                 "the stored reply of a request id cannot be read");
  }
  if (reply.code() != 0) {
    return FromGrpcStatus(
        grpc::Status(static_cast<grpc::StatusCode>(reply.code()), reply.message(), bytes));
  }
  if (reply.details_size() != 1 || !reply.details(0).UnpackTo(response)) {
    return Error(absl::StatusCode::kDataLoss, reason::kStateCorrupt,
                 absl::StrCat("the stored reply of a request id is not a ",
                              response->GetDescriptor()->full_name()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateRequestId(absl::string_view request_id) {
  if (request_id.size() > kMaxRequestIdBytes) {
    return Error(
        absl::StatusCode::kInvalidArgument, reason::kInvalidRequestId,
        absl::StrCat("request_id is ", request_id.size(), " bytes; at most ", kMaxRequestIdBytes),
        {{"field", "request_id"}});
  }
  for (const char c : request_id) {
    if (c < '!' || c > '~') {
      return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidRequestId,
                   "request_id must be printable ASCII without spaces", {{"field", "request_id"}});
    }
  }
  return absl::OkStatus();
}

IdempotencyKeeper::IdempotencyKeeper(StateStore* store, Clock* clock, absl::Duration window,
                                     prometheus::Registry* metrics)
    : store_(store), clock_(clock), window_(window) {
  if (metrics == nullptr) return;
  auto& outcomes = prometheus::BuildCounter()
                       .Name("iommud_request_ids_total")
                       .Help("Mutating requests that carried a request_id, by outcome")
                       .Register(*metrics);
  first_ = &outcomes.Add({{"outcome", "first"}});
  replayed_ = &outcomes.Add({{"outcome", "replayed"}});
  rebuilt_ = &outcomes.Add({{"outcome", "rebuilt"}});
  reused_ = &outcomes.Add({{"outcome", "reused"}});
  in_progress_ = &outcomes.Add({{"outcome", "in_progress"}});
  invalid_ = &outcomes.Add({{"outcome", "invalid"}});
  expired_ = &prometheus::BuildCounter()
                  .Name("iommud_request_ids_expired_total")
                  .Help("Request-id records dropped because they left the window")
                  .Register(*metrics)
                  .Add({});
}

IdempotencyKeeper::~IdempotencyKeeper() {
  Stop();
  MutexLock lock(&mu_);  // the replies still being stored call back into this
  while (!unstored_replies_.empty()) {
    WaitWithDeadline(&replies_changed_, &mu_, absl::InfiniteFuture());
  }
}

absl::Status IdempotencyKeeper::RunMessage(absl::string_view method, absl::string_view principal,
                                           absl::string_view request_id,
                                           const google::protobuf::Message& request_without_id,
                                           google::protobuf::Message* response,
                                           absl::FunctionRef<absl::Status(CallContext*)> handler,
                                           absl::FunctionRef<absl::Status(uint64_t)> rebuild) {
  if (absl::Status valid = ValidateRequestId(request_id); !valid.ok()) {
    Count(invalid_);
    return valid;
  }
  if (store_ == nullptr) {
    CallContext none;
    return handler(&none);
  }
  const std::string key = StoreKey(principal, request_id);
  std::optional<RequestRecord> unstored;  // a request answered whose reply is being stored
  {
    MutexLock lock(&mu_);
    if (auto it = unstored_replies_.find(key); it != unstored_replies_.end()) {
      unstored = it->second;
    } else if (!in_flight_.insert(key).second) {
      Count(in_progress_);
      return Error(absl::StatusCode::kAborted, reason::kRequestInProgress,
                   absl::StrCat("request ", request_id, " is still running; retry it"),
                   {{"request_id", std::string(request_id)}, {"method", std::string(method)}});
    }
  }
  RequestRecord record;
  record.request_id = key;
  record.method = std::string(method);
  record.fingerprint = Fingerprint(method, request_without_id);
  auto answer_retry = [&](const RequestRecord& earlier) -> absl::Status {
    if (earlier.method != record.method || earlier.fingerprint != record.fingerprint) {
      Count(reused_);
      return Error(absl::StatusCode::kInvalidArgument, reason::kRequestIdReused,
                   absl::StrCat("request ", request_id, " was used for another ", earlier.method,
                                " request; a request id names one request"),
                   {{"request_id", std::string(request_id)},
                    {"method", std::string(method)},
                    {"earlier_method", earlier.method}});
    }
    return Replay(earlier, response, rebuild);
  };
  if (unstored.has_value()) return answer_retry(*unstored);  // its reply is there: no store read

  struct Release {
    IdempotencyKeeper* keeper;
    const std::string& key;
    bool handed_off = false;  // Remember moved the key to unstored_replies_
    ~Release() {
      if (handed_off) return;
      MutexLock lock(&keeper->mu_);
      keeper->in_flight_.erase(key);
    }
  } release{this, key};

  const absl::Time now = clock_->Now();
  record.time_unix_nanos = absl::ToUnixNanos(now);  // the window counts from the first arrival

  absl::StatusOr<std::optional<RequestRecord>> found = store_->FindRequest(key);
  if (!found.ok()) return found.status();
  const int64_t cutoff = absl::ToUnixNanos(now - window_);
  if (found->has_value() && (*found)->time_unix_nanos >= cutoff) return answer_retry(**found);

  Count(first_);
  absl::Status status;
  bool committed = false;
  {
    CallContext context(&record);
    status = handler(&context);
    committed = context.record_committed();
  }
  if (status.ok() || committed) {
    release.handed_off = Remember(std::move(record), committed, status, *response);
  }
  return status;
}

absl::Status IdempotencyKeeper::Replay(const RequestRecord& record,
                                       google::protobuf::Message* response,
                                       absl::FunctionRef<absl::Status(uint64_t)> rebuild) {
  if (record.response.has_value()) {
    Count(replayed_);
    response->Clear();
    return DecodeReply(*record.response, response);
  }
  // The change is durable but its reply was not stored: the daemon stopped in between.
  Count(rebuilt_);
  response->Clear();
  absl::Status status = rebuild(record.result_ref);
  if (status.ok()) {
    absl::Status stored =
        store_->SetRequestResponse(record.request_id, EncodeReply(status, *response));
    if (!stored.ok()) {
      LogToStderr(LogLevel::kWarning,
                  absl::StrCat("cannot store the rebuilt reply of a request id: ", stored.ToString()));
    }
  }
  return status;
}

bool IdempotencyKeeper::Remember(RequestRecord record, bool committed, const absl::Status& status,
                                 const google::protobuf::Message& response) {
  std::string reply = EncodeReply(status, response);
  if (committed) {
    // The record is durable with the change; the reply is stored without waiting (one commit per
    // call, not two; a reply lost to a crash is rebuilt, see Replay). Until it is stored, a retry
    // is answered from unstored_replies_.
    std::string key = record.request_id;
    record.response = reply;
    {
      MutexLock lock(&mu_);
      unstored_replies_[key] = record;
      in_flight_.erase(key);
    }
    store_->SetRequestResponseAsync(
        std::move(record.request_id), std::move(reply),
        [this, key = std::move(key)](absl::Status stored) {
          if (!stored.ok()) {
            LogToStderr(LogLevel::kWarning, absl::StrCat("cannot store the reply of a request id: ",
                                                         stored.ToString()));
          }
          MutexLock lock(&mu_);
          unstored_replies_.erase(key);
          replies_changed_.SignalAll();
        });
    return true;
  }
  // A success that changed nothing durable: its record goes in alone, waited for.
  StoreBatch batch;
  record.response = std::move(reply);
  batch.request = std::move(record);
  if (absl::Status stored = store_->Commit(batch); !stored.ok()) {
    LogToStderr(LogLevel::kWarning,
                absl::StrCat("cannot store the reply of a request id: ", stored.ToString()));
  }
  return false;
}

absl::StatusOr<uint64_t> IdempotencyKeeper::ExpireNow() {
  if (store_ == nullptr) return 0;
  absl::StatusOr<uint64_t> expired =
      store_->ExpireRequests(absl::ToUnixNanos(clock_->Now() - window_));
  if (expired.ok() && expired_ != nullptr) expired_->Increment(static_cast<double>(*expired));
  return expired;
}

void IdempotencyKeeper::Start(absl::Duration interval) {
  if (interval <= absl::ZeroDuration() || store_ == nullptr) return;
  thread_ = std::thread([this, interval] { Loop(interval); });
}

void IdempotencyKeeper::Stop() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
    stop_changed_.SignalAll();
  }
  if (thread_.joinable()) thread_.join();
}

void IdempotencyKeeper::Loop(absl::Duration interval) {
  for (;;) {
    {
      MutexLock lock(&mu_);
      const absl::Time next = absl::Now() + interval;
      while (!stop_ && !WaitWithDeadline(&stop_changed_, &mu_, next)) {
      }
      if (stop_) return;
    }
    absl::StatusOr<uint64_t> expired = ExpireNow();
    if (!expired.ok()) {
      LogToStderr(LogLevel::kWarning, absl::StrCat("cannot expire request-id records: ",
                                                    expired.status().ToString()));
    }
  }
}

}  // namespace iommud

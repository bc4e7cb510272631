#include "server/observability/metrics_listener.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <exception>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/error.h"
#include "core/error_reasons.h"

namespace iommud {
namespace {

// How often the stopping listener is poked: civetweb checks its stop flag after each wake-up.
constexpr absl::Duration kWakeInterval = absl::Milliseconds(5);

std::atomic<uint64_t> pokes{0};  // MetricsListenerPokes

// Opens and drops one TCP connection to host:port without waiting for it to complete.
void Poke(const std::string& host, int port) {
  pokes.fetch_add(1, std::memory_order_relaxed);
  addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return;
  for (addrinfo* at = found; at != nullptr; at = at->ai_next) {
    const int fd = socket(at->ai_family, at->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    (void)connect(fd, at->ai_addr, at->ai_addrlen);  // EINPROGRESS: the SYN is what wakes it
    close(fd);
    break;
  }
  freeaddrinfo(found);
}

}  // namespace

uint64_t MetricsListenerPokes() { return pokes.load(std::memory_order_relaxed); }

std::string MetricsWakeHost(const std::string& listen) {
  std::string host;
  if (!listen.empty() && listen.front() == '[') {
    const size_t close = listen.find(']');
    host = listen.substr(1, close == std::string::npos ? std::string::npos : close - 1);
    return host.empty() || host == "::" ? "::1" : host;
  }
  const size_t colon = listen.rfind(':');
  host = colon == std::string::npos ? "" : listen.substr(0, colon);
  return host.empty() || host == "0.0.0.0" ? "127.0.0.1" : host;
}

absl::StatusOr<std::unique_ptr<MetricsListener>> MetricsListener::Start(
    const std::string& listen) {
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(listen, /*num_threads=*/1);
  } catch (const std::exception& e) {
    return Error(absl::StatusCode::kUnavailable, reason::kMetricsListenFailed,
                 absl::StrCat("cannot serve metrics on ", listen, ": ", e.what()),
                 {{"metrics_listen", listen}});
  }
  const std::vector<int> ports = exposer->GetListeningPorts();
  const int port = ports.empty() ? 0 : ports.front();
  return std::unique_ptr<MetricsListener>(
      new MetricsListener(std::move(exposer), MetricsWakeHost(listen), port));
}

MetricsListener::MetricsListener(std::unique_ptr<prometheus::Exposer> exposer,
                                 std::string wake_host, int port)
    : exposer_(std::move(exposer)), wake_host_(std::move(wake_host)), port_(port) {}

MetricsListener::~MetricsListener() {
  std::atomic<bool> stopped{false};
  std::thread waker([this, &stopped] {
    while (!stopped.load()) {
      Poke(wake_host_, port_);
      absl::SleepFor(kWakeInterval);
    }
  });
  exposer_.reset();  // civetweb's mg_stop: returns once its threads are gone
  stopped.store(true);
  waker.join();
}

void MetricsListener::Register(const std::weak_ptr<prometheus::Collectable>& collectable) {
  exposer_->RegisterCollectable(collectable);
}

}  // namespace iommud

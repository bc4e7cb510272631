// The Prometheus /metrics HTTP listener (prometheus-cpp's Exposer, civetweb underneath) with a
// prompt stop.
//
// civetweb's listening thread polls its sockets with a 2 s timeout and looks at the stop flag only
// between polls, so destroying an Exposer takes up to 2 s: every graceful stop of iommud (a
// `systemctl restart`, an upgrade) waited that long with the gRPC socket already closed. The
// destructor here wakes the poll with a connection to the listener while the Exposer stops, so the
// stop takes milliseconds.
#ifndef IOMMUD_SERVER_OBSERVABILITY_METRICS_LISTENER_H_
#define IOMMUD_SERVER_OBSERVABILITY_METRICS_LISTENER_H_

#include <cstdint>
#include <memory>
#include <string>

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>

#include "absl/status/statusor.h"

namespace iommud {

class MetricsListener {
 public:
  // Listens on `listen` ("host:port", "[v6]:port"; port 0 = any free port). Errors:
  // UNAVAILABLE METRICS_LISTEN_FAILED when civetweb cannot listen there.
  static absl::StatusOr<std::unique_ptr<MetricsListener>> Start(const std::string& listen);

  // Stops serving; returns once no scrape runs any more (collectables may then go away).
  ~MetricsListener();

  MetricsListener(const MetricsListener&) = delete;
  MetricsListener& operator=(const MetricsListener&) = delete;

  // Serves `collectable` on /metrics from now on. The listener keeps a weak reference only: the
  // caller keeps it alive until the listener is destroyed.
  void Register(const std::weak_ptr<prometheus::Collectable>& collectable);

  // The port it listens on (the one chosen when `listen` said port 0).
  int port() const { return port_; }

 private:
  MetricsListener(std::unique_ptr<prometheus::Exposer> exposer, std::string wake_host, int port);

  std::unique_ptr<prometheus::Exposer> exposer_;
  const std::string wake_host_;  // a numeric address of this host the listener accepts on
  const int port_;
};

// The address a local connection to a listener on `listen` should go to: the loopback address of
// its family for a wildcard (or empty) host, else the host itself, without brackets. For tests.
std::string MetricsWakeHost(const std::string& listen);

// Wake-up connections made by stopping listeners so far, in this process (one every 5 ms while a
// listener stops). For tests: a stop that works needs a few, one left to civetweb's 2 s poll
// hundreds.
uint64_t MetricsListenerPokes();

}  // namespace iommud

#endif  // IOMMUD_SERVER_OBSERVABILITY_METRICS_LISTENER_H_

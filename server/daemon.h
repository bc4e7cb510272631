// Daemon: one running iommud — backend, registry, start-up topology and the gRPC server
// (iommu.v1.Iommu, grpc.health.v1.Health, server reflection) on a unix socket in its state
// directory and optionally on TCP; the fd side channel next to the unix socket
// (server/host/fd_channel.h); Prometheus metrics on their own HTTP listener; the periodic auditor.
// main.cc turns flags into DaemonOptions and signals into Shutdown(); tests can run a Daemon
// in-process.
#ifndef IOMMUD_SERVER_DAEMON_H_
#define IOMMUD_SERVER_DAEMON_H_

#include <grpcpp/grpcpp.h>


#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/backend/backend_factory.h"
#include "core/crash_points.h"
#include "core/event_bus.h"
#include "core/fault_injector.h"
#include "core/host/device_fd_provider.h"
#include "core/registry.h"
#include "core/store/durable_step_state_store.h"
#include "core/store/fault_injecting_state_store.h"
#include "core/store/state_store.h"
#include "core/types.h"
#include "server/api/idempotency.h"
#include "server/api/iommu_service.h"
#include "server/daemon_flags.h"
#include "server/host/device_removal.h"
#include "server/host/fd_channel.h"
#include "server/host/fd_channel_ops.h"
#include "server/host/fd_store.h"
#include "server/host/host_event_watcher.h"
#include "server/keepalive.h"
#include "server/observability/channelz_service.h"
#include "server/observability/daemon_metrics.h"
#include "server/observability/instrumented_backend.h"
#include "server/observability/instrumented_state_store.h"
#include "server/observability/log.h"
#include "server/observability/metrics_listener.h"
#include "server/observability/state_collector.h"
#include "server/security/authorizer.h"
#include "server/security/limits.h"
#include "server/security/peer_cred_listener.h"
#include "server/security/tls_credentials.h"
#include "server/state/lease_reaper.h"
#include "server/state/state_dir.h"
#include "server/state/state_recovery.h"
#include "server/state/state_store_factory.h"

namespace iommud {

// The topology value meaning "start with no units and no devices".
inline constexpr absl::string_view kNoTopology = "none";

struct DaemonOptions {
  std::string state_dir = "/run/iommud";  // created 0750 if missing
  std::string socket_path;                // empty: <state_dir>/iommud.sock
  // TCP listener, "host:port" ("127.0.0.1:0" picks a free port); "" = no TCP. Mutual TLS from the
  // tls_* files (all three required, re-read every tls_refresh_interval), or plaintext with
  // insecure_tcp on a loopback address only (server/security/tls_credentials.h).
  std::string listen_tcp;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  absl::Duration tls_refresh_interval = absl::Seconds(60);
  bool insecure_tcp = false;
  std::string backend = "software";
  BackendOptions backend_options;
  // --backend=linux only. With the store in use, --state may be durable (sqlite): a restart
  // adopts the kept groups, containers and memory (docs/semantics.md "Crash and restart on a real
  // host"); without it the linux backend needs --state=memory.
  FdStoreMode fd_store = FdStoreMode::kAuto;
  // "" = the embedded demo topology; kNoTopology = no units or devices; else a text-format file.
  std::string topology;
  DomainType default_domain_type = DomainType::kDma;
  // Prometheus /metrics listener, "host:port" ("127.0.0.1:0" picks a free port); "" = off (the
  // iommud binary's --metrics_listen defaults to 127.0.0.1:9464).
  std::string metrics_listen;
  // How often the auditor compares the registry with the hardware; zero = only on demand.
  absl::Duration audit_interval = absl::Seconds(60);
  // How often lapsed ownership leases are released (server/state/lease_reaper.h); zero = never.
  absl::Duration lease_reap_interval = absl::Seconds(1);
  // --backend=linux: how long the owner of a device the kernel is removing has to close its fds
  // before iommud revokes its mappings (server/host/device_removal.h); every backend: the default
  // wait of a ReleaseDevice of an owned device (server/api/owned_device_release.h).
  absl::Duration release_request_timeout = absl::Seconds(10);
  // How long a request_id is remembered (server/api/idempotency.h); must be positive.
  absl::Duration request_id_window = kDefaultRequestIdWindow;
  // Mutating calls run on per-group strands (server/api/key_strands.h). False: on a plain pool
  // with a durable store and on gRPC's threads with the memory store, as before the strands (for
  // side-by-side measurements, tests/bench/rpc_bench.sh).
  bool group_strands = true;
  // Serve the fault-injection RPCs and put the injector in front of the backend (test hosts only).
  bool allow_fault_injection = false;
  // Serve grpc.channelz.v1.Channelz (gRPC's channel and socket introspection; --channelz) to
  // admins only (server/observability/channelz_service.h): others get PERMISSION_DENIED like any
  // admin RPC.
  bool channelz = false;
  // Where authorization denials are logged (AUDIT lines, server/observability/log.h); not owned,
  // must outlive the Daemon. Null: "iommud: audit: ..." lines on stderr.
  Logger* logger = nullptr;
  // Roles of principals (server/security/policy.h); "" = the default policy (root and the daemon's
  // own uid are admin, nobody else has a role).
  std::string policy_file;
  // Identify a unix peer without peer-credential properties as the daemon's own uid. The daemon's
  // own listener identifies every peer by SO_PEERCRED, so this no longer changes anything on its
  // socket; kept (deprecated) so that existing command lines still start.
  bool unix_peer_fallback_to_daemon_uid = false;
  // The registry's durable state (--state, --state_file, --state_sync, --init_state). With the
  // emulated backend, its memory file counts as evidence of previous state (STATE_MISSING).
  StateStoreOptions state;
  // Crash-point sweep (core/crash_points.h; test hosts only): when non-zero, the daemon kills
  // itself (SIGKILL) just before its N-th durable step counted from `test_crash_phase`.
  uint64_t test_crash_before_step = 0;
  CrashPoints::Phase test_crash_phase = CrashPoints::Phase::kStart;
  // Test hook: called during Start while the registry is being recovered (the server listens,
  // health is NOT_SERVING, iommu.v1.Iommu calls fail with UNAVAILABLE RECOVERING).
  std::function<void()> while_recovering;
  // The unix socket's owner/group and which peers may connect
  // (server/security/peer_cred_listener.h); the daemon fills in socket_path, group_dir (the state
  // dir, for the default socket) and metrics.
  PeerCredListenerOptions unix_listener;
  // Message sizes, streams, per-client rate/calls/watchers, request bounds
  // (server/security/limits.h).
  Limits limits;
  // The fd side channel (server/host/fd_channel.h): its SOCK_SEQPACKET socket, "" = the unix
  // socket's path + ".fds". It gets the unix socket's owner, group and allow-list (unix_listener).
  std::string fd_socket_path;
  int fd_channel_max_connections = 64;
  // The VFIO device fds OpenDevice hands out; not owned, must outlive the daemon. Null: the
  // backend's own (the linux backend's), or, for a backend that drives no VFIO devices, none
  // (OpenDevice fails with NO_DEVICE_FDS). Tests set it to stand in for a host.
  host::DeviceFdProvider* device_fds = nullptr;
  // HTTP/2 keepalive of the server's connections (server/keepalive.h).
  KeepaliveOptions keepalive;
};

class Daemon {
 public:
  // Loads the policy (INVALID_POLICY / POLICY_UNREADABLE), checks the TCP options and TLS files
  // (TLS_REQUIRED, INSECURE_TCP_NOT_LOOPBACK, INVALID_TLS_FILE ...: tls_credentials.h), prepares
  // the state directory (creates it, locks it: STATE_DIR_LOCKED if another daemon uses it, clears
  // a stale socket: SOCKET_IN_USE if one is live), opens the state store (STATE_MISSING,
  // STATE_EXISTS, STATE_CORRUPT, STATE_LOCKED: state_store_factory.h), creates the backend and the
  // registry, starts listening with health NOT_SERVING, recovers the registry from the store or
  // applies the topology to an empty store (state_recovery.h), then turns health SERVING for ""
  // and "iommu.v1.Iommu" and returns. Errors carry the failing step's reason; nothing is left
  // listening on failure.
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(const DaemonOptions& options);

  // Shutdown(absl::ZeroDuration()) unless it already ran.
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  const std::string& socket_path() const { return socket_path_; }
  const std::string& fd_socket_path() const { return fd_socket_path_; }
  std::string unix_target() const { return "unix:" + socket_path_; }
  int tcp_port() const { return tcp_port_; }  // 0 when TCP is off
  const TcpCredentials& tcp_credentials() const { return tcp_; }  // its stager (TLS), for tests
  Registry* registry() const { return registry_.get(); }
  EventBus* events() { return &events_; }
  DaemonMetrics* metrics() const { return metrics_.get(); }
  int metrics_port() const { return metrics_port_; }  // 0 when metrics are off
  StateStore* store() const { return store_.get(); }
  const std::string& state_file() const { return state_file_; }  // "" for the in-memory store
  // The crash-point counter (options.test_crash_before_step), or null when none is set.
  const CrashPoints* crash_points() const { return crash_points_.get(); }
  // What the start-up did with the store (recovery report, topology applied or not, log lines).
  const StartupOutcome& startup() const { return startup_; }

  // Runs the auditor now: updates iommud_leaked_attachments and returns what it found.
  std::vector<LeakRecord> AuditNow();

  // Health turns NOT_SERVING for every service (and stays so); calls keep being served. The first
  // step of Shutdown, separate so that load balancers can drain first.
  void StopServing();

  // StopServing, then stops accepting calls and waits up to `grace` for the calls in flight (then
  // cancels them), then removes the socket. Idempotent and thread-safe; later calls return at once.
  void Shutdown(absl::Duration grace);

  // Blocks until Shutdown has completed.
  void Wait();

  // What SIGHUP does (server/main.cc), for the files an operator edits in place:
  //   --policy_file: read again and put in force for every call authorized from then on (calls and
  //     streams already admitted keep running); a file that does not load (INVALID_POLICY,
  //     POLICY_UNREADABLE) is refused and the policy in force stays. No --policy_file: the default
  //     policy stays.
  //   TLS files (--listen_tcp with TLS): checked and staged now (TlsFileStager::PollOnce) rather
  //     than at the next --tls_refresh_interval tick; gRPC's certificate watcher serves the staged
  //     files within its own refresh interval. A version that fails its checks is refused.
  // One step per item: what was done (e.g. "policy reloaded from FILE (3 entries)") and its
  // status (a refusal does not keep the other items from being done). Logs go to stderr, which
  // has nothing to reopen; the flags and the topology are start-up only. Thread-safe.
  struct ReloadStep {
    std::string what;
    absl::Status status;
  };
  std::vector<ReloadStep> Reload();

 private:
  Daemon() = default;

  DaemonOptions options_;
  std::string socket_path_;
  std::string fd_socket_path_;
  int tcp_port_ = 0;
  std::unique_ptr<StateDirLock> lock_;
  std::unique_ptr<CrashPoints> crash_points_;  // set with options.test_crash_before_step
  std::unique_ptr<StateStore> store_;  // outlives registry_ (declared before it)
  std::unique_ptr<DurableStepStateStore> crash_point_store_;  // wraps store_ with crash_points_
  std::string state_file_;
  StartupOutcome startup_;
  void AuditLoop();
  absl::Status StartMetrics(const std::string& listen);

  int metrics_port_ = 0;
  EventBus events_;
  std::unique_ptr<DaemonMetrics> metrics_;
  // The fd store in use (null: none); outlives the regions and the backend, which drop from it.
  std::unique_ptr<FdStore> fd_store_;
  // The memory regions: the registry's, and the backend's resolver (outlives both).
  std::unique_ptr<MemoryRegionTable> memory_regions_;
  std::unique_ptr<IommuBackend> backend_;
  host::DeviceFdProvider* device_fds_ = nullptr;  // the backend, when it drives VFIO devices
  // This daemon's own: handed to its backend (BackendHooks::faults), registry
  // (RegistryOptions::faults) and store (injecting_store_); no other daemon sees it.
  FaultInjector injector_;
  std::unique_ptr<FaultInjectingStateStore> injecting_store_;  // wraps store_ when allowed
  std::unique_ptr<InstrumentedStateStore> instrumented_store_;  // the outermost wrapper
  std::unique_ptr<InstrumentedBackend> instrumented_backend_;  // wraps the one below it
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<LeaseReaper> lease_reaper_;  // before registry_ in destruction
  // --backend=linux: the kernel's device additions, removals and release requests. Destroyed
  // before registry_, after the fd channel (which arms device fds through armed_device_fds_).
  std::unique_ptr<DeviceRemovalCoordinator> device_removals_;
  std::unique_ptr<HostEventWatcher> host_events_;
  std::unique_ptr<host::ReleaseRequestingFdProvider> armed_device_fds_;
  std::shared_ptr<StateCollector> state_collector_;
  std::unique_ptr<MetricsListener> metrics_listener_;
  std::thread audit_thread_;
  std::unique_ptr<Authorizer> authorizer_;
  std::unique_ptr<ClientLimiter> limiter_;  // outlives the service and its watch streams
  std::unique_ptr<IdempotencyKeeper> idempotency_;  // outlives the service
  std::unique_ptr<IommuService> service_;
  std::unique_ptr<ChannelzService> channelz_;  // with options.channelz; outlives server_
  std::unique_ptr<RegistryFdChannelOps> fd_ops_;
  std::unique_ptr<FdChannel> fd_channel_;  // uses fd_ops_ and authorizer_; destroyed before them
  TcpCredentials tcp_;  // outlives server_, whose TLS watcher reads the staged files
  std::unique_ptr<PeerCredListener> unix_listener_;  // accepts for server_; stopped before it
  std::unique_ptr<grpc::Server> server_;

  absl::Mutex mu_;
  absl::CondVar changed_;  // signalled when shutdown_done_ or stop_audits_ is set
  bool shutdown_started_ ABSL_GUARDED_BY(mu_) = false;
  bool shutdown_done_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_audits_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_DAEMON_H_

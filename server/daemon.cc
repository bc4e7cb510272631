#include "server/daemon.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "core/host/linux_backend.h"
#include "core/host/sysfs_inventory.h"
#include "core/host/uevent_monitor.h"
#include "core/status_macros.h"
#include "core/sync.h"
#include "grpc/health/v1/health.pb.h"
#include "server/host/host_recovery_report.h"
#include "server/host/kept_regions.h"
#include "server/observability/channelz_service.h"
#include "server/observability/grpc_metrics_interceptor.h"
#include "server/observability/recovery_metrics.h"
#include "server/security/tls_credentials.h"
#include "server/security/tls_file_stager.h"
#include "server/topology/host_topology.h"
#include "server/topology/topology.h"

namespace iommud {
namespace {

// The name health reports for the API service (besides "" for the whole server).
constexpr char kIommuServiceName[] = "iommu.v1.Iommu";
// Threads of the mutating calls' strands (key_strands.h) with a durable store: at most this many
// groups' calls wait for a commit at once, so it bounds how many changes one group commit can carry.
constexpr int kMutatingCallThreads = 64;
// With the memory store nothing waits for a commit: a few threads serve the busy groups.
constexpr int kMutatingCallThreadsInMemory = 8;

// Process-wide gRPC settings, before the first ServerBuilder: the default health service, and the
// reflection plugin. Reflection describes services from the generated descriptor pool; touching the
// vendored health proto's descriptor links it in so grpc.health.v1.Health can be described too.
void InitGrpcOnce() {
  static const bool initialized = [] {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    (void)grpc::health::v1::HealthCheckRequest::descriptor();
    return true;
  }();
  (void)initialized;
}

absl::StatusOr<LoadedTopology> LoadTopology(const std::string& topology) {
  if (topology.empty()) return LoadDemoTopology();
  if (topology == kNoTopology) {
    LoadedTopology none;
    none.source = "none";
    return none;
  }
  return LoadTopologyFile(topology);
}

// What --backend=linux does not combine with: a topology file (the host's sysfs is the topology)
// and a durable store (the kernel drops every container, mapping and group claim with iommud's fds,
// so state that outlived the process would describe things that are gone; docs/semantics.md).
absl::Status CheckHostBackendOptions(const DaemonOptions& options, bool fd_store) {
  if (!options.topology.empty()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidFlag,
                 "--topology does not apply to --backend=linux: the host's sysfs is the topology",
                 {{"flag", "topology"}});
  }
  if (options.state.kind != StateKind::kMemory && !fd_store) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidFlag,
                 "--backend=linux needs --state=memory without the fd store (--fd_store, under a "
                 "service manager with NOTIFY_SOCKET): the kernel drops iommud's containers, "
                 "mappings and claims with its file descriptors, so no durable state can describe "
                 "them after a restart",
                 {{"flag", "state"}});
  }
  return absl::OkStatus();
}

void LogLine(Logger* logger, LogLevel level, const std::string& line) {
  if (logger != nullptr) {
    logger->Log(level, line);
  } else {
    LogToStderr(level, line);
  }
}

// The store options of `options`, with the emulated backend's memory file as evidence of state.
StateStoreOptions StoreOptionsOf(const DaemonOptions& options) {
  StateStoreOptions store = options.state;
  if (options.backend == "emulated") {
    auto memory_file = options.backend_options.find("memory_file");
    if (memory_file != options.backend_options.end() && !memory_file->second.empty()) {
      store.previous_state_evidence.push_back(memory_file->second);
    }
  }
  return store;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(const DaemonOptions& options) {
  InitGrpcOnce();
  std::unique_ptr<Daemon> daemon(new Daemon());
  daemon->options_ = options;
  daemon->socket_path_ = options.socket_path.empty()
                             ? absl::StrCat(options.state_dir, "/iommud.sock")
                             : options.socket_path;

  // The policy first: a bad file is a start-up error before anything is created.
  ASSIGN_OR_RETURN(Policy policy, options.policy_file.empty()
                                      ? absl::StatusOr<Policy>(Policy::Default(getuid()))
                                      : Policy::Load(options.policy_file));
  RETURN_IF_ERROR(options.limits.Validate());
  RETURN_IF_ERROR(options.keepalive.Validate());
  if (options.request_id_window <= absl::ZeroDuration()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidFlag,
                 absl::StrCat("--request_id_window must be positive, not ",
                              absl::FormatDuration(options.request_id_window)),
                 {{"flag", "request_id_window"}});
  }
  // So are bad TCP options and TLS files.
  const TcpSecurityOptions tcp{options.listen_tcp,    options.tls_cert,
                               options.tls_key,       options.tls_client_ca,
                               options.tls_refresh_interval, options.insecure_tcp,
                               absl::StrCat(options.state_dir, "/tls")};
  if (WantsTcp(tcp)) RETURN_IF_ERROR(CheckTlsFiles(tcp));
  RETURN_IF_ERROR(EnsureStateDir(options.state_dir));
  ASSIGN_OR_RETURN(daemon->lock_, StateDirLock::Acquire(options.state_dir));
  if (WantsTcp(tcp)) {  // stages the checked TLS files under the state directory
    ASSIGN_OR_RETURN(daemon->tcp_, TcpServerCredentials(tcp));
  }
  RETURN_IF_ERROR(RemoveStaleSocket(daemon->socket_path_));
  const bool host_backend = options.backend == "linux";
  if (options.fd_store == FdStoreMode::kRequired && !host_backend) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidFlag,
                 "--fd_store=required needs --backend=linux (only its kernel objects are kept)",
                 {{"flag", "fd_store"}});
  }
  if (host_backend && options.fd_store != FdStoreMode::kOff) {
    // Takes what a previous process kept (LISTEN_FDS) whether or not it is used: unused, the
    // fds close here and the service manager's copies go when we report them below.
    daemon->fd_store_ = FdStore::FromEnvironment();
    if (!daemon->fd_store_->enabled()) {
      if (options.fd_store == FdStoreMode::kRequired) {
        return Error(absl::StatusCode::kFailedPrecondition, reason::kFdStoreUnavailable,
                     "--fd_store=required, but no service manager's fd store (NOTIFY_SOCKET is "
                     "not set)",
                     {{"flag", "fd_store"}});
      }
      daemon->fd_store_.reset();
    }
  }
  if (host_backend) RETURN_IF_ERROR(CheckHostBackendOptions(options, daemon->fd_store_ != nullptr));
  daemon->fd_socket_path_ = options.fd_socket_path.empty()
                                ? absl::StrCat(daemon->socket_path_, ".fds")
                                : options.fd_socket_path;
  RETURN_IF_ERROR(RemoveStaleSocket(daemon->fd_socket_path_, SOCK_SEQPACKET));
  // A bad topology file is a start-up error even when the store makes it unnecessary.
  ASSIGN_OR_RETURN(LoadedTopology topology,
                   LoadTopology(host_backend ? std::string(kNoTopology) : options.topology));
  DurableStepHook before_durable_step;  // null unless a crash point is set
  if (options.test_crash_before_step != 0) {
    daemon->crash_points_ =
        std::make_unique<CrashPoints>(options.test_crash_before_step, options.test_crash_phase);
    before_durable_step = daemon->crash_points_->Hook();
  }
  ASSIGN_OR_RETURN(OpenedStateStore opened, OpenStateStore(StoreOptionsOf(options),
                                                           options.state_dir));
  daemon->store_ = std::move(opened.store);
  daemon->state_file_ = opened.path;
  StateStore* store = daemon->store_.get();
  if (before_durable_step) {
    daemon->crash_point_store_ = std::make_unique<DurableStepStateStore>(store, before_durable_step);
    store = daemon->crash_point_store_.get();
  }
  if (opened.created && !opened.path.empty()) {
    if (before_durable_step) before_durable_step("topology marker");
    RETURN_IF_ERROR(WriteTopologyPendingMarker(opened.path));
  }

  daemon->metrics_ = std::make_unique<DaemonMetrics>(&daemon->events_);
  daemon->memory_regions_ = std::make_unique<MemoryRegionTable>();
  BackendHooks backend_hooks;
  backend_hooks.before_durable_write = before_durable_step;
  backend_hooks.memory = daemon->memory_regions_.get();
  if (options.allow_fault_injection) backend_hooks.faults = &daemon->injector_;
  backend_hooks.fd_keeper = daemon->fd_store_.get();
  BackendOptions backend_options = options.backend_options;
  if (host_backend && backend_options.count("host_state_dir") == 0) {
    // The host journal (what iommud changed on the host) next to the daemon's own state.
    backend_options["host_state_dir"] = options.state_dir;
  }
  ASSIGN_OR_RETURN(daemon->backend_,
                   CreateBackend(options.backend, backend_options, backend_hooks));
  IommuBackend* hardware = daemon->backend_.get();
  auto* host = dynamic_cast<host::LinuxBackend*>(hardware);
  if (host != nullptr) topology = TopologyOfHost(host->topology());  // the host's, from sysfs
  daemon->device_fds_ = dynamic_cast<host::DeviceFdProvider*>(hardware);
  if (options.allow_fault_injection) {
    DaemonMetrics* metrics = daemon->metrics_.get();
    daemon->injector_.SetOnInjected(
        [metrics](absl::string_view point) { metrics->CountInjectedFault(point); });
    // backend.*: the registry hits them (RegistryOptions::faults, below); pgtable.alloc,
    // cmdq.sync_timeout and host.*: the backend, through backend_hooks.faults (above).
    daemon->injecting_store_ =  // store.write
        std::make_unique<FaultInjectingStateStore>(store, &daemon->injector_);
    store = daemon->injecting_store_.get();
  }
  // Outermost, so that injected store.write failures are counted like real ones.
  daemon->instrumented_store_ =
      std::make_unique<InstrumentedStateStore>(store, daemon->metrics_->registry().get());
  store = daemon->instrumented_store_.get();
  daemon->instrumented_backend_ =
      std::make_unique<InstrumentedBackend>(hardware, daemon->metrics_.get());
  RegistryOptions registry_options;
  registry_options.backend = daemon->instrumented_backend_.get();
  registry_options.observer = daemon->metrics_.get();
  registry_options.default_domain_type = options.default_domain_type;
  registry_options.store = store;
  if (options.allow_fault_injection) registry_options.faults = &daemon->injector_;
  registry_options.memory_regions = daemon->memory_regions_.get();
  registry_options.max_pinned_bytes_per_owner = options.limits.max_pinned_bytes_per_owner;
  // The linux backend maps real memory: its regions come with process memory (the fd channel).
  registry_options.regions_need_process_memory = options.backend == "linux";
  ASSIGN_OR_RETURN(daemon->registry_, Registry::Create(registry_options));

  Authorizer::Options authz;
  if (options.logger != nullptr) {
    authz.audit_log = [logger = options.logger](const std::string& line) { logger->Audit(line); };
  }
  authz.policy = std::move(policy);
  authz.identity.unix_peer_fallback_to_daemon_uid = options.unix_peer_fallback_to_daemon_uid;
  authz.identity.daemon_uid = getuid();
  authz.identity.daemon_gid = getgid();
  authz.identity.insecure_tcp = options.insecure_tcp;
  authz.metrics = daemon->metrics_->registry().get();
  daemon->authorizer_ = std::make_unique<Authorizer>(std::move(authz));

  daemon->limiter_ = std::make_unique<ClientLimiter>(options.limits, Clock::Real(),
                                                     daemon->metrics_->registry().get());
  daemon->idempotency_ = std::make_unique<IdempotencyKeeper>(
      registry_options.store, Clock::Real(), options.request_id_window,
      daemon->metrics_->registry().get());
  daemon->service_ = std::make_unique<IommuService>(
      daemon->registry_.get(), &daemon->events_, daemon->metrics_.get(),
      options.allow_fault_injection ? &daemon->injector_ : nullptr, daemon->authorizer_.get(),
      daemon->limiter_.get(), daemon->idempotency_.get());
  daemon->service_->SetRecovering(true);
  daemon->service_->SetDefaultReleaseWait(options.release_request_timeout);
  // Mutating calls run on per-group strands: a call waiting for its group holds no thread. With a
  // durable store each waits there for the group commit holding its change (sqlite_state_store.h),
  // so that many groups' calls can wait at once and share one commit. With the memory store a call
  // of an idle group runs at once on gRPC's thread (no hand-off). (--group_strands=false: the earlier threading, for measurements.)
  const bool durable = registry_options.store->durability() != StoreDurability::kNone;
  if (options.group_strands || durable) {
    daemon->service_->RunMutatingCallsOffGrpcThreads(
        durable ? kMutatingCallThreads : kMutatingCallThreadsInMemory, options.group_strands,
        /*inline_when_idle=*/!durable && options.group_strands);
  }
  grpc::ServerBuilder builder;
  ApplyTransportLimits(options.limits, &builder);
  ApplyKeepalive(options.keepalive, &builder);
  PeerCredListenerOptions unix_options = options.unix_listener;
  unix_options.socket_path = daemon->socket_path_;
  if (options.socket_path.empty()) unix_options.group_dir = options.state_dir;
  unix_options.metrics = daemon->metrics_->registry().get();
  ASSIGN_OR_RETURN(daemon->unix_listener_, PeerCredListener::Create(unix_options, &builder));
  host::DeviceFdProvider* device_fds =
      options.device_fds != nullptr ? options.device_fds : daemon->device_fds_;
  if (host != nullptr) {
    // The kernel's device removals and additions, and its requests for owned devices back: every
    // device fd handed out is armed with a release-request eventfd (server/host/device_removal.h).
    DeviceRemovalOptions removal;
    removal.registry = daemon->registry_.get();
    removal.observer = daemon->metrics_.get();
    removal.release_timeout = options.release_request_timeout;
    removal.probe_for = [host, inventory = host::SysfsInventory(host->options().sysfs_root)](
                            const std::string& device) {
      return ReprobeHostDevice(host->topology(), inventory, device);
    };
    removal.count_outcome = [metrics = daemon->metrics_.get()](absl::string_view outcome) {
      metrics->CountReleaseRequest(outcome);
    };
    removal.holds_group = [host](const std::string& device) { return host->HoldsGroupOf(device); };
    daemon->device_removals_ = std::make_unique<DeviceRemovalCoordinator>(std::move(removal));
    ASSIGN_OR_RETURN(std::unique_ptr<host::UeventMonitor> uevents, host::UeventMonitor::Open());
    daemon->host_events_ = std::make_unique<HostEventWatcher>(daemon->device_removals_.get(),
                                                              std::move(uevents));
    if (device_fds != nullptr) {
      daemon->armed_device_fds_ = std::make_unique<host::ReleaseRequestingFdProvider>(
          device_fds, daemon->host_events_.get());
      device_fds = daemon->armed_device_fds_.get();
    }
  }
  // The fd channel listens now (clients wait in its backlog) and serves once recovered.
  daemon->fd_ops_ = std::make_unique<RegistryFdChannelOps>(daemon->registry_.get(), device_fds,
                                                           daemon->fd_store_.get());
  FdChannelOptions fd_options;
  fd_options.socket.path = daemon->fd_socket_path_;
  fd_options.socket.owner = unix_options.socket_owner;
  fd_options.socket.group = unix_options.socket_group;
  fd_options.socket.group_dir = unix_options.group_dir;
  fd_options.allow_uids = unix_options.allow_uids;
  fd_options.allow_gids = unix_options.allow_gids;
  fd_options.max_connections = options.fd_channel_max_connections;
  fd_options.metrics = daemon->metrics_->registry().get();
  ASSIGN_OR_RETURN(daemon->fd_channel_, FdChannel::Create(std::move(fd_options),
                                                          daemon->authorizer_.get(),
                                                          daemon->fd_ops_.get()));
  if (!options.listen_tcp.empty()) {
    builder.AddListeningPort(options.listen_tcp, daemon->tcp_.credentials, &daemon->tcp_port_);
  }
  builder.RegisterService(daemon->service_.get());
  if (options.channelz) {
    // Admin only (server/observability/channelz_service.h); every other unknown method stays
    // UNIMPLEMENTED.
    daemon->channelz_ = std::make_unique<ChannelzService>(daemon->authorizer_.get());
    builder.RegisterCallbackGenericService(daemon->channelz_.get());
  }
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<GrpcMetricsInterceptorFactory>(
      *daemon->metrics_->registry(),
      std::vector<std::string>{kIommuServiceName, "grpc.health.v1.Health"}));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  daemon->server_ = builder.BuildAndStart();
  if (daemon->server_ != nullptr) {
    // The default health service starts with "" SERVING: not until the registry is recovered.
    grpc::HealthCheckServiceInterface* health = daemon->server_->GetHealthCheckService();
    health->SetServingStatus("", false);
    health->SetServingStatus(kIommuServiceName, false);
  }
  if (daemon->server_ == nullptr) {
    return Error(absl::StatusCode::kUnavailable, reason::kListenFailed,
                 absl::StrCat("cannot listen on ", daemon->unix_target(),
                              options.listen_tcp.empty() ? "" : " and " + options.listen_tcp),
                 {{"socket", daemon->socket_path_}, {"listen_tcp", options.listen_tcp}});
  }
  daemon->unix_listener_->Start();
  if (!options.listen_tcp.empty() && daemon->tcp_port_ == 0) {
    return Error(absl::StatusCode::kUnavailable, reason::kListenFailed,
                 absl::StrCat("cannot listen on ", options.listen_tcp),
                 {{"listen_tcp", options.listen_tcp}});
  }
  if (options.while_recovering) options.while_recovering();
  if (daemon->fd_store_ != nullptr) {
    // The kept memory first: the store's mappings of it resolve to the same pages again.
    ASSIGN_OR_RETURN(KeptRegionsOutcome regions,
                     RestoreKeptRegions(daemon->fd_store_.get(), daemon->memory_regions_.get(),
                                        store));
    for (const std::string& line : regions.log) {
      LogLine(options.logger, LogLevel::kInfo, absl::StrCat("fd store: ", line));
    }
  }
  ASSIGN_OR_RETURN(daemon->startup_, RecoverOrApplyTopology(daemon->registry_.get(), topology,
                                                            daemon->state_file_,
                                                            before_durable_step));
  if (host != nullptr) {
    RETURN_IF_ERROR(MarkKernelDrivers(host->topology(), host->options().bind.replaceable_drivers,
                                      daemon->registry_.get()));
    std::vector<host::RecoveredGroup> recovered = host->recovered();
    // Owned groups the restart could not claim or attach again: their ownership was dropped.
    AddDroppedOwnerships(daemon->startup_.report.dropped_groups,
                         [host](const std::string& device) {
                           for (const host::HostDevice& d : host->topology().devices) {
                             if (d.name == device) return d.kernel_group;
                           }
                           return -1;
                         },
                         &recovered);
    if (daemon->fd_store_ != nullptr) {
      for (host::RecoveredGroup& adopted : host->FinishAdoption()) {
        recovered.push_back(std::move(adopted));
      }
      // Whatever nobody took back would keep the service manager holding it: closed and dropped.
      for (const std::string& name : daemon->fd_store_->Untaken()) {
        host::UniqueFd unused = daemon->fd_store_->TakeBack(name);
        (void)daemon->fd_store_->Drop(name);
        LogLine(options.logger, LogLevel::kWarning,
            absl::StrCat("fd store: '", name, "' handed back but not adopted: closed and removed"));
      }
    }
    ReportHostRecovery(recovered, *daemon->registry_, &daemon->events_,
                       daemon->metrics_->registry().get(), options.logger);
  }
  ExportRecoveryMetrics(daemon->startup_.report, daemon->metrics_.get());
  daemon->service_->SetRecovering(false);
  daemon->fd_channel_->Start();
  if (daemon->host_events_ != nullptr) daemon->host_events_->Start();
  if (!options.metrics_listen.empty()) {
    RETURN_IF_ERROR(daemon->StartMetrics(options.metrics_listen));
  }
  daemon->AuditNow();
  daemon->lease_reaper_ = std::make_unique<LeaseReaper>(
      daemon->registry_.get(), options.lease_reap_interval, daemon->metrics_->registry().get());
  daemon->lease_reaper_->Start();
  daemon->idempotency_->Start(std::min(options.request_id_window, absl::Minutes(1)));
  if (options.audit_interval > absl::ZeroDuration()) {
    daemon->audit_thread_ = std::thread([d = daemon.get()] { d->AuditLoop(); });
  }
  if (daemon->crash_points_ != nullptr) {
    daemon->crash_points_->Reached(CrashPoints::Phase::kServing);
  }
  grpc::HealthCheckServiceInterface* health = daemon->server_->GetHealthCheckService();
  health->SetServingStatus("", true);
  health->SetServingStatus(kIommuServiceName, true);
  return daemon;
}

absl::Status Daemon::StartMetrics(const std::string& listen) {
  ASSIGN_OR_RETURN(metrics_listener_, MetricsListener::Start(listen));
  state_collector_ = std::make_shared<StateCollector>(registry_.get(), &events_);
  metrics_listener_->Register(metrics_->registry());
  metrics_listener_->Register(state_collector_);
  metrics_port_ = metrics_listener_->port();
  return absl::OkStatus();
}

std::vector<LeakRecord> Daemon::AuditNow() {
  std::vector<LeakRecord> leaks = registry_->Audit();
  metrics_->CountAudit();
  metrics_->SetCurrentLeaks(leaks);
  return leaks;
}

void Daemon::AuditLoop() {
  for (;;) {
    {
      MutexLock lock(&mu_);
      const absl::Time next = absl::Now() + options_.audit_interval;
      while (!stop_audits_ && !WaitWithDeadline(&changed_, &mu_, next)) {
      }
      if (stop_audits_) return;
    }
    AuditNow();
  }
}

Daemon::~Daemon() {
  if (server_ == nullptr) {  // Start failed before serving
    {
      MutexLock lock(&mu_);
      stop_audits_ = true;
      changed_.SignalAll();
    }
    if (audit_thread_.joinable()) audit_thread_.join();
    return;
  }
  Shutdown(absl::ZeroDuration());  // returns at once if it already started
  Wait();
  metrics_listener_.reset();  // stop scrapes before the registry goes away
}

void Daemon::StopServing() {
  if (server_ == nullptr) return;
  // Every service NOT_SERVING, and later SetServingStatus calls are ignored.
  server_->GetHealthCheckService()->Shutdown();
}

void Daemon::Shutdown(absl::Duration grace) {
  {
    MutexLock lock(&mu_);
    if (shutdown_started_) return;
    shutdown_started_ = true;
  }
  {
    MutexLock lock(&mu_);
    stop_audits_ = true;
    changed_.SignalAll();
  }
  if (audit_thread_.joinable()) audit_thread_.join();
  if (lease_reaper_ != nullptr) lease_reaper_->Stop();
  if (host_events_ != nullptr) host_events_->Stop();
  if (idempotency_ != nullptr) idempotency_->Stop();
  if (server_ != nullptr) {
    // The streams the shutdown cancels are not clients going away: bound ownerships stay (TTL).
    service_->SetShuttingDown();
    StopServing();
    if (fd_channel_ != nullptr) fd_channel_->Stop();  // no fd op runs past this point
    // Watch streams end now with UNAVAILABLE SERVER_SHUTTING_DOWN, not when the grace runs out.
    events_.CloseAll();
    unix_listener_->Stop();  // no new connections, socket unlinked; before the server's shutdown
    server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
    server_->Wait();
  }
  MutexLock lock(&mu_);
  shutdown_done_ = true;
  changed_.SignalAll();
}

std::vector<Daemon::ReloadStep> Daemon::Reload() {
  std::vector<ReloadStep> done;
  if (options_.policy_file.empty()) {
    done.push_back({"policy: the default policy (no --policy_file), unchanged", absl::OkStatus()});
  } else {
    absl::StatusOr<Policy> policy = Policy::Load(options_.policy_file);
    if (policy.ok()) {
      const size_t entries = policy->size();
      authorizer_->ReplacePolicy(*std::move(policy));
      done.push_back({absl::StrCat("policy reloaded from ", options_.policy_file, " (", entries,
                                   entries == 1 ? " entry)" : " entries)"),
                      absl::OkStatus()});
    } else {
      done.push_back({absl::StrCat("policy NOT reloaded, the previous one stays in force: ",
                                   policy.status().message(), " (", ErrorReason(policy.status()),
                                   ")"),
                      policy.status()});
    }
  }
  if (tcp_.stager != nullptr) {
    absl::Status staged = tcp_.stager->PollOnce();
    if (staged.ok()) {
      done.push_back({"tls: files re-read (served within --tls_refresh_interval)", staged});
    } else {
      done.push_back({absl::StrCat("tls: files NOT taken, the previous ones stay: ",
                                   staged.message(), " (", ErrorReason(staged), ")"),
                      staged});
    }
  }
  return done;
}

void Daemon::Wait() {
  MutexLock lock(&mu_);
  while (!shutdown_done_) WaitWithDeadline(&changed_, &mu_, absl::InfiniteFuture());
}

}  // namespace iommud

// iommud: the IOMMU control-plane daemon. See DaemonOptions (daemon.h) and `iommud --help`.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/error.h"
#include "iommud_version.h"
#include "server/daemon.h"
#include "server/daemon_flags.h"
#include "server/observability/log.h"
#include "server/security/limits_flags.h"
#include "server/security/unix_ids.h"
#include "server/service_manager.h"
#include "server/termination_signals.h"

ABSL_FLAG(std::string, state_dir, "/run/iommud",
          "State directory (created 0750 if missing); holds the socket, the lock file and, unless "
          "--state_file says otherwise, the state store state.db.");
ABSL_FLAG(std::string, state, "sqlite",
          "Where the registry lives durably: sqlite (a file, see --state_file; a restart recovers "
          "the registry from it) or memory (nothing survives the process: tests).");
ABSL_FLAG(std::string, state_file, "",
          "The SQLite state file; default <state_dir>/state.db. Created on the first start only "
          "when nothing suggests earlier state (else STATE_MISSING: see --init_state).");
ABSL_FLAG(std::string, state_sync, "normal",
          "normal: every acknowledged change survives a crash or kill -9 of iommud (SQLite WAL, "
          "synchronous=NORMAL); a power loss or kernel crash may lose the last changes. full: "
          "acknowledged changes survive a power loss too (synchronous=FULL: an fsync per change).");
ABSL_FLAG(bool, init_state, false,
          "Create a new, empty state file (refused with STATE_EXISTS if it exists): needed when "
          "the file is missing but hardware state survived (the emulated backend's memory_file).");
ABSL_FLAG(std::string, socket, "", "Unix socket path; default <state_dir>/iommud.sock.");
ABSL_FLAG(std::string, fd_socket, "",
          "The fd side channel's unix SOCK_SEQPACKET socket (RegisterMemory with a memfd, "
          "OpenDevice for a VFIO device fd; proto/iommu/v1/fd_channel.proto); default the unix "
          "socket's path + \".fds\". Same owner, group and --allow_uids/--allow_gids as the unix "
          "socket.");
ABSL_FLAG(int, fd_channel_max_connections, 64,
          "How many fd-channel connections may be open at once; a further one is closed at accept.");
ABSL_FLAG(std::string, listen_tcp, "",
          "Also listen on TCP, e.g. 10.0.0.5:50051 (port 0 picks one); off by default. Serves "
          "mutual TLS: needs --tls_cert, --tls_key and --tls_client_ca (or --insecure_tcp).");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate (chain) the TCP listener presents; re-read every --tls_refresh_interval.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert (unencrypted).");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle that TCP clients' certificates must chain to (client certificates are "
          "required); re-read every --tls_refresh_interval.");
ABSL_FLAG(absl::Duration, tls_refresh_interval, absl::Seconds(60),
          "How often the TLS files are re-read, so that replacing them rotates the certificates "
          "without a restart (at least 1s).");
ABSL_FLAG(bool, insecure_tcp, false,
          "Serve --listen_tcp as plaintext without client authentication (tests only); refused "
          "unless the address is loopback (127.0.0.0/8, [::1], localhost).");
ABSL_FLAG(std::string, backend, "software", "Hardware backend: software, emulated, or linux (a real host through VFIO: needs root, and --state=memory unless the fd store is used; see README \"Real hosts\").");
ABSL_FLAG(std::string, fd_store, "auto",
          "--backend=linux: keep group, container and memory fds in systemd's fd store so that a "
          "restart adopts them (README \"When iommud crashes\"): auto (iff NOTIFY_SOCKET is set), "
          "off, or required (refuse to start without it). With the store, --state may be sqlite.");
ABSL_FLAG(std::vector<std::string>, backend_opt, {},
          "Backend option key=value, e.g. memory_file=/var/lib/iommud/hw.mem; repeat the flag for "
          "several options.");
ABSL_FLAG(std::string, topology, "",
          "Text-format iommu.v1.Topology file to start with; empty = the embedded demo topology; "
          "\"none\" = start with no units or devices.");
ABSL_FLAG(std::string, default_domain_type, "DMA",
          "Default-domain type of new groups: DMA, DMA_FQ or IDENTITY.");
ABSL_FLAG(std::string, metrics_address, "127.0.0.1",
          "Address of the Prometheus /metrics HTTP listener (loopback by default).");
ABSL_FLAG(int, metrics_port, 9464,
          "Port of the Prometheus /metrics listener; 0 = off; -1 = any free port (tests).");
ABSL_FLAG(absl::Duration, keepalive_time, iommud::KeepaliveOptions().time,
          "Ping a client connection idle for this long (HTTP/2 keepalive, at least 1s), so that "
          "the watch and lease streams of a vanished client end.");
ABSL_FLAG(absl::Duration, keepalive_timeout, iommud::KeepaliveOptions().timeout,
          "Close a connection whose keepalive ping is not answered within this (at least 1s).");
ABSL_FLAG(absl::Duration, keepalive_min_client_interval,
          iommud::KeepaliveOptions().min_client_interval,
          "The most often a client may send keepalive pings; more often gets GOAWAY "
          "too_many_pings.");
ABSL_FLAG(std::string, log_level, "info",
          "Least severe log lines written: error, warning, info or debug. Audit lines "
          "(authorization denials, tag AUDIT) are always written.");
ABSL_FLAG(int, v, -1,
          "Verbosity as a number, instead of --log_level: 0 error, 1 warning, 2 info, 3 debug.");
ABSL_FLAG(bool, channelz, false,
          "Serve grpc.channelz.v1.Channelz (gRPC connection and call introspection, e.g. with "
          "grpcdebug) to admins (--policy_file roles); others get PERMISSION_DENIED.");
ABSL_FLAG(absl::Duration, audit_interval, absl::Seconds(60),
          "How often the auditor compares the registry with the hardware (0 = only on demand).");
ABSL_FLAG(absl::Duration, lease_reap_interval, absl::Seconds(1),
          "How often ownerships whose lease lapsed are released (0 = never).");
ABSL_FLAG(absl::Duration, release_request_timeout, absl::Seconds(10),
          "How long the owner of a device being released has to let go: --backend=linux, the "
          "kernel's removal (close its device fds before iommud unmaps its domain); every backend, "
          "a ReleaseDevice of an owned device without wait_millis (release its ownership before "
          "the call is refused with DEVICE_IN_USE; at most 60s). The outcome: RELEASE_RESOLVED.");
ABSL_FLAG(absl::Duration, request_id_window, iommud::kDefaultRequestIdWindow,
          "How long the reply of a mutating request with a request_id is kept for its retries.");
ABSL_FLAG(bool, group_strands, true,
          "Run mutating calls on per-group strands (a call waiting for its group holds no "
          "thread). false: the earlier threading, for side-by-side measurements only.");
ABSL_FLAG(bool, allow_fault_injection, false,
          "Serve InjectFault/ListFaults/ClearFaults (test hosts only).");
ABSL_FLAG(uint64_t, test_crash_before_step, 0,
          "Test hosts only: kill the daemon (SIGKILL) just before its N-th durable step (a store "
          "write, an emulated-memory write, the topology marker), counted from "
          "--test_crash_phase; 0 = never. For the crash-point sweep.");
ABSL_FLAG(std::string, test_crash_phase, "start",
          "Where --test_crash_before_step starts counting: start (the daemon's start-up) or "
          "serving (once it serves).");
ABSL_FLAG(std::string, policy_file, "",
          "Roles of principals, one '<role> <principal>' per line (roles viewer, operator, admin; "
          "principals uid:N, gid:N, x509:SUBJECT, x509-cn:NAME, insecure); empty = root and the "
          "daemon's own uid are admin, nobody else has a role. Re-read on SIGHUP (systemctl "
          "reload iommud); a file that does not load is refused and the previous one stays.");
ABSL_FLAG(bool, unix_peer_fallback_to_daemon_uid, false,
          "Deprecated, no effect: unix-socket callers are always identified by SO_PEERCRED.");
ABSL_FLAG(std::string, socket_owner, "", "Owner (user name or uid) of the unix socket (mode 0660).");
ABSL_FLAG(std::string, socket_group, "",
          "Group (name or gid) of the unix socket and, for the default socket, of the state dir.");
ABSL_FLAG(std::string, allow_uids, "",
          "Comma-separated users (names or uids) that may connect to the unix socket; with "
          "--allow_gids: either list admits. Both empty = anyone who can open the socket.");
ABSL_FLAG(std::string, allow_gids, "",
          "Comma-separated groups (names or gids) whose members (primary or supplementary group) "
          "may connect to the unix socket.");
ABSL_FLAG(int, max_unix_peer_identities, 64,
          "How many distinct uid/gid pairs the unix socket tells apart over the daemon's life; a "
          "further pair is refused.");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(5),
          "On SIGTERM/SIGINT, how long calls in flight may take before they are cancelled.");

namespace iommud {
namespace {

constexpr int kExitUsage = 2;

int Main(int argc, char** argv) {
  // Before any thread exists, so that only the waiter thread ever receives them.
  BlockTerminationSignals();
  // Debian builds Abseil with its debug lock-order graph on, which costs a hash-table lookup per
  // mutex acquisition (the largest item in a profile of the lock path). The tests keep it on to
  // catch lock-order inversions; the daemon does not pay for it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  // --help lists the flags of this file (absl's default looks for a file named like the binary).
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "server/main.cc") ||
           absl::EndsWith(file, "server/security/limits_flags.cc");
  };
  usage_config.contains_helpshort_flags = usage_config.contains_help_flags;
  // absl's default says only whether NDEBUG is defined.
  usage_config.version_string = [] { return VersionLine("iommud") + "\n"; };
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(
      "the IOMMU control-plane daemon: serves iommu.v1.Iommu over gRPC on a unix socket.\n"
      "Usage: iommud [--state_dir=DIR] [--state=sqlite|memory] [--topology=FILE|none] [--backend=software|emulated|linux] ...");
  NormalizeFlagNames(argc, argv);  // --insecure-tcp works like --insecure_tcp
  std::vector<std::string> backend_opts = ExtractRepeatedFlag("backend_opt", &argc, argv);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    std::fprintf(stderr, "iommud: unexpected argument '%s' (see --help)\n", positional[1]);
    return kExitUsage;
  }
  if (backend_opts.empty()) backend_opts = absl::GetFlag(FLAGS_backend_opt);

  DaemonOptions options;
  options.state_dir = absl::GetFlag(FLAGS_state_dir);
  options.socket_path = absl::GetFlag(FLAGS_socket);
  options.fd_socket_path = absl::GetFlag(FLAGS_fd_socket);
  options.fd_channel_max_connections = absl::GetFlag(FLAGS_fd_channel_max_connections);
  options.listen_tcp = absl::GetFlag(FLAGS_listen_tcp);
  options.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key = absl::GetFlag(FLAGS_tls_key);
  options.tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  options.tls_refresh_interval = absl::GetFlag(FLAGS_tls_refresh_interval);
  options.insecure_tcp = absl::GetFlag(FLAGS_insecure_tcp);
  options.backend = absl::GetFlag(FLAGS_backend);
  options.topology = absl::GetFlag(FLAGS_topology);
  const int metrics_port = absl::GetFlag(FLAGS_metrics_port);
  if (metrics_port < -1 || metrics_port > 65535) {
    std::fprintf(stderr, "iommud: --metrics_port must be in [-1, 65535]\n");
    return kExitUsage;
  }
  if (metrics_port != 0) {
    options.metrics_listen = absl::StrCat(absl::GetFlag(FLAGS_metrics_address), ":",
                                          metrics_port == -1 ? 0 : metrics_port);
  }
  options.audit_interval = absl::GetFlag(FLAGS_audit_interval);
  options.lease_reap_interval = absl::GetFlag(FLAGS_lease_reap_interval);
  options.request_id_window = absl::GetFlag(FLAGS_request_id_window);
  options.group_strands = absl::GetFlag(FLAGS_group_strands);
  options.release_request_timeout = absl::GetFlag(FLAGS_release_request_timeout);
  options.allow_fault_injection = absl::GetFlag(FLAGS_allow_fault_injection);
  options.channelz = absl::GetFlag(FLAGS_channelz);
  options.policy_file = absl::GetFlag(FLAGS_policy_file);
  options.unix_peer_fallback_to_daemon_uid = absl::GetFlag(FLAGS_unix_peer_fallback_to_daemon_uid);
  options.unix_listener.socket_owner = absl::GetFlag(FLAGS_socket_owner);
  options.unix_listener.socket_group = absl::GetFlag(FLAGS_socket_group);
  options.unix_listener.max_identities = absl::GetFlag(FLAGS_max_unix_peer_identities);
  absl::StatusOr<std::vector<uint32_t>> allow_uids = ResolveUserList(absl::GetFlag(FLAGS_allow_uids));
  absl::StatusOr<std::vector<uint32_t>> allow_gids =
      ResolveGroupList(absl::GetFlag(FLAGS_allow_gids));
  absl::StatusOr<BackendOptions> backend_options = ParseBackendOptions(backend_opts);
  absl::StatusOr<DomainType> default_type =
      ParseDefaultDomainType(absl::GetFlag(FLAGS_default_domain_type));
  absl::StatusOr<StateKind> state_kind = ParseStateKind(absl::GetFlag(FLAGS_state));
  absl::StatusOr<FdStoreMode> fd_store = ParseFdStoreMode(absl::GetFlag(FLAGS_fd_store));
  absl::StatusOr<StateSync> state_sync = ParseStateSync(absl::GetFlag(FLAGS_state_sync));
  absl::StatusOr<Limits> limits = LimitsFromFlags();
  absl::StatusOr<CrashPoints::Phase> crash_phase =
      ParseCrashPhase(absl::GetFlag(FLAGS_test_crash_phase));
  for (const absl::Status& status : {backend_options.status(), default_type.status(),
                                     state_kind.status(), state_sync.status(), fd_store.status(),
                                     allow_uids.status(), allow_gids.status(),
                                     limits.status(), crash_phase.status()}) {
    if (!status.ok()) {
      std::fprintf(stderr, "iommud: %s\n", std::string(status.message()).c_str());
      return kExitUsage;
    }
  }
  options.backend_options = *backend_options;
  options.unix_listener.allow_uids = *allow_uids;
  options.unix_listener.allow_gids = *allow_gids;
  options.default_domain_type = *default_type;
  options.state.kind = *state_kind;
  options.fd_store = *fd_store;
  options.state.sync = *state_sync;
  options.state.path = absl::GetFlag(FLAGS_state_file);
  options.state.init = absl::GetFlag(FLAGS_init_state);
  options.limits = *limits;
  options.keepalive.time = absl::GetFlag(FLAGS_keepalive_time);
  options.keepalive.timeout = absl::GetFlag(FLAGS_keepalive_timeout);
  options.keepalive.min_client_interval = absl::GetFlag(FLAGS_keepalive_min_client_interval);
  if (absl::Status valid = options.keepalive.Validate(); !valid.ok()) {
    std::fprintf(stderr, "iommud: %s\n", std::string(valid.message()).c_str());
    return kExitUsage;
  }
  const int verbosity = absl::GetFlag(FLAGS_v);
  absl::StatusOr<LogLevel> log_level = verbosity >= 0
                                           ? ParseLogLevel(absl::StrCat(verbosity))
                                           : ParseLogLevel(absl::GetFlag(FLAGS_log_level));
  if (!log_level.ok()) {
    std::fprintf(stderr, "iommud: %s\n", std::string(log_level.status().message()).c_str());
    return kExitUsage;
  }
  Logger log(*log_level);
  options.logger = &log;
  options.test_crash_before_step = absl::GetFlag(FLAGS_test_crash_before_step);
  options.test_crash_phase = *crash_phase;

  absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start(options);
  if (!daemon.ok()) {
    const std::string why = absl::StrCat("cannot start: ", daemon.status().message(), " (",
                                         ErrorReason(daemon.status()), ")");
    log.Error(why);
    NotifyServiceManager(absl::StrCat("STATUS=", why));
    return EXIT_FAILURE;
  }
  log.Info(absl::StrCat(
      "state: ", (*daemon)->state_file().empty()
                     ? "memory (nothing survives a restart)"
                     : absl::StrCat((*daemon)->state_file(), options.state.sync == StateSync::kFull
                                                                 ? " (sync=full)"
                                                                 : " (sync=normal)")));
  for (const std::string& line : (*daemon)->startup().log) log.Info(line);
  if ((*daemon)->tcp_port() != 0) {
    log.Info(absl::StrCat("listening on tcp port ", (*daemon)->tcp_port()));
    if (options.insecure_tcp) {
      log.Warning(absl::StrCat("WARNING: tcp port ", (*daemon)->tcp_port(),
                               " is plaintext, callers unauthenticated (--insecure_tcp)"));
    }
  }
  if ((*daemon)->metrics_port() != 0) {
    log.Info(absl::StrCat("metrics on http://", absl::GetFlag(FLAGS_metrics_address), ":",
                          (*daemon)->metrics_port(), "/metrics (port ", (*daemon)->metrics_port(),
                          ")"));
  }
  if (options.unix_peer_fallback_to_daemon_uid) {
    log.Warning(
        "--unix_peer_fallback_to_daemon_uid is deprecated and has no effect: unix callers are "
        "identified by SO_PEERCRED");
  }
  log.Debug(absl::StrCat("log level ", LogLevelTag(log.level()), ", keepalive ",
                         absl::FormatDuration(options.keepalive.time), "/",
                         absl::FormatDuration(options.keepalive.timeout)));
  log.Info(absl::StrCat("fd channel on unix:", (*daemon)->fd_socket_path(), " (SOCK_SEQPACKET)"));
  log.Info(absl::StrCat("serving on ", (*daemon)->unix_target()));
  // Type=notify: systemd starts the units ordered after iommud only now, when calls are served.
  NotifyServiceManager(ReadyNotification((*daemon)->unix_target()));

  const absl::Duration grace = absl::GetFlag(FLAGS_shutdown_grace);
  Daemon* running = daemon->get();
  {
    TerminationSignalWaiter waiter(
        [running, grace, &log](int signo) {
          log.Info(absl::StrCat("signal ", signo, ", shutting down"));
          NotifyServiceManager(
              StoppingNotification(absl::StrCat("shutting down (signal ", signo, ")")));
          running->Shutdown(grace);
        },
        [running, &log] {
          // `systemctl reload iommud`: the policy and TLS files (Daemon::Reload); the flags and
          // the topology are start-up only. SIGHUP never ends the daemon (its default action).
          bool refused = false;
          for (const Daemon::ReloadStep& step : running->Reload()) {
            refused |= !step.status.ok();
            log.Log(step.status.ok() ? LogLevel::kInfo : LogLevel::kWarning,
                    absl::StrCat("SIGHUP: ", step.what));
          }
          NotifyServiceManager(absl::StrCat("STATUS=", refused ? "reload refused" : "reloaded",
                                            ", serving on ", running->unix_target()));
        });
    running->Wait();
  }
  if (const CrashPoints* crash_points = running->crash_points(); crash_points != nullptr) {
    // The crash-point sweep learns how many steps a path has from this line.
    log.Info(absl::StrCat("durable steps counted: ", crash_points->steps()));
  }
  daemon->reset();
  log.Info("stopped");
  return EXIT_SUCCESS;
}

}  // namespace
}  // namespace iommud

int main(int argc, char** argv) { return iommud::Main(argc, argv); }

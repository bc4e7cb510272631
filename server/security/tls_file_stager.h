// TlsFileStager: the TLS files gRPC's certificate watcher reads are private copies that change
// only to versions that pass the start-up checks (tls_credentials.h CheckTlsContents).
//
// gRPC's FileWatcherCertificateProvider takes whatever it reads: a truncated or mistaken
// replacement of --tls_cert, or a new key read before its new certificate, would fail every new
// TLS handshake until fixed. The stager re-reads the operator's files every refresh interval on
// its own thread; a changed version that parses (and whose key is its certificate's) is written to
// the staging directory, key and certificate in ONE file (gRPC reads the key and the chain from
// the same path, so they always match), the client CA in another, each by rename. A version that
// fails is logged once ("iommud: tls: ...") and ignored; the last good one stays in use.
#ifndef IOMMUD_SERVER_SECURITY_TLS_FILE_STAGER_H_
#define IOMMUD_SERVER_SECURITY_TLS_FILE_STAGER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/security/tls_credentials.h"

namespace iommud {

class TlsFileStager {
 public:
  // Reads and checks options' tls_* files (ReadTlsFiles / CheckTlsContents errors), creates `dir`
  // (mode 0700; FAILED_PRECONDITION TLS_STAGING_FAILED if it cannot, or cannot write there),
  // stages them (files 0600), and starts re-checking them every options.tls_refresh_interval (an
  // infinite interval: only when PollOnce is called).
  static absl::StatusOr<std::unique_ptr<TlsFileStager>> Start(const TcpSecurityOptions& options,
                                                              const std::string& dir);
  // Stops the thread and removes the staged files (not `dir` if something else is in it).
  ~TlsFileStager();
  TlsFileStager(const TlsFileStager&) = delete;
  TlsFileStager& operator=(const TlsFileStager&) = delete;

  std::string identity_path() const { return dir_ + "/identity.pem"; }  // key + certificate chain
  std::string client_ca_path() const { return dir_ + "/client-ca.pem"; }

  // Re-reads the files now: OK when they are unchanged or the change was staged; otherwise the
  // reason the change was refused (the staged files are untouched). Thread-safe.
  absl::Status PollOnce();

  int64_t staged_versions() const;    // versions staged after the first
  int64_t rejected_versions() const;  // distinct refused versions

 private:
  TlsFileStager(TcpSecurityOptions options, std::string dir)
      : options_(std::move(options)), dir_(std::move(dir)) {}
  absl::Status Stage(const TlsFileContents& contents) ABSL_EXCLUSIVE_LOCKS_REQUIRED(poll_mu_);
  void Loop();

  const TcpSecurityOptions options_;
  const std::string dir_;

  mutable absl::Mutex poll_mu_;  // serializes PollOnce
  TlsFileContents staged_ ABSL_GUARDED_BY(poll_mu_);     // sources of the staged files
  std::string last_refused_ ABSL_GUARDED_BY(poll_mu_);   // message of the last refusal logged
  int64_t staged_versions_ ABSL_GUARDED_BY(poll_mu_) = 0;
  int64_t rejected_versions_ ABSL_GUARDED_BY(poll_mu_) = 0;

  absl::Mutex mu_;
  absl::CondVar stop_changed_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_SECURITY_TLS_FILE_STAGER_H_

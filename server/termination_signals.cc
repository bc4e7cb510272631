#include "server/termination_signals.h"

#include <pthread.h>
#include <signal.h>

#include <utility>

namespace iommud {
namespace {

// Sent by the destructor to wake the waiter when no signal came; it is blocked like the others.
constexpr int kWakeSignal = SIGUSR1;

sigset_t TerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

}  // namespace

void BlockTerminationSignals() {
  sigset_t set = TerminationSignals();
  sigaddset(&set, kWakeSignal);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

TerminationSignalWaiter::TerminationSignalWaiter(std::function<void(int)> on_signal,
                                                 std::function<void()> on_hangup)
    : on_signal_(std::move(on_signal)),
      on_hangup_(std::move(on_hangup)),
      thread_([this] { Run(); }) {}

TerminationSignalWaiter::~TerminationSignalWaiter() {
  pthread_kill(thread_.native_handle(), kWakeSignal);  // harmless if it already returned
  thread_.join();
}

void TerminationSignalWaiter::Run() {
  sigset_t set = TerminationSignals();
  sigaddset(&set, kWakeSignal);
  int signo = 0;
  while (sigwait(&set, &signo) != 0 || signo == SIGHUP) {
    if (signo == SIGHUP) {
      signo = 0;
      if (on_hangup_) on_hangup_();
    }
  }
  if (signo != kWakeSignal) on_signal_(signo);
}

}  // namespace iommud

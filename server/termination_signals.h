// SIGTERM / SIGINT / SIGHUP handling for the daemon: the signals are blocked in every thread and one
// thread waits for them with sigwait(), so the shutdown runs as ordinary code, not in a signal
// handler. SIGHUP (what `systemctl reload`, `kill -HUP` and a closed terminal send) does not end
// the daemon: its default action would kill it without removing its socket and lock.
#ifndef IOMMUD_SERVER_TERMINATION_SIGNALS_H_
#define IOMMUD_SERVER_TERMINATION_SIGNALS_H_

#include <functional>
#include <thread>

namespace iommud {

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread. Call it in main() before any other thread exists
// (gRPC's included), so that every thread inherits the mask and only the waiter receives them.
void BlockTerminationSignals();

// A thread that waits for SIGTERM or SIGINT and then calls `on_signal(signo)` once. Every SIGHUP
// before that calls `on_hangup()` (when set) and the thread goes on waiting; both run on the
// waiter thread.
class TerminationSignalWaiter {
 public:
  explicit TerminationSignalWaiter(std::function<void(int)> on_signal,
                                   std::function<void()> on_hangup = nullptr);
  // Joins the thread; if no signal came, wakes it without calling `on_signal`.
  ~TerminationSignalWaiter();
  TerminationSignalWaiter(const TerminationSignalWaiter&) = delete;
  TerminationSignalWaiter& operator=(const TerminationSignalWaiter&) = delete;

 private:
  void Run();

  std::function<void(int)> on_signal_;
  std::function<void()> on_hangup_;
  std::thread thread_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_TERMINATION_SIGNALS_H_

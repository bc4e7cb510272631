// SIGTERM / SIGINT handling for the daemon: the signals are blocked in every thread and one thread
// waits for them with sigwait(), so the shutdown runs as ordinary code, not in a signal handler.
#ifndef IOMMUD_SERVER_TERMINATION_SIGNALS_H_
#define IOMMUD_SERVER_TERMINATION_SIGNALS_H_

#include <functional>
#include <thread>

namespace iommud {

// Blocks SIGTERM and SIGINT in the calling thread. Call it in main() before any other thread exists
// (gRPC's included), so that every thread inherits the mask and only the waiter receives them.
void BlockTerminationSignals();

// A thread that waits for SIGTERM or SIGINT and then calls `on_signal(signo)` once.
class TerminationSignalWaiter {
 public:
  explicit TerminationSignalWaiter(std::function<void(int)> on_signal);
  // Joins the thread; if no signal came, wakes it without calling `on_signal`.
  ~TerminationSignalWaiter();
  TerminationSignalWaiter(const TerminationSignalWaiter&) = delete;
  TerminationSignalWaiter& operator=(const TerminationSignalWaiter&) = delete;

 private:
  void Run();

  std::function<void(int)> on_signal_;
  std::thread thread_;
};

}  // namespace iommud

#endif  // IOMMUD_SERVER_TERMINATION_SIGNALS_H_

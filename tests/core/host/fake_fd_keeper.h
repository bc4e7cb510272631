// A host::FdKeeper in memory, for tests: what a "previous process" kept is handed back through
// Hand(), and what this one keeps and drops is recorded.
#ifndef IOMMUD_TESTS_CORE_HOST_FAKE_FD_KEEPER_H_
#define IOMMUD_TESTS_CORE_HOST_FAKE_FD_KEEPER_H_

#include <fcntl.h>
#include <unistd.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/host/fd_keeper.h"

namespace iommud {
namespace host {
namespace test {

class FakeFdKeeper : public FdKeeper {
 public:
  // Hands back `fd` (owned from now on) under `name`, as a previous process's store would.
  void Hand(const std::string& name, UniqueFd fd) { handed_.emplace(name, std::move(fd)); }

  absl::Status Keep(absl::string_view name, int fd) override {
    kept.emplace_back(name);
    copies[std::string(name)] = UniqueFd(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    return keep_status;
  }
  absl::Status Drop(absl::string_view name) override {
    dropped.emplace_back(name);
    copies.erase(std::string(name));
    return absl::OkStatus();
  }
  UniqueFd TakeBack(absl::string_view name) override {
    auto it = handed_.find(std::string(name));
    if (it == handed_.end()) return UniqueFd();
    UniqueFd fd = std::move(it->second);
    handed_.erase(it);
    return fd;
  }
  std::vector<std::string> Untaken() const override {
    std::vector<std::string> names;
    for (const auto& [name, fd] : handed_) names.push_back(name);
    return names;
  }

  std::vector<std::string> kept;       // every Keep, in order
  std::vector<std::string> dropped;    // every Drop, in order
  std::map<std::string, UniqueFd> copies;  // what is kept now
  absl::Status keep_status;            // what Keep returns

 private:
  std::multimap<std::string, UniqueFd> handed_;
};

// One end of a fresh pipe: an fd that stands for a kernel object the fake keeper hands back.
inline UniqueFd SomeFd() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return UniqueFd();
  ::close(fds[1]);
  return UniqueFd(fds[0]);
}

}  // namespace test
}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_TESTS_CORE_HOST_FAKE_FD_KEEPER_H_

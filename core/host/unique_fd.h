// UniqueFd: sole owner of a file descriptor, closed when the owner goes away.
//
// Move-only. Not thread-safe by itself: one owner uses it at a time (as with any value type).
#ifndef IOMMUD_CORE_HOST_UNIQUE_FD_H_
#define IOMMUD_CORE_HOST_UNIQUE_FD_H_

#include <unistd.h>

#include <utility>

namespace iommud {
namespace host {

class UniqueFd {
 public:
  UniqueFd() = default;
  // Takes ownership of `fd` (-1: owns nothing).
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }

  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(other.Release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

  // Gives up ownership: the caller now closes the returned descriptor (e.g. to pass it on).
  int Release() { return std::exchange(fd_, -1); }

  // Closes the owned descriptor (if any) and owns `fd` instead.
  void Reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace host
}  // namespace iommud

#endif  // IOMMUD_CORE_HOST_UNIQUE_FD_H_

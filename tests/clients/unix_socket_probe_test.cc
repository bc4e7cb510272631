// CheckUnixSocketAccess and IommuClient::Connect on a unix socket the caller may not use: said at
// once as PERMISSION_DENIED SOCKET_PERMISSION_DENIED, not after the connect timeout. As root
// (permissions do not apply) the check runs in a child that drops to nobody.
#include "clients/cpp/unix_socket_probe.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "absl/time/clock.h"
#include "clients/cpp/iommud_client.h"
#include "core/error.h"
#include "core/error_reasons.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace iommud {
namespace {

using ::testing::HasSubstr;

// A listening unix socket at `path` (closed when the test ends; the file stays).
int ListenOn(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0) << path;
  EXPECT_EQ(listen(fd, 1), 0);
  return fd;
}

TEST(UnixSocketProbeTest, SocketPathOfTargets) {
  EXPECT_EQ(UnixSocketPath("unix:/run/iommud/iommud.sock"), "/run/iommud/iommud.sock");
  EXPECT_EQ(UnixSocketPath("unix:///run/iommud/iommud.sock"), "/run/iommud/iommud.sock");
  EXPECT_EQ(UnixSocketPath("unix:relative.sock"), "relative.sock");
  EXPECT_EQ(UnixSocketPath("localhost:50051"), "");
  EXPECT_EQ(UnixSocketPath("unix-abstract:iommud"), "");
}

TEST(UnixSocketProbeTest, MissingSocketsAndOtherTargetsAreLeftToTheChannel) {
  test::TempDir temp;
  EXPECT_TRUE(CheckUnixSocketAccess("unix:" + temp.File("absent.sock")).ok());
  EXPECT_TRUE(CheckUnixSocketAccess("localhost:1").ok());
  const int fd = ListenOn(temp.File("s.sock"));
  EXPECT_TRUE(CheckUnixSocketAccess("unix:" + temp.File("s.sock")).ok());
  close(fd);
}

TEST(UnixSocketProbeTest, APathThatIsNotASocketIsSaid) {
  test::TempDir temp;
  const std::string file = temp.WriteFile("plain", "x");
  absl::Status status = CheckUnixSocketAccess("unix:" + file);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorReason(status), reason::kConnectFailed);
  EXPECT_THAT(status.message(), HasSubstr("is not a socket"));
}

TEST(UnixSocketProbeTest, NoSocketAtAllIsSaidAfterTheWait) {
  test::TempDir temp;
  ClientOptions options;
  options.target = "unix:" + temp.File("absent.sock");
  options.connect_timeout = absl::Milliseconds(100);
  absl::StatusOr<std::unique_ptr<IommuClient>> client = IommuClient::Connect(options);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(ErrorReason(client.status()), reason::kConnectFailed);
  EXPECT_THAT(client.status().message(), HasSubstr("no socket at " + temp.File("absent.sock")));
}

TEST(UnixSocketProbeTest, PermissionDeniedIsSaidAtOnce) {
  test::TempDir temp;
  const std::string dir = temp.File("locked");
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  const std::string path = dir + "/iommud.sock";
  const int fd = ListenOn(path);
  // Not even its owner may search a directory without x; root may, so the child becomes nobody.
  ASSERT_EQ(chmod(dir.c_str(), 0), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(10);
    const absl::Status status = CheckUnixSocketAccess("unix:" + path);
    if (status.code() != absl::StatusCode::kPermissionDenied) _exit(11);
    if (ErrorReason(status) != reason::kSocketPermissionDenied) _exit(12);
    if (status.message().find("permission denied on " + path) != 0) _exit(13);
    ClientOptions options;
    options.target = "unix:" + path;
    options.connect_timeout = absl::Seconds(5);
    const absl::Time start = absl::Now();
    absl::StatusOr<std::unique_ptr<IommuClient>> client = IommuClient::Connect(options);
    if (client.ok() || ErrorReason(client.status()) != reason::kSocketPermissionDenied) _exit(14);
    if (absl::Now() - start > absl::Seconds(1)) _exit(15);  // not after the 5 s wait
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10 setuid, 11 code, 12 reason, 13 message, 14 Connect, "
                                       "15 waited";
  chmod(dir.c_str(), 0700);
  close(fd);
}

}  // namespace
}  // namespace iommud

// Pure pieces of the daemon's transport security (server/tcp_security.h, server/net/listener.h):
// which TCP addresses count as loopback, socket group names, publishing the unix socket, and TLS
// file errors.
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "server/net/listener.h"
#include "server/tcp_security.h"
#include "tests/unit/status_test_util.h"

namespace kvshuttle {
namespace {

using ::kvshuttle::testing::HasStatus;

TEST(TcpSecurityTest, LoopbackAddresses) {
  for (const char* address : {"127.0.0.1:9460", "127.1.2.3:0", "localhost:9460", "LocalHost:1",
                              "[::1]:9460", "[0:0:0:0:0:0:0:1]:80"}) {
    EXPECT_TRUE(IsLoopbackAddress(address)) << address;
  }
  for (const char* address :
       {"0.0.0.0:9460", ":9460", "[::]:9460", "10.0.0.1:9460", "128.0.0.1:1", "example.com:9460",
        "localhost.example.com:1", "[::ffff:127.0.0.1]:1", "127.0.0.1", "[::1]", "", "unix:/x"}) {
    EXPECT_FALSE(IsLoopbackAddress(address)) << address;
  }
}

TEST(TcpSecurityTest, WithoutACertificateTheCredentialsArePlaintext) {
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      TcpServerCredentials(TlsOptions{});
  ASSERT_TRUE(credentials.ok()) << credentials.status();
  EXPECT_NE(*credentials, nullptr);
}

TEST(TcpSecurityTest, UnreadableOrNonPemFilesNameTheFlag) {
  TlsOptions tls;
  tls.cert_file = "/nonexistent/kvs-cert.pem";
  tls.key_file = "/nonexistent/kvs-key.pem";
  EXPECT_TRUE(HasStatus(TcpServerCredentials(tls), absl::StatusCode::kFailedPrecondition,
                        {"--tls_cert=/nonexistent/kvs-cert.pem", "cannot read"}));
  char path[] = "/tmp/kvs-unit-pem-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "hello\n", 6), 6);
  close(fd);
  tls.cert_file = path;
  EXPECT_TRUE(HasStatus(TcpServerCredentials(tls), absl::StatusCode::kFailedPrecondition,
                        {"--tls_cert=", "no PEM block"}));
  unlink(path);
}

TEST(ListenerTest, GroupsByNameOrNumber) {
  absl::StatusOr<int> root = ResolveGroup("0");
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_EQ(*root, 0);
  if (const group* g = getgrgid(getegid()); g != nullptr) {
    absl::StatusOr<int> own = ResolveGroup(g->gr_name);
    ASSERT_TRUE(own.ok()) << own.status();
    EXPECT_EQ(*own, static_cast<int>(getegid()));
  }
  EXPECT_TRUE(HasStatus(ResolveGroup("kvs-no-such-group"), absl::StatusCode::kInvalidArgument,
                        {"kvs-no-such-group", "neither a group name nor a numeric gid"}));
  EXPECT_TRUE(HasStatus(ResolveGroup("-1"), absl::StatusCode::kInvalidArgument, {"\"-1\""}));
}

// A listening unix socket at `path` (its fd, or -1).
int ListenAt(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(fd, 4) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

bool Accepts(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

std::string TmpName(const char* tag) {
  return "/tmp/kvs-unit-" + std::string(tag) + "-" + std::to_string(getpid()) + ".sock";
}

// The socket appears at its path only with its final mode: it is bound under the staging name,
// given the mode, then linked; the staging name is gone afterwards.
TEST(ListenerTest, PublishSocketGivesTheModeBeforeThePathExists) {
  const std::string path = TmpName("publish");
  const std::string bound = StagingSocketPath(path, getpid());
  EXPECT_EQ(bound, path + "." + std::to_string(getpid()));
  unlink(path.c_str());
  const int fd = ListenAt(bound);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  const absl::Status published = PublishSocket(bound, path, 0640, -1);
  ASSERT_TRUE(published.ok()) << published;
  struct stat st {};
  ASSERT_EQ(lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  EXPECT_NE(lstat(bound.c_str(), &st), 0) << "the staging name is left behind";
  EXPECT_TRUE(Accepts(path));
  close(fd);
  unlink(path.c_str());
}

// Something published at the path meanwhile (another daemon) is not replaced.
TEST(ListenerTest, PublishSocketDoesNotReplaceASocketPublishedMeanwhile) {
  const std::string path = TmpName("taken");
  const std::string bound = StagingSocketPath(path, getpid());
  unlink(path.c_str());
  const int other = ListenAt(path);
  ASSERT_GE(other, 0);
  const int fd = ListenAt(bound);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(HasStatus(PublishSocket(bound, path, 0660, -1),
                        absl::StatusCode::kFailedPrecondition, {"appeared while starting"}));
  struct stat st {};
  EXPECT_NE(lstat(bound.c_str(), &st), 0) << "the staging name is left behind";
  EXPECT_TRUE(Accepts(path)) << "the other socket was disturbed";
  close(fd);
  close(other);
  unlink(path.c_str());
}

TEST(ListenerTest, SocketPathsLeaveRoomForTheStagingSuffix) {
  const std::string longest = "/tmp/" + std::string(91, 'k');  // 96 bytes
  EXPECT_EQ(longest.size() + 11, sizeof(sockaddr_un{}.sun_path) - 1);
  const absl::Status prepared = PrepareSocketPath(longest);
  EXPECT_TRUE(prepared.ok()) << prepared;
  EXPECT_TRUE(HasStatus(PrepareSocketPath(longest + "k"), absl::StatusCode::kInvalidArgument,
                        {"must be 1 to 96 bytes", "PATH.<pid>"}));
  EXPECT_TRUE(HasStatus(PrepareSocketPath(""), absl::StatusCode::kInvalidArgument, {"1 to 96"}));
}

}  // namespace
}  // namespace kvshuttle

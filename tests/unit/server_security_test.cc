// Pure pieces of the daemon's transport security (server/tcp_security.h, server/listener.h):
// which TCP addresses count as loopback, socket group names, and TLS file errors.
#include <grp.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "gtest/gtest.h"
#include "server/listener.h"
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

}  // namespace
}  // namespace kvshuttle

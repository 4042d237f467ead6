// server/ops/http_server: GET routing, 404/405/400/431, Connection: close, slow clients not
// blocking others, timeouts, and bind errors naming the address.
#include "server/ops/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/unit/status_test_util.h"

namespace kvshuttle {
namespace {

using ::kvshuttle::testing::HasStatus;

HttpResponse Route(absl::string_view path) {
  if (path == "/metrics") return {200, "text/plain; version=0.0.4", "m 1\n"};
  return {404, "text/plain", "not found\n"};
}

// A connected TCP client of 127.0.0.1:port (fd < 0 when the connection failed).
int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Reads until the server closes the connection.
std::string ReadAll(int fd) {
  std::string out;
  char buffer[4096];
  ssize_t n = 0;
  while ((n = ::recv(fd, buffer, sizeof(buffer), 0)) > 0) out.append(buffer, n);
  return out;
}

std::string Request(int port, const std::string& request) {
  const int fd = Connect(port);
  if (fd < 0) return "connect failed";
  ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string response = ReadAll(fd);
  ::close(fd);
  return response;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HttpServerOptions options;
    options.timeout = absl::Milliseconds(300);
    options.max_request_bytes = 1024;
    absl::StatusOr<std::unique_ptr<HttpServer>> server =
        HttpServer::Start("127.0.0.1:0", Route, options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_GT(server_->port(), 0);
    ASSERT_EQ(server_->bound_address(), absl::StrCat("127.0.0.1:", server_->port()));
  }
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, ServesGetWithLengthAndConnectionClose) {
  EXPECT_EQ(Request(server_->port(), "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: 4\r\n"
            "Connection: close\r\n\r\nm 1\n");
  // Query strings are ignored; bare-LF heads are accepted.
  EXPECT_TRUE(absl::StartsWith(Request(server_->port(), "GET /metrics?x=1 HTTP/1.0\n\n"),
                               "HTTP/1.1 200 OK\r\n"));
}

TEST_F(HttpServerTest, UnknownPathsAre404OtherMethods405MalformedHeads400) {
  EXPECT_TRUE(absl::StartsWith(Request(server_->port(), "GET /nope HTTP/1.1\r\n\r\n"),
                               "HTTP/1.1 404 Not Found\r\n"));
  const std::string post =
      Request(server_->port(), "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
  EXPECT_TRUE(absl::StartsWith(post, "HTTP/1.1 405 Method Not Allowed\r\n")) << post;
  EXPECT_TRUE(absl::StrContains(post, "\r\nAllow: GET\r\n")) << post;
  EXPECT_TRUE(absl::StartsWith(Request(server_->port(), "garbage\r\n\r\n"),
                               "HTTP/1.1 400 Bad Request\r\n"));
  EXPECT_TRUE(absl::StartsWith(Request(server_->port(), "GET metrics HTTP/1.1\r\n\r\n"),
                               "HTTP/1.1 400 Bad Request\r\n"));
}

TEST_F(HttpServerTest, OversizedRequestHeadsAre431) {
  const std::string big = "GET /metrics HTTP/1.1\r\nX-Pad: " + std::string(4000, 'a') + "\r\n\r\n";
  EXPECT_TRUE(absl::StartsWith(Request(server_->port(), big),
                               "HTTP/1.1 431 Request Header Fields Too Large\r\n"));
}

TEST_F(HttpServerTest, ASlowClientTimesOutWithoutBlockingOthers) {
  const int slow = Connect(server_->port());
  ASSERT_GE(slow, 0);
  ::send(slow, "GET /met", 8, MSG_NOSIGNAL);  // and nothing more
  const absl::Time start = absl::Now();
  EXPECT_TRUE(absl::StartsWith(Request(server_->port(), "GET /metrics HTTP/1.1\r\n\r\n"),
                               "HTTP/1.1 200 OK\r\n"));
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(250)) << "served while the slow one waits";
  EXPECT_TRUE(absl::StartsWith(ReadAll(slow), "HTTP/1.1 408 Request Timeout\r\n"));
  ::close(slow);
  // An idle connection that never sends anything is closed silently.
  const int idle = Connect(server_->port());
  ASSERT_GE(idle, 0);
  EXPECT_EQ(ReadAll(idle), "");
  ::close(idle);
}

TEST_F(HttpServerTest, ClientsThatVanishDoNotHurtTheServer) {
  for (int i = 0; i < 20; ++i) {
    const int fd = Connect(server_->port());
    ASSERT_GE(fd, 0);
    ::send(fd, "GET /metrics HTTP/1.1\r\n\r\n", 25, MSG_NOSIGNAL);
    ::close(fd);  // before reading the answer
  }
  EXPECT_TRUE(absl::StartsWith(Request(server_->port(), "GET /metrics HTTP/1.1\r\n\r\n"),
                               "HTTP/1.1 200 OK\r\n"));
}

TEST_F(HttpServerTest, StopIsIdempotentAndClosesThePort) {
  const int port = server_->port();
  server_->Stop();
  server_->Stop();
  EXPECT_EQ(Connect(port), -1);
}

TEST(HttpServerStartTest, ErrorsNameTheAddress) {
  EXPECT_TRUE(HasStatus(HttpServer::Start("no-port", Route).status(),
                        absl::StatusCode::kInvalidArgument, {"\"no-port\" is not host:port"}));
  EXPECT_TRUE(HasStatus(HttpServer::Start("127.0.0.1:70000", Route).status(),
                        absl::StatusCode::kInvalidArgument, {"127.0.0.1:70000"}));
  EXPECT_TRUE(HasStatus(HttpServer::Start("::1:80", Route).status(),
                        absl::StatusCode::kInvalidArgument, {"[ipv6]:port"}));
  absl::StatusOr<std::unique_ptr<HttpServer>> first = HttpServer::Start("127.0.0.1:0", Route);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string taken = (*first)->bound_address();
  const absl::Status second = HttpServer::Start(taken, Route).status();
  EXPECT_TRUE(HasStatus(second, absl::StatusCode::kFailedPrecondition,
                        {taken, ": bind: Address already in use"}));
  absl::StatusOr<std::unique_ptr<HttpServer>> v6 = HttpServer::Start("[::1]:0", Route);
  if (v6.ok()) {
    EXPECT_TRUE(absl::StartsWith((*v6)->bound_address(), "[::1]:"));
  }
}

TEST(HttpServerRespondTest, ParsesTheRequestLine) {
  EXPECT_EQ(RespondTo("GET /metrics HTTP/1.1\r\nHost: a", Route).status, 200);
  EXPECT_EQ(RespondTo("HEAD /metrics HTTP/1.1", Route).status, 405);
  EXPECT_EQ(RespondTo("GET /metrics", Route).status, 400);
  EXPECT_EQ(RespondTo("GET /metrics SPDY/3", Route).status, 400);
  EXPECT_EQ(RespondTo("", Route).status, 400);
}

}  // namespace
}  // namespace kvshuttle

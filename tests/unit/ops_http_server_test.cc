// server/ops/http_server: GET routing, 404/405/400/431, Connection: close, slow clients not
// blocking others, head and exchange timeouts, idle connections evicted (per peer first) instead
// of newcomers refused, and bind errors naming the address.
#include "server/ops/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/unit/status_test_util.h"

namespace kvshuttle {
namespace {

using ::kvshuttle::testing::HasStatus;

HttpResponse Route(absl::string_view path) {
  if (path == "/metrics") return {200, "text/plain; version=0.0.4", "m 1\n"};
  // More than loopback socket buffers hold: a client that does not read keeps it being answered.
  if (path == "/big") return {200, "text/plain", std::string(size_t{64} << 20, 'b')};
  return {404, "text/plain", "not found\n"};
}

// A connected TCP client of 127.0.0.1:port from source address `from` (fd < 0 when the
// connection failed).
int Connect(int port, const char* from = "127.0.0.1") {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in source{};
  source.sin_family = AF_INET;
  ::inet_pton(AF_INET, from, &source.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&source), sizeof(source)) != 0) {
    ::close(fd);
    return -1;
  }
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

// True while the server neither sent anything on `fd` nor closed it.
bool OpenAndQuiet(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 0;
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

// Servers with small limits and timeouts for the admission and deadline tests.
std::unique_ptr<HttpServer> StartServer(HttpServerOptions options) {
  absl::StatusOr<std::unique_ptr<HttpServer>> server =
      HttpServer::Start("127.0.0.1:0", Route, options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

TEST(HttpServerAdmissionTest, ANewcomerEvictsTheOldestIdleConnectionWhenAllSlotsAreTaken) {
  HttpServerOptions options;
  options.max_connections = 4;  // the per-peer cap (8) is not reached
  options.head_timeout = absl::Seconds(1);
  options.timeout = absl::Seconds(1);
  std::unique_ptr<HttpServer> server = StartServer(options);
  ASSERT_NE(server, nullptr);
  // Slot 0 sends nothing; slots 1-3 send an unfinished head.
  std::vector<int> idle;
  for (int i = 0; i < 4; ++i) {
    idle.push_back(Connect(server->port()));
    ASSERT_GE(idle.back(), 0);
    if (i > 0) ::send(idle.back(), "GET /met", 8, MSG_NOSIGNAL);
  }
  absl::SleepFor(absl::Milliseconds(50));  // all four accepted, in order
  const absl::Time start = absl::Now();
  EXPECT_EQ(Request(server->port(), "GET /metrics HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: 4\r\n"
            "Connection: close\r\n\r\nm 1\n");
  EXPECT_EQ(ReadAll(idle[0]), "") << "the oldest idle connection is closed without an answer";
  // The freed slot is refilled; a second scrape then evicts the next oldest, which had sent a
  // partial head.
  idle.push_back(Connect(server->port()));
  ASSERT_GE(idle.back(), 0);
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_TRUE(absl::StartsWith(Request(server->port(), "GET /metrics HTTP/1.1\r\n\r\n"),
                               "HTTP/1.1 200 OK\r\n"));
  EXPECT_EQ(ReadAll(idle[1]), "");
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500)) << "evicted, not timed out";
  EXPECT_TRUE(OpenAndQuiet(idle[2]));
  EXPECT_TRUE(OpenAndQuiet(idle[3]));
  EXPECT_TRUE(OpenAndQuiet(idle[4]));
  for (int fd : idle) ::close(fd);
}

TEST(HttpServerAdmissionTest, APeerOverItsCapLosesItsOwnOldestIdleConnection) {
  HttpServerOptions options;
  options.max_connections = 4;
  options.max_connections_per_peer = 3;
  options.head_timeout = absl::Seconds(1);
  options.timeout = absl::Seconds(1);
  std::unique_ptr<HttpServer> server = StartServer(options);
  ASSERT_NE(server, nullptr);
  // The oldest connection of all belongs to another peer (127.0.0.2); 127.0.0.1 fills its cap.
  const int other = Connect(server->port(), "127.0.0.2");
  ASSERT_GE(other, 0);
  absl::SleepFor(absl::Milliseconds(20));
  std::vector<int> mine;
  for (int i = 0; i < 3; ++i) {
    mine.push_back(Connect(server->port()));
    ASSERT_GE(mine.back(), 0);
    ::send(mine.back(), "GET /met", 8, MSG_NOSIGNAL);
  }
  absl::SleepFor(absl::Milliseconds(50));
  const absl::Time start = absl::Now();
  const int newcomer = Connect(server->port());
  ASSERT_GE(newcomer, 0);
  EXPECT_EQ(ReadAll(mine[0]), "") << "127.0.0.1's own oldest is evicted";
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500)) << "evicted, not timed out";
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_TRUE(OpenAndQuiet(other)) << "another peer's connection survives";
  EXPECT_TRUE(OpenAndQuiet(mine[1]));
  EXPECT_TRUE(OpenAndQuiet(mine[2]));
  ::send(newcomer, "GET /metrics HTTP/1.1\r\n\r\n", 25, MSG_NOSIGNAL);
  EXPECT_TRUE(absl::StartsWith(ReadAll(newcomer), "HTTP/1.1 200 OK\r\n"));
  for (int fd : mine) ::close(fd);
  ::close(other);
  ::close(newcomer);
}

TEST(HttpServerAdmissionTest, ANewcomerIsClosedWhenEveryConnectionIsBeingAnswered) {
  HttpServerOptions options;
  options.max_connections = 2;
  options.head_timeout = absl::Seconds(1);
  options.timeout = absl::Seconds(1);
  std::unique_ptr<HttpServer> server = StartServer(options);
  ASSERT_NE(server, nullptr);
  std::vector<int> readers;  // ask for /big and read nothing
  for (int i = 0; i < 2; ++i) {
    readers.push_back(Connect(server->port()));
    ASSERT_GE(readers.back(), 0);
    ::send(readers.back(), "GET /big HTTP/1.1\r\n\r\n", 21, MSG_NOSIGNAL);
  }
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(Request(server->port(), "GET /metrics HTTP/1.1\r\n\r\n"), "");
  for (int fd : readers) ::close(fd);
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_TRUE(absl::StartsWith(Request(server->port(), "GET /metrics HTTP/1.1\r\n\r\n"),
                               "HTTP/1.1 200 OK\r\n"));
}

TEST(HttpServerDeadlineTest, APartialHeadGets408AtTheHeadTimeoutNotTheExchangeTimeout) {
  HttpServerOptions options;
  options.head_timeout = absl::Milliseconds(150);
  options.timeout = absl::Seconds(2);
  std::unique_ptr<HttpServer> server = StartServer(options);
  ASSERT_NE(server, nullptr);
  const int slow = Connect(server->port());
  ASSERT_GE(slow, 0);
  const absl::Time start = absl::Now();
  ::send(slow, "GET /met", 8, MSG_NOSIGNAL);
  EXPECT_EQ(ReadAll(slow),
            "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Length: 20\r\nConnection: close\r\n\r\n408 Request Timeout\n");
  const absl::Duration took = absl::Now() - start;
  EXPECT_GE(took, absl::Milliseconds(140));
  EXPECT_LT(took, absl::Milliseconds(600));
  ::close(slow);
  // A connection that sends nothing is closed silently at the head timeout too.
  const int idle = Connect(server->port());
  ASSERT_GE(idle, 0);
  const absl::Time idle_start = absl::Now();
  EXPECT_EQ(ReadAll(idle), "");
  EXPECT_LT(absl::Now() - idle_start, absl::Milliseconds(600));
  ::close(idle);
  // A head completed in time is answered.
  const int prompt = Connect(server->port());
  ASSERT_GE(prompt, 0);
  ::send(prompt, "GET /metrics HTTP/1.1\r\n", 23, MSG_NOSIGNAL);
  absl::SleepFor(absl::Milliseconds(50));
  ::send(prompt, "\r\n", 2, MSG_NOSIGNAL);
  EXPECT_TRUE(absl::StartsWith(ReadAll(prompt), "HTTP/1.1 200 OK\r\n"));
  ::close(prompt);
}

TEST(HttpServerStartTest, OptionsOutOfRangeAreInvalidArgument) {
  HttpServerOptions options;
  options.max_connections_per_peer = 0;
  EXPECT_TRUE(HasStatus(HttpServer::Start("127.0.0.1:0", Route, options).status(),
                        absl::StatusCode::kInvalidArgument,
                        {"HttpServerOptions.max_connections_per_peer = 0: must be at least 1"}));
  options = {};
  options.head_timeout = absl::ZeroDuration();
  EXPECT_TRUE(HasStatus(HttpServer::Start("127.0.0.1:0", Route, options).status(),
                        absl::StatusCode::kInvalidArgument,
                        {"HttpServerOptions.head_timeout (ms) = 0"}));
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

// The poll(2) loop of the metrics HTTP server (admission with eviction of idle connections,
// head and exchange deadlines), request-head parsing and responses.
#include "server/ops/http_server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/status_macros.h"

namespace kvshuttle {
namespace {

absl::string_view Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    default:
      return status < 500 ? "Client Error" : "Server Error";
  }
}

HttpResponse Error(int status, absl::string_view detail) {
  HttpResponse response;
  response.status = status;
  response.body = absl::StrCat(status, " ", Reason(status), detail.empty() ? "" : ": ", detail,
                               "\n");
  return response;
}

// Splits "host:port" / "[v6]:port" / ":port". False when malformed.
bool SplitHostPort(absl::string_view address, std::string* host, std::string* port) {
  if (!address.empty() && address[0] == '[') {
    const size_t close = address.find(']');
    if (close == absl::string_view::npos || close + 1 >= address.size() ||
        address[close + 1] != ':') {
      return false;
    }
    *host = std::string(address.substr(1, close - 1));
    *port = std::string(address.substr(close + 2));
  } else {
    const size_t colon = address.rfind(':');
    if (colon == absl::string_view::npos) return false;
    *host = std::string(address.substr(0, colon));
    if (host->find(':') != std::string::npos) return false;  // bare IPv6 needs brackets
    *port = std::string(address.substr(colon + 1));
  }
  uint32_t number = 0;
  return absl::SimpleAtoi(*port, &number) && number <= 65535;
}

std::string FormatSockaddr(const sockaddr* addr, socklen_t length, int* port) {
  char host[NI_MAXHOST];
  char service[NI_MAXSERV];
  if (::getnameinfo(addr, length, host, sizeof(host), service, sizeof(service),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "?";
  }
  if (!absl::SimpleAtoi(service, port)) *port = 0;
  return addr->sa_family == AF_INET6 ? absl::StrCat("[", host, "]:", service)
                                     : absl::StrCat(host, ":", service);
}

// The client IP of `addr` as raw address bytes (4 or 16); "" for other families.
std::string PeerKey(const sockaddr_storage& addr) {
  if (addr.ss_family == AF_INET) {
    const auto& in4 = reinterpret_cast<const sockaddr_in&>(addr);
    return std::string(reinterpret_cast<const char*>(&in4.sin_addr), sizeof(in4.sin_addr));
  }
  if (addr.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(addr);
    return std::string(reinterpret_cast<const char*>(&in6.sin6_addr), sizeof(in6.sin6_addr));
  }
  return "";
}

absl::Status CheckOptions(const HttpServerOptions& options) {
  const auto at_least_one = [](absl::string_view field, int64_t value) {
    return value >= 1 ? absl::OkStatus()
                      : absl::InvalidArgumentError(absl::StrCat(
                            "HttpServerOptions.", field, " = ", value, ": must be at least 1"));
  };
  RETURN_IF_ERROR(at_least_one("max_connections", options.max_connections));
  RETURN_IF_ERROR(at_least_one("max_connections_per_peer", options.max_connections_per_peer));
  RETURN_IF_ERROR(at_least_one("timeout (ms)", absl::ToInt64Milliseconds(options.timeout)));
  RETURN_IF_ERROR(
      at_least_one("head_timeout (ms)", absl::ToInt64Milliseconds(options.head_timeout)));
  return absl::OkStatus();
}

struct Connection {
  int fd = -1;
  std::string peer;  // PeerKey of the client
  std::string in;
  std::string out;
  size_t sent = 0;
  bool responding = false;  // a complete head (or an error) was read; the answer is in `out`
  absl::Time accepted;
  absl::Time deadline;  // InfinitePast: close now
};

constexpr ptrdiff_t kAdmit = -1;
constexpr ptrdiff_t kRefuse = -2;

// Whether a newcomer from `peer` may join `connections` (oldest first): kAdmit; the index of the
// connection to evict first (the peer's own oldest without a complete head when the peer is at
// its cap, else the oldest such of any peer when all slots are taken); or kRefuse when none is
// evictable.
ptrdiff_t Admission(const std::vector<Connection>& connections, const std::string& peer,
                    const HttpServerOptions& options) {
  const auto of_peer = std::count_if(connections.begin(), connections.end(),
                                     [&](const Connection& c) { return c.peer == peer; });
  const bool peer_full = of_peer >= options.max_connections_per_peer;
  if (!peer_full && static_cast<int>(connections.size()) < options.max_connections) {
    return kAdmit;
  }
  for (size_t i = 0; i < connections.size(); ++i) {
    if (!connections[i].responding && (!peer_full || connections[i].peer == peer)) {
      return static_cast<ptrdiff_t>(i);
    }
  }
  return kRefuse;
}

// Closes an evicted connection with a FIN rather than a reset: unread input is drained first.
void CloseEvicted(int fd) {
  ::shutdown(fd, SHUT_WR);
  char buffer[4096];
  while (::recv(fd, buffer, sizeof(buffer), 0) > 0) {
  }
  ::close(fd);
}

}  // namespace

absl::Status CheckListenAddress(absl::string_view address) {
  std::string host, port;
  if (!SplitHostPort(address, &host, &port)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", address, "\" is not host:port, [ipv6]:port or :port (port 0-65535)"));
  }
  return absl::OkStatus();
}

HttpResponse RespondTo(absl::string_view head, const HttpServer::Handler& handler) {
  const absl::string_view line = head.substr(0, head.find_first_of("\r\n"));
  const std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
  if (parts.size() != 3 || parts[1].empty() || parts[1][0] != '/' ||
      parts[2].substr(0, 7) != "HTTP/1.") {
    return Error(400, "expected \"GET /path HTTP/1.1\"");
  }
  if (parts[0] != "GET") return Error(405, "only GET is served");
  const absl::string_view path = parts[1].substr(0, parts[1].find('?'));
  return handler(path);
}

std::string SerializeResponse(const HttpResponse& response) {
  std::string out = absl::StrCat("HTTP/1.1 ", response.status, " ", Reason(response.status),
                                 "\r\nContent-Type: ", response.content_type,
                                 "\r\nContent-Length: ", response.body.size(),
                                 "\r\nConnection: close\r\n");
  if (response.status == 405) out += "Allow: GET\r\n";
  out += "\r\n";
  out += response.body;
  return out;
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(absl::string_view address,
                                                              Handler handler,
                                                              HttpServerOptions options) {
  RETURN_IF_ERROR(CheckListenAddress(address));
  RETURN_IF_ERROR(CheckOptions(options));
  std::string host, port;
  SplitHostPort(address, &host, &port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* results = nullptr;
  if (const int gai = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints,
                                    &results);
      gai != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", address, "\": cannot resolve: ", ::gai_strerror(gai)));
  }
  int fd = -1;
  int last_errno = 0;
  const char* failed_call = "socket";
  for (addrinfo* ai = results; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      last_errno = errno;
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      failed_call = "bind";
    } else if (::listen(fd, 64) != 0) {
      failed_call = "listen";
    } else {
      break;
    }
    last_errno = errno;
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(results);
  if (fd < 0) {
    return absl::ErrnoToStatus(last_errno, absl::StrCat(address, ": ", failed_call));
  }
  const int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    const int e = errno;
    ::close(fd);
    return absl::ErrnoToStatus(e, "eventfd");
  }
  std::unique_ptr<HttpServer> server(new HttpServer(fd, wake, std::move(handler), options));
  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) == 0) {
    server->bound_address_ =
        FormatSockaddr(reinterpret_cast<const sockaddr*>(&bound), length, &server->port_);
  }
  server->thread_ = std::thread([raw = server.get()] { raw->Loop(); });
  return server;
}

HttpServer::HttpServer(int listen_fd, int wake_fd, Handler handler, HttpServerOptions options)
    : listen_fd_(listen_fd), wake_fd_(wake_fd), handler_(std::move(handler)), options_(options) {}

HttpServer::~HttpServer() {
  Stop();
  ::close(wake_fd_);
}

void HttpServer::Stop() {
  std::lock_guard<std::mutex> lock(stop_mutex_);
  if (listen_fd_ < 0) return;
  stop_ = true;
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  listen_fd_ = -1;
}

void HttpServer::Loop() {
  std::vector<Connection> connections;
  std::vector<pollfd> fds;
  const auto respond = [&](Connection& c, const HttpResponse& response) {
    c.out = SerializeResponse(response);
    c.responding = true;
    if (c.deadline != absl::InfinitePast()) c.deadline = c.accepted + options_.timeout;
  };
  while (!stop_.load()) {
    fds.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    absl::Time next_deadline = absl::InfiniteFuture();
    for (const Connection& c : connections) {
      fds.push_back({c.fd, static_cast<short>(c.responding ? POLLOUT : POLLIN), 0});
      next_deadline = std::min(next_deadline, c.deadline);
    }
    int timeout_ms = -1;
    if (next_deadline != absl::InfiniteFuture()) {
      timeout_ms = static_cast<int>(
          std::max<int64_t>(0, absl::ToInt64Milliseconds(next_deadline - absl::Now()) + 1));
    }
    if (::poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) break;
    if (fds[0].revents != 0) break;  // Stop()

    const absl::Time now = absl::Now();
    for (size_t i = 0; i < connections.size(); ++i) {
      Connection& c = connections[i];
      const short revents = fds[i + 2].revents;
      if (!c.responding && (revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        char buffer[4096];
        while (true) {
          const ssize_t n = ::recv(c.fd, buffer, sizeof(buffer), 0);
          if (n > 0) {
            c.in.append(buffer, static_cast<size_t>(n));
            if (c.in.size() > options_.max_request_bytes) break;
            continue;
          }
          if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            c.deadline = absl::InfinitePast();  // peer closed or failed before a full request
          }
          if (n < 0 && errno == EINTR) continue;
          break;
        }
        size_t end = c.in.find("\r\n\r\n");
        if (end == std::string::npos) end = c.in.find("\n\n");
        if (end != std::string::npos && end <= options_.max_request_bytes) {
          respond(c, RespondTo(absl::string_view(c.in).substr(0, end), handler_));
        } else if (c.in.size() > options_.max_request_bytes) {
          respond(c, Error(431, absl::StrCat("request head over ", options_.max_request_bytes,
                                             " bytes")));
        }
      } else if (c.responding && (revents & (POLLOUT | POLLHUP | POLLERR)) != 0) {
        while (c.sent < c.out.size()) {
          const ssize_t n =
              ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
          if (n > 0) {
            c.sent += static_cast<size_t>(n);
          } else if (n < 0 && errno == EINTR) {
            continue;
          } else {
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) c.deadline = absl::InfinitePast();
            break;
          }
        }
      }
      if (!c.responding && c.deadline <= now && !c.in.empty() &&
          c.deadline != absl::InfinitePast()) {
        respond(c, Error(408, ""));  // a slow client gets one short try at the answer
        c.deadline = now + absl::Milliseconds(100);
      }
    }
    // Close connections that are done, failed or past their deadline.
    connections.erase(std::remove_if(connections.begin(), connections.end(),
                                     [&](Connection& c) {
                                       const bool done = c.responding && c.sent == c.out.size();
                                       if (!done && c.deadline > now) return false;
                                       if (done) ::shutdown(c.fd, SHUT_WR);
                                       ::close(c.fd);
                                       return true;
                                     }),
                      connections.end());

    if ((fds[1].revents & POLLIN) != 0) {
      while (true) {
        sockaddr_storage peer{};
        socklen_t peer_length = sizeof(peer);
        const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &peer_length,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
          // EAGAIN: all taken. Out of descriptors: back off instead of spinning on poll.
          if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            absl::SleepFor(absl::Milliseconds(10));
          }
          break;
        }
        Connection c;
        c.fd = fd;
        c.peer = PeerKey(peer);
        const ptrdiff_t admission = Admission(connections, c.peer, options_);
        if (admission == kRefuse) {
          ::close(fd);
          continue;
        }
        if (admission != kAdmit) {
          CloseEvicted(connections[admission].fd);
          connections.erase(connections.begin() + admission);
        }
        c.accepted = absl::Now();
        c.deadline = c.accepted + std::min(options_.head_timeout, options_.timeout);
        connections.push_back(std::move(c));
      }
    }
  }
  for (Connection& c : connections) ::close(c.fd);
}

}  // namespace kvshuttle

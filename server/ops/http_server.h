// A minimal HTTP/1.1 server for /metrics and /healthz: one thread multiplexing connections with
// poll(2); GET only (405 otherwise), request head capped (431), a short deadline for the request
// head and a longer one for the whole exchange (408 or closed), every response
// `Connection: close`. Idle clients cannot blind it: a newcomer beyond the connection limits
// evicts the oldest connection that has not yet sent a complete head, its own peer's first.
// Not a general web server: no bodies, no keep-alive, no TLS. Why not a library: see
// server/ops/metrics.h.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace kvshuttle {

struct HttpResponse {
  int status = 200;  // 200, 404, 503, ...
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// Connection limits. When a connection arrives from a peer (client IP) already holding
// `max_connections_per_peer`, that peer's oldest connection without a complete request head is
// closed; else, when `max_connections` are open, the oldest such connection of any peer is.
// Only when no connection is evictable (all are being answered) is the newcomer closed.
struct HttpServerOptions {
  size_t max_request_bytes = 8192;                 // request line + headers
  absl::Duration timeout = absl::Seconds(5);       // per connection, accept → response sent
  absl::Duration head_timeout = absl::Seconds(2);  // accept → complete request head (≤ timeout)
  int max_connections = 64;                        // open at once, over all peers
  int max_connections_per_peer = 8;                // open at once from one client IP
};

class HttpServer {
 public:
  // Called on the server thread for each GET with the request path (query string removed).
  using Handler = std::function<HttpResponse(absl::string_view path)>;

  // Binds `address` ("host:port", "[v6]:port" or ":port" for every interface; port 0 picks a
  // free one) and starts serving. INVALID_ARGUMENT for a malformed address or an option out of
  // range (naming it); the errno of a failing getaddrinfo/bind/listen, naming the address,
  // otherwise.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(absl::string_view address,
                                                           Handler handler,
                                                           HttpServerOptions options = {});
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Stops serving: closes open connections and the listening socket, joins the thread.
  // Idempotent.
  void Stop();
  // The bound address, e.g. "0.0.0.0:9461" or "[::1]:40123".
  const std::string& bound_address() const { return bound_address_; }
  int port() const { return port_; }

 private:
  HttpServer(int listen_fd, int wake_fd, Handler handler, HttpServerOptions options);
  void Loop();

  int listen_fd_;      // -1 once stopped
  const int wake_fd_;  // eventfd: Stop() wakes the poll
  const Handler handler_;
  const HttpServerOptions options_;
  std::string bound_address_;
  int port_ = 0;
  std::mutex stop_mutex_;  // serializes Stop
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// OK when `address` has the form Start accepts (host:port, [v6]:port, :port; port 0-65535);
// INVALID_ARGUMENT saying what is wrong otherwise. Whether it can be bound is not checked.
absl::Status CheckListenAddress(absl::string_view address);

// Parses the request head `head` (up to and excluding the blank line) into the response the
// server sends for it: 400 malformed, 405 not GET, else handler(path). Exposed for tests.
HttpResponse RespondTo(absl::string_view head, const HttpServer::Handler& handler);

// "HTTP/1.1 <status> <reason>" headers (Content-Type, Content-Length, Connection: close, Allow
// for 405) and the body.
std::string SerializeResponse(const HttpResponse& response);

}  // namespace kvshuttle

// Daemon samples from /proc/<pid> and from Prometheus text fetched with a blocking socket.
#include "bench/load_probe.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "core/status_macros.h"

namespace kvshuttle::load {
namespace {

// Entries of a /proc directory; the error names the path.
absl::StatusOr<int64_t> CountEntries(const std::string& path) {
  std::error_code ec;
  int64_t count = 0;
  for (std::filesystem::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    ++count;
  }
  if (ec) {
    const absl::Status status = absl::ErrnoToStatus(ec.value(), path);
    return status;
  }
  return count;
}

// The socket connected to host:port before `deadline`, or the error.
absl::StatusOr<int> Connect(const HttpUrl& url, absl::Time deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = absl::StrCat(url.port);
  if (const int rc = getaddrinfo(url.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("resolve ", url.host, ":", port, ": ", gai_strerror(rc)));
  }
  absl::Status last = absl::UnavailableError(absl::StrCat("no address for ", url.host));
  int fd = -1;
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last = absl::ErrnoToStatus(errno, absl::StrCat("connect ", url.host, ":", port));
      ::close(fd);
      fd = -1;
      continue;
    }
    pollfd p{fd, POLLOUT, 0};
    const int ms =
        static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
    int error = 0;
    socklen_t length = sizeof(error);
    if (::poll(&p, 1, ms) != 1 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 ||
        error != 0) {
      last = absl::UnavailableError(absl::StrCat("connect ", url.host, ":", port, ": ",
                                                 error != 0 ? std::strerror(error) : "timeout"));
      ::close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) return last;
  return fd;
}

// Threads of /proc/<pid>/task that IsGrpcPoolThread; -1 if unreadable.
int64_t CountGrpcPoolThreads(const std::string& task_dir) {
  std::error_code ec;
  int64_t count = 0;
  for (std::filesystem::directory_iterator it(task_dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    std::ifstream comm(it->path() / "comm");
    std::string name;
    if (std::getline(comm, name) && IsGrpcPoolThread(name)) ++count;
  }
  return ec ? -1 : count;
}

}  // namespace

bool IsGrpcPoolThread(absl::string_view name) {
  return absl::StartsWith(name, "default-executo") || absl::StartsWith(name, "grpc_global_tim") ||
         absl::StartsWith(name, "event_engine");
}

int64_t CountedThreads(const DaemonSample& sample) {
  return sample.threads - std::max<int64_t>(0, sample.grpc_pool_threads);
}

absl::StatusOr<DaemonSample> SampleProc(int pid) {
  DaemonSample sample;
  const std::string dir = absl::StrCat("/proc/", pid);
  std::ifstream status(dir + "/status");
  if (!status) return absl::NotFoundError(absl::StrCat(dir, "/status: cannot be read"));
  for (std::string line; std::getline(status, line);) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, "VmRSS:")) continue;
    rest = absl::StripAsciiWhitespace(rest);
    absl::ConsumeSuffix(&rest, "kB");
    int64_t kib = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &kib)) sample.rss_bytes = kib * 1024;
  }
  ASSIGN_OR_RETURN(sample.open_fds, CountEntries(dir + "/fd"));
  ASSIGN_OR_RETURN(sample.threads, CountEntries(dir + "/task"));
  sample.grpc_pool_threads = CountGrpcPoolThreads(dir + "/task");
  return sample;
}

absl::StatusOr<HttpUrl> ParseHttpUrl(absl::string_view url) {
  absl::string_view rest = url;
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("URL \"", url, "\": ", why, " (expected http://host:port/path)"));
  };
  if (!absl::ConsumePrefix(&rest, "http://")) return bad("not http://");
  HttpUrl out;
  const size_t slash = rest.find('/');
  absl::string_view authority = rest.substr(0, slash);
  out.path = slash == absl::string_view::npos ? "/" : std::string(rest.substr(slash));
  absl::string_view port;
  if (absl::ConsumePrefix(&authority, "[")) {
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos) return bad("unclosed [");
    out.host = std::string(authority.substr(0, close));
    absl::string_view after = authority.substr(close + 1);
    if (!after.empty() && !absl::ConsumePrefix(&after, ":")) return bad("junk after ]");
    port = after;
  } else {
    const size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != absl::string_view::npos) port = authority.substr(colon + 1);
  }
  if (out.host.empty()) return bad("no host");
  if (!port.empty() && (!absl::SimpleAtoi(port, &out.port) || out.port < 1 || out.port > 65535)) {
    return bad("port not in [1, 65535]");
  }
  return out;
}

absl::StatusOr<std::string> HttpGet(absl::string_view url_text, absl::Duration timeout) {
  ASSIGN_OR_RETURN(const HttpUrl url, ParseHttpUrl(url_text));
  const absl::Time deadline = absl::Now() + timeout;
  ASSIGN_OR_RETURN(const int fd, Connect(url, deadline));
  const std::string request = absl::StrCat("GET ", url.path, " HTTP/1.1\r\nHost: ", url.host,
                                           "\r\nConnection: close\r\n\r\n");
  std::string response;
  size_t sent = 0;
  absl::Status status;
  while (status.ok()) {
    const int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (ms <= 0) {
      status = absl::DeadlineExceededError(absl::StrCat("GET ", url_text, ": no answer in time"));
      break;
    }
    pollfd p{fd, static_cast<short>(sent < request.size() ? POLLOUT : POLLIN), 0};
    if (::poll(&p, 1, ms) < 0 && errno != EINTR) {
      status = absl::ErrnoToStatus(errno, absl::StrCat("GET ", url_text, ": poll"));
      break;
    }
    if (sent < request.size()) {
      const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n > 0) sent += static_cast<size_t>(n);
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        status = absl::ErrnoToStatus(errno, absl::StrCat("GET ", url_text, ": send"));
      }
      continue;
    }
    char buffer[16384];
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n == 0) break;  // the server closed: the whole answer is in
    if (n > 0) response.append(buffer, static_cast<size_t>(n));
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      status = absl::ErrnoToStatus(errno, absl::StrCat("GET ", url_text, ": recv"));
    }
  }
  ::close(fd);
  RETURN_IF_ERROR(status);
  const size_t head_end = response.find("\r\n\r\n");
  const absl::string_view first_line = absl::string_view(response).substr(0, response.find("\r\n"));
  if (head_end == std::string::npos || !absl::StartsWith(first_line, "HTTP/1.")) {
    return absl::FailedPreconditionError(absl::StrCat("GET ", url_text, ": not an HTTP answer"));
  }
  if (!absl::StrContains(first_line, " 200 ")) {
    return absl::FailedPreconditionError(absl::StrCat("GET ", url_text, ": ", first_line));
  }
  return response.substr(head_end + 4);
}

double MetricValue(absl::string_view exposition, absl::string_view series) {
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (!absl::ConsumePrefix(&line, series) || !absl::ConsumePrefix(&line, " ")) continue;
    double value = 0;
    if (absl::SimpleAtod(absl::StripAsciiWhitespace(line), &value)) return value;
  }
  return -1;
}

double MetricSum(absl::string_view exposition, absl::string_view name) {
  double sum = 0;
  bool found = false;
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (!absl::ConsumePrefix(&line, name)) continue;
    if (absl::StartsWith(line, "{")) {
      const size_t close = line.find('}');
      if (close == absl::string_view::npos) continue;
      line.remove_prefix(close + 1);
    }
    if (!absl::ConsumePrefix(&line, " ")) continue;  // another metric with a longer name
    double value = 0;
    if (absl::SimpleAtod(absl::StripAsciiWhitespace(line), &value)) {
      sum += value;
      found = true;
    }
  }
  return found ? sum : -1;
}

std::string MetricLabel(absl::string_view exposition, absl::string_view name,
                        absl::string_view label) {
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (!absl::ConsumePrefix(&line, name) || !absl::ConsumePrefix(&line, "{")) continue;
    const std::string key = absl::StrCat(label, "=\"");
    for (size_t at = line.find(key); at != absl::string_view::npos; at = line.find(key, at + 1)) {
      if (at != 0 && line[at - 1] != ',') continue;  // "xcommit=" is another label
      const size_t start = at + key.size();
      const size_t end = line.find('"', start);
      if (end != absl::string_view::npos) return std::string(line.substr(start, end - start));
    }
    return "";
  }
  return "";
}

absl::StatusOr<DaemonSample> SampleMetrics(absl::string_view url) {
  ASSIGN_OR_RETURN(const std::string text, HttpGet(url, absl::Seconds(5)));
  DaemonSample sample;
  const double rss = MetricValue(text, "kvshuttle_process_resident_bytes");
  const double fds = MetricValue(text, "kvshuttle_process_open_fds");
  const double threads = MetricValue(text, "kvshuttle_process_threads");
  if (rss < 0 || fds < 0 || threads < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("GET ", url, ": no kvshuttle_process_* gauges (not a kvshuttled?)"));
  }
  sample.rss_bytes = static_cast<int64_t>(rss);
  sample.open_fds = static_cast<int64_t>(fds);
  sample.threads = static_cast<int64_t>(threads);
  sample.sessions = static_cast<int64_t>(MetricValue(text, "kvshuttle_sessions"));
  sample.regions = static_cast<int64_t>(MetricSum(text, "kvshuttle_regions"));
  return sample;
}

}  // namespace kvshuttle::load

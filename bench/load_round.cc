// Rounds of clients: threads with an in-process start gate, or posix_spawn'ed workers driven
// over pipes (ready / go / progress / finished / result), plus the worker side of that protocol.
#include "bench/load_round.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/load_report.h"

extern char** environ;

namespace kvshuttle::load {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Prints "<label> [  Ns] done/total jobs, R jobs/s, E errors" every second once started.
class Progress {
 public:
  Progress(const RoundSpec& spec, const std::atomic<int64_t>& finished,
           const std::atomic<int64_t>& errors)
      : spec_(spec), finished_(finished), errors_(errors) {
    if (spec_.progress) thread_ = std::thread([this] { Loop(); });
  }
  ~Progress() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  void Started(Clock::time_point at) {
    std::lock_guard<std::mutex> lock(mu_);
    start_ = at;
    started_ = true;
  }

 private:
  void Loop() {
    const int64_t total = spec_.clients * spec_.jobs;
    int64_t last = 0;
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; })) {
      if (!started_) continue;
      const int64_t now = finished_.load();
      std::fprintf(stderr, "kvs_load: %s [%4.0fs] %lld/%lld jobs, %lld jobs/s, %lld errors\n",
                   spec_.label.c_str(), Seconds(Clock::now() - start_), static_cast<long long>(now),
                   static_cast<long long>(total), static_cast<long long>(now - last),
                   static_cast<long long>(errors_.load()));
      last = now;
    }
  }

  const RoundSpec& spec_;
  const std::atomic<int64_t>& finished_;
  const std::atomic<int64_t>& errors_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool started_ = false;
  Clock::time_point start_;
  std::thread thread_;
};

int GpuFor(const RoundSpec& spec, int index) {
  return spec.gpu_ordinals.empty()
             ? -1
             : spec.gpu_ordinals[static_cast<size_t>(index) % spec.gpu_ordinals.size()];
}

RoundResult RunThreads(const Workload& workload, const RoundSpec& spec) {
  std::atomic<int64_t> finished{0}, errors{0};
  Progress progress(spec, finished, errors);
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  bool go = false;
  Clock::time_point start, end;
  std::vector<ClientResult> results(static_cast<size_t>(spec.clients));
  std::vector<std::thread> threads;
  for (int i = 0; i < spec.clients; ++i) {
    threads.emplace_back([&, i] {
      ClientContext context;
      context.index = i;
      context.jobs = spec.jobs;
      context.gpu_ordinal = GpuFor(spec, i);
      context.jobs_finished = &finished;
      context.errors = &errors;
      context.start_gate = [&] {
        std::unique_lock<std::mutex> lock(mu);
        if (++arrived == spec.clients) {
          start = end = Clock::now();
          go = true;
          progress.Started(start);
          cv.notify_all();
        }
        cv.wait(lock, [&] { return go; });
        return true;
      };
      context.on_jobs_finished = [&] {
        std::lock_guard<std::mutex> lock(mu);
        end = std::max(end, Clock::now());
      };
      results[static_cast<size_t>(i)] = RunClient(workload, context);
    });
  }
  for (std::thread& t : threads) t.join();
  RoundResult round;
  round.wall_seconds = Seconds(end - start);
  for (const ClientResult& r : results) {
    round.total.Merge(r);
    if (!r.gpu_uuid.empty()) ++round.clients_per_gpu[r.gpu_uuid];
  }
  return round;
}

// One worker process and what it said so far.
struct Worker {
  int index = 0;
  pid_t pid = -1;
  int out_fd = -1;      // its stdout
  int in_fd = -1;       // its stdin
  std::string pending;  // a partial line
  std::string result;   // the SerializeResult lines
  int64_t progress = 0;
  int64_t errors = 0;
  bool ready = false;
  bool eof = false;
};

// Starts this binary as worker `index`; the error names what failed.
absl::Status Spawn(const RoundSpec& spec, Worker& w) {
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return absl::ErrnoToStatus(errno, "readlink(/proc/self/exe)");
  self[n] = '\0';
  std::vector<std::string> args = {self};
  args.insert(args.end(), spec.worker_args.begin(), spec.worker_args.end());
  args.push_back(absl::StrCat("--worker_index=", w.index));
  args.push_back(absl::StrCat("--worker_jobs=", spec.jobs));
  args.push_back(absl::StrCat("--worker_gpu=", GpuFor(spec, w.index)));
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int to_child[2], from_child[2];
  if (::pipe2(to_child, O_CLOEXEC) != 0) return absl::ErrnoToStatus(errno, "pipe2");
  if (::pipe2(from_child, O_CLOEXEC) != 0) {
    ::close(to_child[0]);
    ::close(to_child[1]);
    return absl::ErrnoToStatus(errno, "pipe2");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, to_child[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, from_child[1], STDOUT_FILENO);
  const int rc = ::posix_spawn(&w.pid, self, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(to_child[0]);
  ::close(from_child[1]);
  if (rc != 0) {
    ::close(to_child[1]);
    ::close(from_child[0]);
    return absl::ErrnoToStatus(rc, absl::StrCat("posix_spawn(", self, ")"));
  }
  w.in_fd = to_child[1];
  w.out_fd = from_child[0];
  return absl::OkStatus();
}

// Handles one complete line from worker `w`.
void OnLine(Worker& w, absl::string_view line, std::atomic<int64_t>& finished,
            std::atomic<int64_t>& errors, Clock::time_point& end) {
  int64_t jobs = 0, failed = 0;
  const std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
  if (line == "ready") {
    w.ready = true;
  } else if (line == "finished") {
    end = std::max(end, Clock::now());
  } else if (f.size() == 3 && f[0] == "progress" && absl::SimpleAtoi(f[1], &jobs) &&
             absl::SimpleAtoi(f[2], &failed)) {
    finished += jobs - w.progress;
    errors += failed - w.errors;
    w.progress = jobs;
    w.errors = failed;
  } else {
    absl::StrAppend(&w.result, line, "\n");
  }
}

RoundResult RunProcesses(const Workload& workload, const RoundSpec& spec) {
  (void)workload;  // the workers parse the same flags
  std::atomic<int64_t> finished{0}, errors{0};
  Progress progress(spec, finished, errors);
  RoundResult round;
  std::vector<Worker> workers(static_cast<size_t>(spec.clients));
  for (int i = 0; i < spec.clients; ++i) {
    Worker& w = workers[static_cast<size_t>(i)];
    w.index = i;
    if (absl::Status s = Spawn(spec, w); !s.ok()) {
      std::fprintf(stderr, "kvs_load: worker %d: %s\n", i, s.ToString().c_str());
      round.total.AddError("process:SPAWN");
      round.total.jobs_planned += spec.jobs;
      w.eof = true;
    }
  }
  bool go = false;
  Clock::time_point start = Clock::now(), end = start;
  const Clock::time_point setup_deadline = start + absl::ToChronoNanoseconds(spec.setup_timeout);
  while (true) {
    if (!go) {
      const bool all = std::all_of(workers.begin(), workers.end(),
                                   [](const Worker& w) { return w.ready || w.eof; });
      if (all || Clock::now() >= setup_deadline) {
        start = end = Clock::now();
        progress.Started(start);
        for (Worker& w : workers) {
          if (w.in_fd >= 0) (void)!::write(w.in_fd, "g", 1);  // a dead worker: EPIPE, ignored
        }
        go = true;
      }
    }
    std::vector<pollfd> fds;
    std::vector<Worker*> owners;
    for (Worker& w : workers) {
      if (w.eof) continue;
      fds.push_back({w.out_fd, POLLIN, 0});
      owners.push_back(&w);
    }
    if (fds.empty()) break;
    if (::poll(fds.data(), fds.size(), 200) < 0 && errno != EINTR) break;
    for (size_t k = 0; k < fds.size(); ++k) {
      if (fds[k].revents == 0) continue;
      Worker& w = *owners[k];
      char buffer[65536];
      const ssize_t n = ::read(w.out_fd, buffer, sizeof(buffer));
      if (n <= 0) {
        w.eof = true;
        continue;
      }
      w.pending.append(buffer, static_cast<size_t>(n));
      size_t newline;
      while ((newline = w.pending.find('\n')) != std::string::npos) {
        OnLine(w, absl::string_view(w.pending).substr(0, newline), finished, errors, end);
        w.pending.erase(0, newline + 1);
      }
    }
  }
  for (Worker& w : workers) {
    if (w.pid < 0) continue;
    ::close(w.out_fd);
    ::close(w.in_fd);
    int status = 0;
    ::waitpid(w.pid, &status, 0);
    absl::StatusOr<ClientResult> result = ParseResult(w.result);
    if (!result.ok() || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "kvs_load: worker %d (pid %d) exited with status %d: %s\n", w.index,
                   static_cast<int>(w.pid), status, result.status().ToString().c_str());
      ClientResult lost;
      lost.jobs_planned = spec.jobs;
      lost.AddError(WIFSIGNALED(status) ? absl::StrCat("process:SIGNAL_", WTERMSIG(status))
                                        : "process:NO_RESULT");
      round.total.Merge(lost);
      continue;
    }
    round.total.Merge(*result);
    if (!result->gpu_uuid.empty()) ++round.clients_per_gpu[result->gpu_uuid];
  }
  round.wall_seconds = Seconds(end - start);
  return round;
}

}  // namespace

RoundResult RunRound(const Workload& workload, const RoundSpec& spec) {
  return spec.processes ? RunProcesses(workload, spec) : RunThreads(workload, spec);
}

int RunWorker(const Workload& workload, int index, int64_t jobs, int gpu_ordinal) {
  std::mutex out_mu;  // stdout lines come from the client and the progress thread
  auto say = [&](const std::string& text) {
    std::lock_guard<std::mutex> lock(out_mu);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  };
  std::atomic<int64_t> finished{0}, errors{0};
  auto report = [&] { say(absl::StrCat("progress ", finished.load(), " ", errors.load(), "\n")); };
  std::atomic<bool> stop{false};
  std::thread reporter([&] {
    while (!stop.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      report();
    }
  });
  ClientContext context;
  context.index = index;
  context.jobs = jobs;
  context.gpu_ordinal = gpu_ordinal;
  context.jobs_finished = &finished;
  context.errors = &errors;
  context.start_gate = [&] {
    say("ready\n");
    char byte = 0;
    return ::read(STDIN_FILENO, &byte, 1) == 1;
  };
  context.on_jobs_finished = [&] { say("finished\n"); };
  const ClientResult result = RunClient(workload, context);
  stop = true;
  reporter.join();
  report();
  say(SerializeResult(result));
  return std::ferror(stdout) ? 1 : 0;
}

}  // namespace kvshuttle::load

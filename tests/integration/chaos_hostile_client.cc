// kvs_it_chaos_hostile_client SOCKET SECONDS [UID]: the hostile half of chaos_test (issue #13,
// item 8). When started as root with UID, it first becomes UID (setresgid/setresuid), so the
// daemon sees it as another client by its peer credentials. For SECONDS it runs every hostile
// pattern of issue #13 at once, one thread each, against the daemon's unix socket:
//   sessions    opens sessions until refused and holds them;
//   amplifiers  small requests asking for huge metadata: 4M-block stride-0 block sets, 2^24-block
//               pools, huge pools, Waits naming one id a million times, plans of 64k pairs × 64
//               layers;
//   truncation  lends a named shm object, shrinks it to 0, and runs a job over it;
//   hog         fills its session's queue with jobs of 64k aliasing pairs (slow on purpose);
//   sockets     raw connections: the HTTP/2 preface then silence, and garbage bytes;
//   oversized   messages over the daemon's message cap;
//   waits       more blocked Waits than a session may hold.
// It never checks the daemon's answers (a refusal is the expected outcome); it prints one line
// per pattern with how many attempts it made, then "HOSTILE DONE", and exits 0. The daemon
// dying shows up in chaos_test, not here.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/create_channel.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "client/shared_memory.h"
#include "core/layout.h"
#include "proto/proto_convert.h"

namespace kvshuttle {
namespace {

constexpr BlockShape kSlowShape{1, 1, 256, 256, 1};
constexpr uint64_t kSlowBlockBytes = 256 * 256;

struct Context {
  std::string socket;
  std::string target;
  absl::Time deadline;
  bool running() const { return absl::Now() < deadline; }
};

v1::StridedPlacement At(uint64_t region_id, uint64_t offset, uint64_t stride) {
  v1::StridedPlacement placement;
  v1::SlotBase* slot = placement.add_slots();
  slot->set_region_id(region_id);
  slot->set_offset(offset);
  placement.set_block_stride(stride);
  return placement;
}

v1::Layout ByteLayout(LayoutKind kind, BlockShape shape) {
  LayoutDesc layout;
  layout.shape = shape;
  layout.dtype = DType::kUInt8;
  layout.kind = kind;
  return LayoutToProto(layout);
}

// A session with its own connection; the session goes before its client.
class OwnedSession {
 public:
  OwnedSession() = default;
  OwnedSession(std::unique_ptr<Client> client, std::unique_ptr<Session> session)
      : client_(std::move(client)), session_(std::move(session)) {}
  OwnedSession(OwnedSession&& other) noexcept { *this = std::move(other); }
  OwnedSession& operator=(OwnedSession&& other) noexcept {
    session_.reset();
    client_ = std::move(other.client_);
    session_ = std::move(other.session_);
    return *this;
  }
  OwnedSession& operator=(std::nullptr_t) {
    session_.reset();
    client_.reset();
    return *this;
  }
  ~OwnedSession() { session_.reset(); }
  Session* operator->() const { return session_.get(); }
  Session& operator*() const { return *session_; }
  bool operator==(std::nullptr_t) const { return session_ == nullptr; }

 private:
  std::unique_ptr<Client> client_;
  std::unique_ptr<Session> session_;
};

OwnedSession OpenSession(const Context& c, absl::string_view name) {
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(c.target, absl::Seconds(5));
  if (!client.ok()) return {};
  absl::StatusOr<std::unique_ptr<Session>> session =
      Session::Open(**client, name, /*attach=*/false);
  if (!session.ok()) return {};
  return OwnedSession(*std::move(client), *std::move(session));
}

// A source and destination block set of one 64 KiB block over a named shm object this process
// owns: what the hog and the truncation patterns convert.
struct SlowPair {
  std::unique_ptr<SharedMemory> shm;
  uint64_t region_id = 0;
  uint64_t src = 0;
  uint64_t dst = 0;
};

absl::StatusOr<SlowPair> MakeSlowPair(Session& session) {
  SlowPair pair;
  absl::StatusOr<std::unique_ptr<SharedMemory>> shm = SharedMemory::Create(2 * kSlowBlockBytes);
  if (!shm.ok()) return shm.status();
  pair.shm = *std::move(shm);
  absl::StatusOr<v1::RegisterRegionResponse> region =
      session.RegisterHostShmRegion(pair.shm->name(), 0, 2 * kSlowBlockBytes);
  if (!region.ok()) return region.status();
  pair.region_id = region->region().region_id();
  absl::StatusOr<v1::RegisterBlockSetResponse> src = session.RegisterBlockSet(
      ByteLayout(LayoutKind::kNHDStack, kSlowShape), 1, At(pair.region_id, 0, kSlowBlockBytes));
  if (!src.ok()) return src.status();
  absl::StatusOr<v1::RegisterBlockSetResponse> dst = session.RegisterBlockSet(
      ByteLayout(LayoutKind::kHNDStack, kSlowShape), 1,
      At(pair.region_id, kSlowBlockBytes, kSlowBlockBytes));
  if (!dst.ok()) return dst.status();
  pair.src = src->block_set().block_set_id();
  pair.dst = dst->block_set().block_set_id();
  return pair;
}

v1::SubmitBatchRequest SlowBatch(const SlowPair& pair, int jobs, int pairs) {
  v1::SubmitBatchRequest batch;
  for (int j = 0; j < jobs; ++j) {
    v1::Job* job = batch.add_jobs();
    job->mutable_src()->set_block_set_id(pair.src);
    job->mutable_dst()->set_block_set_id(pair.dst);
    for (int p = 0; p < pairs; ++p) job->add_pairs();  // block 0 → block 0, again and again
  }
  return batch;
}

int64_t HoldSessions(const Context& c) {
  std::vector<OwnedSession> held;
  int64_t attempts = 0;
  absl::SleepFor(absl::Seconds(1));  // the other patterns open their sessions first
  while (c.running()) {
    ++attempts;
    OwnedSession s = OpenSession(c, "hostile-hoarder");
    if (!(s == nullptr)) {
      held.push_back(std::move(s));
    } else {
      absl::SleepFor(absl::Milliseconds(20));
    }
    for (auto& h : held) (void)h->KeepAlive();
  }
  return attempts;
}

int64_t Amplify(const Context& c) {
  OwnedSession s;
  int64_t attempts = 0;
  std::unique_ptr<SharedMemory> shm;
  uint64_t region = 0;
  while (c.running()) {
    if (s == nullptr) {
      s = OpenSession(c, "hostile-amplifier");
      if (s == nullptr) {
        absl::SleepFor(absl::Milliseconds(50));
        continue;
      }
      absl::StatusOr<std::unique_ptr<SharedMemory>> created = SharedMemory::Create(1 << 20);
      if (created.ok()) {
        shm = *std::move(created);
        absl::StatusOr<v1::RegisterRegionResponse> r =
            s->RegisterHostShmRegion(shm->name(), 0, 1 << 20);
        region = r.ok() ? r->region().region_id() : 0;
      }
    }
    ++attempts;
    const v1::Layout tiny = ByteLayout(LayoutKind::kUniversal, {1, 1, 1, 1, 1});
    (void)s->RegisterBlockSet(tiny, 1 << 22, At(region, 0, 0));
    (void)s->CreatePool(absl::StrCat("hostile-tiny-", attempts), tiny, 1 << 24, v1::MEMORY_HOST);
    (void)s->CreatePool(absl::StrCat("hostile-huge-", attempts),
                        ByteLayout(LayoutKind::kUniversal, {80, 2, 16, 8, 256}), 1 << 20,
                        v1::MEMORY_HOST);
    std::vector<uint64_t> ids(1 << 20, 1);
    (void)s->Wait(ids, absl::Milliseconds(1));
    const BlockShape deep{64, 2, 1, 1, 1};
    absl::StatusOr<v1::RegisterBlockSetResponse> set =
        s->RegisterBlockSet(ByteLayout(LayoutKind::kNHDStack, deep), 1, At(region, 0, 256));
    if (set.ok()) {
      v1::SubmitBatchRequest batch;
      v1::Job* job = batch.add_jobs();
      job->mutable_src()->set_block_set_id(set->block_set().block_set_id());
      job->mutable_dst()->set_block_set_id(set->block_set().block_set_id());
      for (int p = 0; p < 65536; ++p) job->add_pairs();
      (void)s->SubmitBatch(batch);
      (void)s->UnregisterBlockSet(set->block_set().block_set_id());
    }
  }
  return attempts;
}

int64_t Truncate(const Context& c) {
  int64_t attempts = 0;
  OwnedSession s;
  while (c.running()) {
    if (s == nullptr && (s = OpenSession(c, "hostile-truncator")) == nullptr) {
      absl::SleepFor(absl::Milliseconds(50));
      continue;
    }
    ++attempts;
    absl::StatusOr<SlowPair> pair = MakeSlowPair(*s);
    if (!pair.ok()) {
      absl::SleepFor(absl::Milliseconds(20));
      continue;
    }
    const int fd = shm_open(pair->shm->name().c_str(), O_RDWR, 0);
    if (fd >= 0) {
      (void)!ftruncate(fd, 0);
      close(fd);
    }
    absl::StatusOr<v1::SubmitBatchResponse> submitted = s->SubmitBatch(SlowBatch(*pair, 1, 4));
    if (submitted.ok()) (void)s->Wait(submitted->job_ids(), absl::Seconds(5));
    (void)s->UnregisterRegion(pair->region_id);
  }
  return attempts;
}

// Opens `s` (named `name`) with its slow block pair when it has none; false (after a pause)
// when that fails, so the caller tries again.
bool EnsureSlowSession(const Context& c, absl::string_view name, OwnedSession& s,
                       absl::StatusOr<SlowPair>& pair) {
  if (!(s == nullptr)) return true;
  if ((s = OpenSession(c, name)) == nullptr || !(pair = MakeSlowPair(*s)).ok()) {
    s = nullptr;
    absl::SleepFor(absl::Milliseconds(50));
    return false;
  }
  return true;
}

int64_t Hog(const Context& c) {
  int64_t attempts = 0;
  OwnedSession s;
  absl::StatusOr<SlowPair> pair = absl::UnknownError("not yet");
  while (c.running()) {
    if (!EnsureSlowSession(c, "hostile-hog", s, pair)) continue;
    ++attempts;
    if (!s->SubmitBatch(SlowBatch(*pair, 8, 65536)).ok()) absl::SleepFor(absl::Milliseconds(20));
  }
  return attempts;
}

int RawConnect(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), std::min(path.size(), sizeof(addr.sun_path) - 1));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int64_t Sockets(const Context& c) {
  int64_t attempts = 0;
  std::vector<int> held;
  const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  while (c.running()) {
    ++attempts;
    const int fd = RawConnect(c.socket);
    if (fd < 0) {
      absl::SleepFor(absl::Milliseconds(10));
      continue;
    }
    if (attempts % 2 == 0) {
      (void)send(fd, preface, sizeof(preface) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      held.push_back(fd);  // then silence
    } else {
      char garbage[512];
      for (size_t i = 0; i < sizeof(garbage); ++i) garbage[i] = static_cast<char>(i * 37 + 11);
      (void)send(fd, garbage, sizeof(garbage), MSG_NOSIGNAL | MSG_DONTWAIT);
      close(fd);
    }
    if (held.size() > 256) {  // keep the process's own descriptors bounded
      close(held.front());
      held.erase(held.begin());
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  for (int fd : held) close(fd);
  return attempts;
}

int64_t Oversized(const Context& c) {
  int64_t attempts = 0;
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(-1);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(c.target, grpc::InsecureChannelCredentials(), args);
  std::unique_ptr<v1::Shuttle::Stub> stub = v1::Shuttle::NewStub(channel);
  v1::OpenSessionRequest request;
  request.set_client_name(std::string(size_t{48} << 20, 'x'));
  while (c.running()) {
    ++attempts;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::OpenSessionResponse response;
    (void)stub->OpenSession(&context, request, &response);
    absl::SleepFor(absl::Milliseconds(100));
  }
  return attempts;
}

int64_t Waits(const Context& c) {
  int64_t attempts = 0;
  OwnedSession s;
  absl::StatusOr<SlowPair> pair = absl::UnknownError("not yet");
  while (c.running()) {
    if (!EnsureSlowSession(c, "hostile-waiter", s, pair)) continue;
    absl::StatusOr<v1::SubmitBatchResponse> submitted = s->SubmitBatch(SlowBatch(*pair, 1, 16));
    if (!submitted.ok()) {
      absl::SleepFor(absl::Milliseconds(20));
      continue;
    }
    std::vector<std::thread> waiters;
    for (int i = 0; i < 24; ++i) {
      ++attempts;
      waiters.emplace_back([&] { (void)s->Wait(submitted->job_ids(), absl::Seconds(2)); });
    }
    for (std::thread& t : waiters) t.join();
  }
  return attempts;
}

int Run(const Context& c) {
  struct Pattern {
    const char* name;
    std::function<int64_t(const Context&)> run;
    std::atomic<int64_t> attempts{0};
  };
  Pattern patterns[] = {{"sessions", HoldSessions}, {"amplifiers", Amplify},
                        {"truncation", Truncate},   {"hog", Hog},
                        {"sockets", Sockets},       {"oversized", Oversized},
                        {"waits", Waits}};
  std::vector<std::thread> threads;
  for (Pattern& p : patterns) {
    threads.emplace_back([&p, &c] { p.attempts = p.run(c); });
  }
  std::printf("HOSTILE STARTED uid %d\n", static_cast<int>(getuid()));
  std::fflush(stdout);
  for (std::thread& t : threads) t.join();
  for (const Pattern& p : patterns) {
    std::printf("hostile %-10s %lld attempts\n", p.name, static_cast<long long>(p.attempts));
  }
  std::printf("HOSTILE DONE\n");
  std::fflush(stdout);
  return 0;
}

}  // namespace
}  // namespace kvshuttle

int main(int argc, char** argv) {
  int seconds = 0;
  if (argc < 3 || !absl::SimpleAtoi(argv[2], &seconds) || seconds <= 0) {
    std::fprintf(stderr, "usage: %s SOCKET SECONDS [UID]\n", argv[0]);
    return 2;
  }
  if (argc > 3) {
    uint32_t uid = 0;
    if (!absl::SimpleAtoi(argv[3], &uid) || setresgid(uid, uid, uid) != 0 ||
        setresuid(uid, uid, uid) != 0) {
      std::fprintf(stderr, "%s: cannot become uid %s: %s\n", argv[0], argv[3],
                   std::strerror(errno));
      return 2;
    }
  }
  kvshuttle::Context c{argv[1], std::string("unix:") + argv[1],
                       absl::Now() + absl::Seconds(seconds)};
  return kvshuttle::Run(c);
}

// Shared helpers of the integration tier: status assertions, block sets over host shared memory
// with their CPU-side address tables, job builders, byte-exact checks against ReferenceConvert,
// and slow jobs (for tests that need work in flight) sized by calibration.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/shared_memory.h"
#include "core/transfer.h"
#include "tests/unit/status_test_util.h"

// Asserts that an absl::Status(Or) expression is OK, printing the status otherwise.
#define KVS_ASSERT_OK(expr)                                           \
  do {                                                                \
    const absl::Status kvs_status_ = ::kvshuttle::it::ToStatus(expr); \
    ASSERT_TRUE(kvs_status_.ok()) << #expr << ": " << kvs_status_;    \
  } while (false)

// `KVS_ASSERT_OK_AND_ASSIGN(auto x, MakeX());` declares `x` or fails the test with the status.
#define KVS_ASSERT_OK_AND_ASSIGN(lhs, expr) \
  KVS_IT_ASSIGN_IMPL_(KVS_IT_CONCAT_(kvs_it_statusor_, __LINE__), lhs, expr)
#define KVS_IT_CONCAT_INNER_(a, b) a##b
#define KVS_IT_CONCAT_(a, b) KVS_IT_CONCAT_INNER_(a, b)
#define KVS_IT_ASSIGN_IMPL_(tmp, lhs, expr)               \
  auto tmp = (expr);                                      \
  ASSERT_TRUE(tmp.ok()) << #expr << ": " << tmp.status(); \
  lhs = std::move(tmp).value()

namespace kvshuttle::it {

// What a sanitizer adds to a daemon's peak memory (ASan's quarantine keeps up to 256 MiB of
// freed memory resident, plus shadow; TSan's shadow), so that a memory bound measures the
// daemon and not the tool. Unsanitized builds (make test) get the bounds exactly.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr int64_t kSanitizerSlackKiB = int64_t{384} << 10;
#else
inline constexpr int64_t kSanitizerSlackKiB = 0;
#endif

using ::kvshuttle::testing::HasStatus;

inline absl::Status ToStatus(const absl::Status& s) { return s; }
template <typename T>
absl::Status ToStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

LayoutDesc MakeLayout(LayoutKind kind, BlockShape shape, DType dtype = DType::kF16);

// How a block set's pieces are laid out in its shm object.
enum class Placement {
  kStrided,   // vLLM style: slot s at lead + s * piece * num_blocks, block stride = piece
  kExplicit,  // an explicit table: every (block, slot) piece at a shuffled position
};

// A block set over a fresh shm object that covers exactly one region of the session.
struct HostBlockSet {
  std::unique_ptr<SharedMemory> shm;
  LayoutDesc layout;
  int64_t num_blocks = 0;
  std::vector<uint64_t> offsets;  // block-major, AddressesPerBlock per block; bytes into shm
  uint64_t region_id = 0;
  uint64_t block_set_id = 0;

  uint8_t* data() const { return static_cast<uint8_t*>(shm->data()); }
  size_t bytes() const { return shm->size(); }
  // The address table over a copy of the object's bytes at `base` (ReferenceConvert input).
  std::vector<uint64_t> Table(const uint8_t* base) const;
  std::vector<uint8_t> Snapshot() const { return {data(), data() + bytes()}; }
  v1::Endpoint endpoint() const;
};

// Creates the shm object (pieces after `lead` bytes, filled from `seed`), registers it as a
// region (named `name` when given) and registers the block set over it.
absl::StatusOr<HostBlockSet> MakeHostBlockSet(Session& session, const LayoutDesc& layout,
                                              int64_t num_blocks, Placement placement,
                                              uint64_t seed, uint64_t lead = 0,
                                              absl::string_view name = "");

void FillRandom(void* data, size_t bytes, uint64_t seed);

v1::Endpoint PoolEndpoint(absl::string_view pool);
// A proto job for `spec` (ranges, token count) and `pairs`; layouts come from the endpoints.
v1::Job MakeJob(const v1::Endpoint& src, const v1::Endpoint& dst, const TransferSpec& spec,
                const std::vector<BlockPair>& pairs);
// A spec converting whole blocks of src's layout into dst's.
TransferSpec WholeBlocks(const LayoutDesc& src, const LayoutDesc& dst);
// Pairs i → i for i in [0, n).
std::vector<BlockPair> IdentityPairs(int64_t n);

// What `dst` must hold after converting `src` (its current bytes) with spec/pairs: dst's
// current bytes with ReferenceConvert applied.
absl::StatusOr<std::vector<uint8_t>> ExpectedAfter(const HostBlockSet& src, const HostBlockSet& dst,
                                                   const TransferSpec& spec,
                                                   const std::vector<BlockPair>& pairs);

// Byte-exact comparison naming the first differing offset and the number of differences.
::testing::AssertionResult BytesEqual(const uint8_t* actual, const std::vector<uint8_t>& expected);

// Submits `jobs` as one batch and waits for all of them (up to `timeout`).
absl::StatusOr<v1::WaitResponse> RunBatch(Session& session, const std::vector<v1::Job>& jobs,
                                          absl::Duration timeout = absl::Seconds(20));

// Jobs that keep an executor thread busy for a chosen time: 256×256 transposes of 1-byte rows
// (NHD → HND, uint8, hd 1) repeated over one block pair, sized from a calibration run. Their
// result is always one transposed block, checkable byte for byte.
class SlowJobs {
 public:
  // Registers a 1-block source and destination in `session` and calibrates (~0.2 s).
  static absl::StatusOr<std::unique_ptr<SlowJobs>> Create(Session& session,
                                                          int64_t max_pairs = 65536);
  // A job that runs for about `duration` on one executor thread.
  v1::Job Job(absl::Duration duration) const;
  // Pair count Job(duration) uses.
  int64_t PairsFor(absl::Duration duration) const;
  const HostBlockSet& src() const { return src_; }
  const HostBlockSet& dst() const { return dst_; }
  // True when dst holds the transposed source block.
  ::testing::AssertionResult DstIsConverted() const;
  // Sets dst to a poison pattern again.
  void PoisonDst();
  double pairs_per_second() const { return pairs_per_second_; }
  // Ids of the calibration jobs (their events reach an attached session too).
  const std::vector<uint64_t>& calibration_job_ids() const { return calibration_job_ids_; }

 private:
  SlowJobs() = default;
  HostBlockSet src_;
  HostBlockSet dst_;
  double pairs_per_second_ = 0;
  int64_t max_pairs_ = 0;
  std::vector<uint64_t> calibration_job_ids_;
};

// Takes an attached session's events until the job_done event of `job_id` arrives (others are
// discarded); DEADLINE_EXCEEDED after `timeout`, or the stream's status if it ended first.
absl::StatusOr<v1::JobResult> WaitForJobEvent(Session& session, uint64_t job_id,
                                              absl::Duration timeout);

// Polls `predicate` every 10 ms until it holds or `timeout` passes; returns its last value.
bool WaitUntil(const std::function<bool()>& predicate, absl::Duration timeout);

// Queue depth of the daemon's CPU executor (GetStats), -1 on error.
int CpuQueueDepth(const Client& client);

// Registers (and releases) one shared-memory region, so descriptors and mappings a daemon opens
// lazily on its first registration (a GPU runtime's cudaHostRegister) are not taken for leaks.
absl::Status WarmUpRegistration(Client& client);

}  // namespace kvshuttle::it

// Regressions for the bugs the fuzz targets (and the sanitizer tiers) found, as plain unit
// tests built in every configuration: each test is the smallest request that showed the bug.
#include <cstdint>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "proto/proto_convert.h"
#include "server/pool.h"
#include "server/runtime/gpu_runtime.h"
#include "tests/unit/status_test_util.h"

namespace kvshuttle {
namespace {

using ::kvshuttle::testing::HasStatus;

v1::CreatePoolRequest PoolRequest(LayoutKind kind, BlockShape shape, uint32_t num_blocks) {
  v1::CreatePoolRequest r;
  r.set_name("store");
  *r.mutable_layout() = LayoutToProto(LayoutDesc{kind, shape, DType::kUInt8});
  r.set_num_blocks(num_blocks);
  r.set_memory(v1::MEMORY_HOST);
  return r;
}

// pool_fuzzer: CreatePool accepted block-stack layouts (documented as universal/operational
// only). A stack pool's table has nl*no addresses per block, 12 bytes of daemon memory per
// chunk: with 1-byte chunks this 4 MiB pool built a 48 MiB table (nl = no = 4096 and 64 blocks:
// 12 GiB for a 1 GiB pool).
TEST(FuzzRegressionTest, PoolsRefuseBlockStacks) {
  std::unique_ptr<GpuRuntime> gpu = CreateNullGpuRuntime();
  std::unique_ptr<BudgetSet> budgets = MakeBudgetSet(Budgets{}, *gpu);
  PoolTable pools(*gpu, 4, *budgets);
  const BlockShape amplifying{.nl = 1024, .no = 1024, .nt = 1, .nh = 1, .hd = 1};
  for (LayoutKind kind : {LayoutKind::kNHDStack, LayoutKind::kHNDStack}) {
    EXPECT_TRUE(HasStatus(pools.Create(PoolRequest(kind, amplifying, 4)),
                          absl::StatusCode::kInvalidArgument,
                          {"layout.kind: LAYOUT_", "is a block stack", "LAYOUT_UNIVERSAL"}));
    EXPECT_TRUE(HasStatus(pools.Create(PoolRequest(kind, {.nl = 2, .no = 2}, 4)),
                          absl::StatusCode::kInvalidArgument, {"is a block stack"}));
  }
  EXPECT_TRUE(pools.List().empty());
  // One buffer per block is still fine.
  for (LayoutKind kind : {LayoutKind::kUniversal, LayoutKind::kOperationalNHD,
                          LayoutKind::kOperationalHND}) {
    v1::CreatePoolRequest r = PoolRequest(kind, {.nl = 2, .no = 2, .nt = 4, .nh = 2, .hd = 8}, 4);
    r.set_name(std::string("store-") + std::string(LayoutKindName(kind)));
    absl::StatusOr<std::shared_ptr<Pool>> pool = pools.Create(r);
    ASSERT_TRUE(pool.ok()) << pool.status();
    EXPECT_EQ((*pool)->addresses().size(), 4u);
  }
}

// Pool names were echoed whole in errors (CreatePool, DestroyPool, and every RPC naming a pool:
// AllocateBlocks, FreeBlocks, SubmitBatch endpoints). Over the client's 8 KiB metadata limit the
// client got RESOURCE_EXHAUSTED ("received initial metadata size exceeds limit") instead of the
// error: a 100 KB name did that through the daemon. Names are now quoted at most 64 bytes long.
TEST(FuzzRegressionTest, PoolErrorsQuoteNamesInPart) {
  std::unique_ptr<GpuRuntime> gpu = CreateNullGpuRuntime();
  std::unique_ptr<BudgetSet> budgets = MakeBudgetSet(Budgets{}, *gpu);
  PoolTable pools(*gpu, 4, *budgets);
  const std::string huge(1 << 20, '!');
  v1::CreatePoolRequest r =
      PoolRequest(LayoutKind::kUniversal, {.nl = 2, .no = 2, .nt = 4, .nh = 2, .hd = 8}, 4);
  r.set_name(huge);
  const absl::Status created = pools.Create(r).status();
  EXPECT_TRUE(HasStatus(created, absl::StatusCode::kInvalidArgument,
                        {"name: \"!!!!", "(1048576 bytes) must be 1 to 64 characters"}));
  const absl::Status found = pools.Find(huge).status();
  EXPECT_TRUE(HasStatus(found, absl::StatusCode::kNotFound, {"(1048576 bytes) does not exist"}));
  const absl::Status destroyed = pools.Destroy(huge);
  EXPECT_TRUE(HasStatus(destroyed, absl::StatusCode::kNotFound, {"(1048576 bytes)"}));
  for (const absl::Status& s : {created, found, destroyed}) {
    EXPECT_LT(s.message().size(), 200u) << s.message().substr(0, 200);
  }
  // Bytes that are not printable are escaped, not passed through.
  EXPECT_TRUE(HasStatus(pools.Find(std::string("a\nb\0z", 5)).status(),
                        absl::StatusCode::kNotFound, {"pool: \"a\\nb\\x00z\" does not exist"}));
}

}  // namespace
}  // namespace kvshuttle

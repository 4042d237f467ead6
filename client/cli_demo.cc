// demo: every ordered pair of the five layouts through the daemon, each checked byte for byte
// against the CPU reference converter. It shows the whole path — session, region, block sets,
// one job with a shuffled pair list, Wait — with memory this process owns.
#include <algorithm>
#include <cstring>
#include <functional>
#include <iostream>
#include <numeric>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "client/cli.h"
#include "client/demo_memory.h"
#include "core/layout.h"
#include "core/reference.h"
#include "core/status_macros.h"
#include "proto/proto_convert.h"

namespace kvshuttle::cli {
namespace {

constexpr LayoutKind kAllKinds[] = {LayoutKind::kNHDStack, LayoutKind::kHNDStack,
                                    LayoutKind::kOperationalNHD, LayoutKind::kOperationalHND,
                                    LayoutKind::kUniversal};
constexpr uint8_t kPoison = 0xA5;

// Where a demo block set's pieces live, relative to its start: stacks have nl*no slots, slot s
// at s * chunk_bytes * num_blocks with block stride chunk_bytes (a vLLM per-layer tensor);
// contiguous layouts one slot with block stride block_bytes.
struct Placement {
  std::vector<uint64_t> slot_offsets;
  uint64_t block_stride = 0;
};

Placement DemoPlacement(const LayoutDesc& desc, int64_t num_blocks) {
  const int64_t piece = BytesPerAddress(desc.kind, desc.shape, DTypeSize(desc.dtype));
  Placement placement;
  for (int64_t s = 0; s < AddressesPerBlock(desc.kind, desc.shape); ++s) {
    placement.slot_offsets.push_back(static_cast<uint64_t>(s * piece * num_blocks));
  }
  placement.block_stride = static_cast<uint64_t>(piece);
  return placement;
}

v1::StridedPlacement ToProto(const Placement& placement, uint64_t region_id, uint64_t base) {
  v1::StridedPlacement out;
  for (uint64_t offset : placement.slot_offsets) {
    v1::SlotBase* slot = out.add_slots();
    slot->set_region_id(region_id);
    slot->set_offset(base + offset);
  }
  out.set_block_stride(placement.block_stride);
  return out;
}

// The block-major address table ReferenceConvert takes, over host memory at `base`.
std::vector<uint64_t> AddressTable(const Placement& placement, int64_t num_blocks,
                                   const uint8_t* base) {
  std::vector<uint64_t> table;
  for (int64_t b = 0; b < num_blocks; ++b) {
    for (uint64_t offset : placement.slot_offsets) {
      table.push_back(reinterpret_cast<uint64_t>(base) + offset + b * placement.block_stride);
    }
  }
  return table;
}

// The outcome of one layout pair.
struct PairResult {
  std::string pair;  // "nhd -> universal"
  bool byte_exact = false;
  std::string check;  // "ok", "MISMATCH ...", "FAILED ..."
  v1::JobResult job;
};

// Everything the pairs share.
struct DemoContext {
  Session* session = nullptr;
  DemoMemory* memory = nullptr;
  uint64_t region_id = 0;
  int64_t num_blocks = 0;
  size_t set_bytes = 0;  // one block set; the source sits at 0, the destination after it
  absl::Duration wait = absl::ZeroDuration();
  std::mt19937_64* rng = nullptr;
};

void FillRandom(std::vector<uint8_t>& bytes, std::mt19937_64& rng) {
  for (size_t i = 0; i < bytes.size(); i += 8) {
    const uint64_t word = rng();
    std::memcpy(bytes.data() + i, &word, std::min<size_t>(8, bytes.size() - i));
  }
}

// Runs one job src → dst and checks the destination. RPC errors end up in `check`, so one
// rejected pair does not hide the others.
absl::Status RunPair(const DemoContext& ctx, const LayoutDesc& src, const LayoutDesc& dst,
                     PairResult& result) {
  std::vector<uint8_t> source(ctx.set_bytes);
  std::vector<uint8_t> expected(ctx.set_bytes, kPoison);
  FillRandom(source, *ctx.rng);
  RETURN_IF_ERROR(ctx.memory->Write(0, source));
  RETURN_IF_ERROR(ctx.memory->Write(ctx.set_bytes, expected));

  // Every source block goes to a distinct destination block, pairs in shuffled order.
  std::vector<uint32_t> targets(ctx.num_blocks);
  std::iota(targets.begin(), targets.end(), 0);
  std::shuffle(targets.begin(), targets.end(), *ctx.rng);
  std::vector<uint32_t> order(ctx.num_blocks);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), *ctx.rng);
  std::vector<BlockPair> pairs;
  v1::Job job;
  for (uint32_t b : order) {
    pairs.push_back(BlockPair{b, targets[b], 0, 0});
    v1::BlockPair* pair = job.add_pairs();
    pair->set_src_block(b);
    pair->set_dst_block(targets[b]);
  }

  const Placement src_placement = DemoPlacement(src, ctx.num_blocks);
  const Placement dst_placement = DemoPlacement(dst, ctx.num_blocks);
  TransferSpec spec;  // all heads, layers and tokens
  spec.src = src;
  spec.dst = dst;
  RETURN_IF_ERROR(ReferenceConvert(
      spec, AddressTable(src_placement, ctx.num_blocks, source.data()),
      AddressTable(dst_placement, ctx.num_blocks, expected.data()), pairs,
      static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 8u))));

  const uint32_t nb = static_cast<uint32_t>(ctx.num_blocks);
  ASSIGN_OR_RETURN(const v1::RegisterBlockSetResponse src_set,
                   ctx.session->RegisterBlockSet(LayoutToProto(src), nb,
                                                 ToProto(src_placement, ctx.region_id, 0)));
  absl::Cleanup drop_src = [&] {
    (void)ctx.session->UnregisterBlockSet(src_set.block_set().block_set_id());
  };
  ASSIGN_OR_RETURN(const v1::RegisterBlockSetResponse dst_set,
                   ctx.session->RegisterBlockSet(
                       LayoutToProto(dst), nb, ToProto(dst_placement, ctx.region_id,
                                                       ctx.set_bytes)));
  absl::Cleanup drop_dst = [&] {
    (void)ctx.session->UnregisterBlockSet(dst_set.block_set().block_set_id());
  };

  job.mutable_src()->set_block_set_id(src_set.block_set().block_set_id());
  job.mutable_dst()->set_block_set_id(dst_set.block_set().block_set_id());
  v1::SubmitBatchRequest batch;
  *batch.add_jobs() = job;
  ASSIGN_OR_RETURN(const v1::SubmitBatchResponse submitted, ctx.session->SubmitBatch(batch));
  if (submitted.job_ids_size() != 1) {
    return absl::InternalError(
        absl::StrCat("SubmitBatch returned ", submitted.job_ids_size(), " ids for 1 job"));
  }
  const uint64_t job_id = submitted.job_ids(0);
  ASSIGN_OR_RETURN(const v1::WaitResponse waited, ctx.session->Wait({job_id}, ctx.wait));
  if (waited.results_size() == 1) result.job = waited.results(0);
  if (!waited.all_done()) {
    (void)ctx.session->CancelJobs({job_id});
    return absl::DeadlineExceededError(absl::StrCat(
        "job ", job_id, " not done within ", absl::FormatDuration(ctx.wait), " (",
        v1::JobState_Name(result.job.state()), ")"));
  }
  if (result.job.state() != v1::JOB_DONE) {
    return absl::Status(static_cast<absl::StatusCode>(result.job.code()),
                        absl::StrCat(v1::JobState_Name(result.job.state()), ": ",
                                     result.job.message()));
  }

  std::vector<uint8_t> got(ctx.set_bytes);
  RETURN_IF_ERROR(ctx.memory->Read(ctx.set_bytes, absl::MakeSpan(got)));
  const auto [a, b] = std::mismatch(got.begin(), got.end(), expected.begin());
  if (a == got.end()) {
    result.byte_exact = true;
    result.check = "ok";
  } else {
    const size_t wrong = std::inner_product(got.begin(), got.end(), expected.begin(), size_t{0},
                                            std::plus<>(), std::not_equal_to<>());
    result.check = absl::StrCat("MISMATCH: ", wrong, " bytes differ, first at byte ",
                                a - got.begin());
  }
  return absl::OkStatus();
}

std::string JsonLine(const PairResult& r) {
  return absl::StrCat("{\"pair\": \"", r.pair, "\", \"byte_exact\": ",
                      r.byte_exact ? "true" : "false", ", \"check\": \"",
                      absl::StrReplaceAll(r.check, {{"\\", "\\\\"}, {"\"", "\\\""}}),
                      "\", \"result\": ", ToJson(r.job, /*multiline=*/false), "}");
}

}  // namespace

absl::StatusOr<int> RunDemo(const CliOptions& options, absl::Span<const std::string> args) {
  ASSIGN_OR_RETURN(CommandArgs parsed,
                   CommandArgs::Parse(args, {"memory", "blocks", "shape", "dtype"}, {}));
  if (!parsed.positional().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument \"", parsed.positional().front(), "\""));
  }
  ASSIGN_OR_RETURN(const uint32_t blocks, parsed.GetUint32("blocks", 16, 1, 1 << 20));
  ASSIGN_OR_RETURN(const v1::BlockShape shape,
                   ParseShape(parsed.Get("shape", "4,2,16,8,128")));
  ASSIGN_OR_RETURN(const v1::Layout proto_layout,
                   MakeLayout("universal", shape, parsed.Get("dtype", "bf16")));
  ASSIGN_OR_RETURN(const LayoutDesc base_layout, LayoutFromProto(proto_layout, "layout"));

  ASSIGN_OR_RETURN(auto client, ConnectFromOptions(options));
  ASSIGN_OR_RETURN(const v1::GetInfoResponse info, client->GetInfo());
  ASSIGN_OR_RETURN(const DemoMemoryChoice choice,
                   ChooseDemoMemory(parsed.Get("memory", "auto"), info));
  const int64_t block_bytes =
      BytesPerAddress(LayoutKind::kUniversal, base_layout.shape, DTypeSize(base_layout.dtype));
  const size_t set_bytes = static_cast<size_t>(block_bytes) * blocks;
  // Declared before the session, so the session (and its region) goes first.
  ASSIGN_OR_RETURN(std::unique_ptr<DemoMemory> memory, DemoMemory::Create(choice, 2 * set_bytes));
  ASSIGN_OR_RETURN(auto session, Session::Open(*client, "kvshuttle demo", /*attach=*/true));
  ASSIGN_OR_RETURN(const uint64_t region_id, memory->Register(*session));
  if (!options.json) {
    std::cout << "demo: " << memory->Describe() << ", shape " << ShapeText(shape) << " "
              << DTypeText(proto_layout.dtype()) << ", " << blocks << " blocks ("
              << BytesText(set_bytes) << " per block set)\n\n";
  }

  std::mt19937_64 rng(std::random_device{}());
  const DemoContext ctx{session.get(), memory.get(), region_id, blocks, set_bytes,
                        options.timeout, &rng};
  std::vector<PairResult> results;
  for (LayoutKind src_kind : kAllKinds) {
    for (LayoutKind dst_kind : kAllKinds) {
      LayoutDesc src = base_layout, dst = base_layout;
      src.kind = src_kind;
      dst.kind = dst_kind;
      PairResult& r = results.emplace_back();
      r.pair = absl::StrCat(LayoutKindName(src_kind), " -> ", LayoutKindName(dst_kind));
      if (absl::Status status = RunPair(ctx, src, dst, r); !status.ok()) {
        r.check = absl::StrCat("FAILED: ", status.ToString());
      }
      if (options.json) std::cout << JsonLine(r) << std::endl;
    }
  }

  int exact = 0;
  std::set<std::string> executors;
  Table table({"PAIR", "MiB", "GB/s", "BACKEND", "CHECK"});
  for (const PairResult& r : results) {
    exact += r.byte_exact ? 1 : 0;
    if (!r.job.executor().empty()) executors.insert(r.job.executor());
    const double run = r.job.run_seconds();
    table.AddRow({r.pair, absl::StrFormat("%.2f", r.job.bytes() / 1048576.0),
                  run > 0 ? absl::StrFormat("%.2f", r.job.bytes() / run / 1e9) : "-",
                  r.job.state() == v1::JOB_DONE ? BackendText(r.job.backend()) : "-",
                  r.check});
  }
  if (options.json) {
    std::cout << "{\"pairs\": " << results.size() << ", \"byte_exact\": " << exact
              << ", \"executors\": [" << absl::StrJoin(executors, ", ", [](std::string* out,
                                                                          const std::string& e) {
                   absl::StrAppend(out, "\"", e, "\"");
                 })
              << "]}" << std::endl;
  } else {
    table.Print(std::cout);
    std::cout << "\ndemo: " << exact << "/" << results.size()
              << " layout pairs byte-exact through kvshuttled ("
              << (executors.empty() ? "-" : absl::StrJoin(executors, ", ")) << ")\n";
  }
  return exact == static_cast<int>(results.size()) ? 0 : 1;
}

}  // namespace kvshuttle::cli

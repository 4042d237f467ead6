// kvs_kernel_bench: GB/s of every conversion in the benchmark matrix (bench_cases.cc), each with
// its ratio to cudaMemcpy of the same bytes and placement and to the seed-style naive kernel,
// all measured in this process. Writes JSON (--out) and prints progress and a summary table.
//   kvs_kernel_bench [--suites=pairs,ranges,backends,placement|all] [--quick] [--out=FILE]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cctype>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/bench_cases.h"
#include "bench/naive_kernel.h"
#include "core/status_macros.h"
#include "kernels/convert_kernel.h"
#include "kernels/converter.h"
#include "kernels/cuda_check.h"

extern char** environ;

namespace kvshuttle::bench {
namespace {

struct Args {
  std::vector<std::string> suites = {"all"};
  bool quick = false;
  std::string out;
  std::string commit = "unknown";
  std::string filter;  // substrings of the case name, '|'-separated: any of them
  double min_ms = 20;
  uint64_t max_bytes = uint64_t{2} << 30;
  bool sweep = false;  // launch-configuration sweep of D2D kernel cases instead of the matrix
  bool reverse = false;  // run the cases last to first (order effects)
};

struct Timing {
  double seconds = 0;  // median per call
  int iterations = 0;
};

// The kernel module version from /proc/driver/nvidia/version ("... 580.159.04 ...").
std::string DriverVersion() {
  std::ifstream f("/proc/driver/nvidia/version");
  std::string word;
  while (f >> word) {
    if (std::count(word.begin(), word.end(), '.') == 2 && std::isdigit(word[0])) return word;
  }
  return "unknown";
}

// Calls per timed group for throughput figures: the host prepares call k+1 (chunk table,
// launch) while the GPU runs call k, as the daemon's worker does with a queue of jobs.
constexpr int kPipelineDepth = 4;

// Median time per call of `enqueue` on `stream`, measured with events around groups of `depth`
// back-to-back calls (depth 1: one call from an idle GPU, host preparation included).
absl::StatusOr<Timing> TimeIt(const std::function<absl::Status()>& enqueue, cudaStream_t stream,
                              double min_ms, int depth = 1) {
  cudaEvent_t start, stop;
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  for (int i = 0; i < 2; ++i) RETURN_IF_ERROR(enqueue());
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  std::vector<float> times;
  float total = 0;
  while ((total < min_ms || times.size() < 5) && times.size() < 1000) {
    CUDA_RETURN_IF_ERROR(cudaEventRecord(start, stream));
    for (int k = 0; k < depth; ++k) RETURN_IF_ERROR(enqueue());
    CUDA_RETURN_IF_ERROR(cudaEventRecord(stop, stream));
    CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop));
    float ms = 0;
    CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms / depth);
    total += ms;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return Timing{times[times.size() / 2] / 1e3, static_cast<int>(times.size())};
}

class Runner {
 public:
  Runner(const Args& args, Converter& conv, cudaStream_t stream)
      : args_(args), conv_(conv), stream_(stream) {}

  absl::Status Allocate(bool host) {
    ASSIGN_OR_RETURN(dev_src_, DeviceBuffer::Create(0, args_.max_bytes));
    ASSIGN_OR_RETURN(dev_dst_, DeviceBuffer::Create(0, args_.max_bytes));
    CUDA_RETURN_IF_ERROR(cudaMemset(dev_src_.data(), 0x5a, args_.max_bytes));
    CUDA_RETURN_IF_ERROR(cudaMemset(dev_dst_.data(), 0xa5, args_.max_bytes));
    if (host) {
      ASSIGN_OR_RETURN(host_, PinnedBuffer::Create(args_.max_bytes));
      std::memset(host_.data(), 0x3c, args_.max_bytes);
    }
    return absl::OkStatus();
  }

  // Runs one case; returns its JSON object (with "skipped" when it cannot run).
  absl::StatusOr<std::string> Run(const Case& c, std::string* line) {
    ASSIGN_OR_RETURN(const TransferSpec r, ResolveSpec(c.spec));
    const int64_t es = DTypeSize(r.src.dtype);
    const int64_t src_slots = AddressesPerBlock(r.src.kind, r.src.shape);
    const int64_t dst_slots = AddressesPerBlock(r.dst.kind, r.dst.shape);
    const int64_t src_piece = BytesPerAddress(r.src.kind, r.src.shape, es);
    const int64_t dst_piece = BytesPerAddress(r.dst.kind, r.dst.shape, es);
    const int64_t nb_dst = (c.nb + c.token_split - 1) / c.token_split;
    const uint64_t src_bytes = c.nb * src_slots * src_piece;
    const uint64_t dst_bytes = nb_dst * dst_slots * dst_piece;
    std::string json = absl::StrCat(
        "{\"suite\":\"", c.suite, "\",\"src\":\"", LayoutKindName(r.src.kind), "\",\"dst\":\"",
        LayoutKindName(r.dst.kind), "\",\"shape\":\"", c.shape, "\",\"dtype\":\"",
        DTypeName(r.src.dtype), "\",\"range\":\"", c.range, "\",\"nb\":", c.nb,
        ",\"placement\":\"", PlacementName(c.placement), "\",\"backend\":\"",
        BackendName(c.backend), "\",\"max_sms\":", c.max_sms);
    if (src_bytes > args_.max_bytes || dst_bytes > args_.max_bytes) {
      *line = "skipped: batch larger than --max_bytes";
      return json + ",\"skipped\":\"batch larger than max_bytes\"}";
    }
    const uint64_t src_base = c.placement == Placement::kH2D ? host_.address() : dev_src_.address();
    const uint64_t dst_base = c.placement == Placement::kD2H ? host_.address() : dev_dst_.address();
    std::vector<uint64_t> src_table(c.nb * src_slots), dst_table(nb_dst * dst_slots);
    for (size_t i = 0; i < src_table.size(); ++i) src_table[i] = src_base + i * src_piece;
    for (size_t i = 0; i < dst_table.size(); ++i) dst_table[i] = dst_base + i * dst_piece;
    std::vector<BlockPair> pairs(c.nb);
    for (int i = 0; i < c.nb; ++i) {
      pairs[i] = {i, i / c.token_split, 0, (i % c.token_split) * r.token_count};
    }
    // Each side's blocks lie in one buffer: one segment each, so runs merge across chunks.
    const std::vector<uint32_t> src_segments(src_table.size(), 0);
    const std::vector<uint32_t> dst_segments(dst_table.size(), 0);
    ASSIGN_OR_RETURN(const TransferPlan plan,
                     TransferPlan::Build(c.spec, src_table, dst_table, pairs,
                                         AddressSegments{src_segments, dst_segments}));
    if (args_.sweep) return Sweep(plan, json, line);
    const uint64_t bytes = static_cast<uint64_t>(plan.bytes());
    const LaunchOptions options{c.backend, c.max_sms};
    if (c.backend == Backend::kBatch || c.backend == Backend::kAsync) {
      const size_t runs = plan.Runs().size();
      if (runs > 20000) {
        *line = absl::StrCat("skipped: ", runs, " contiguous runs");
        return absl::StrCat(json, ",\"bytes\":", bytes, ",\"runs\":", runs,
                            ",\"skipped\":\"too many contiguous runs for a memcpy backend\"}");
      }
    }
    ASSIGN_OR_RETURN(const Backend used, conv_.Enqueue(plan, options, stream_));
    auto convert = [&] { return conv_.Enqueue(plan, options, stream_).status(); };
    // Latency: one call from an idle GPU (time_us, serial_*). Throughput: calls back to back
    // (gbps, ratio_memcpy), each baseline measured the same way.
    ASSIGN_OR_RETURN(const Timing t, TimeIt(convert, stream_, args_.min_ms));
    ASSIGN_OR_RETURN(const Timing tp, TimeIt(convert, stream_, args_.min_ms, kPipelineDepth));
    ASSIGN_OR_RETURN(const Timing m, Memcpy(bytes, c.placement, 1));
    ASSIGN_OR_RETURN(const Timing mp, Memcpy(bytes, c.placement, kPipelineDepth));
    const double gbps = bytes / tp.seconds / 1e9;
    const double memcpy_gbps = bytes / mp.seconds / 1e9;
    const double serial_ratio = m.seconds / t.seconds;
    absl::StrAppend(&json, ",\"backend_used\":\"", BackendName(used), "\",\"bytes\":", bytes,
                    ",\"time_us\":", t.seconds * 1e6, ",\"iterations\":", t.iterations,
                    ",\"memcpy_time_us\":", m.seconds * 1e6,
                    ",\"serial_gbps\":", bytes / t.seconds / 1e9,
                    ",\"serial_ratio_memcpy\":", serial_ratio, ",\"pipeline_depth\":",
                    kPipelineDepth, ",\"gbps\":", gbps, ",\"memcpy_gbps\":", memcpy_gbps,
                    ",\"ratio_memcpy\":", gbps / memcpy_gbps);
    *line = absl::StrFormat("%8.1f GB/s  %.3f x memcpy (one call: %.3f)", gbps,
                            gbps / memcpy_gbps, serial_ratio);
    if (c.placement == Placement::kD2D) {
      ASSIGN_OR_RETURN(const Timing pc, Plain(bytes));
      absl::StrAppend(&json, ",\"plain_copy_gbps\":", bytes / pc.seconds / 1e9);
    }
    if (c.placement == Placement::kD2D && c.backend == Backend::kKernel && c.token_split == 1) {
      ASSIGN_OR_RETURN(const Timing n, Naive(plan.spec(), src_table, dst_table, c.nb));
      const double naive_gbps = bytes / n.seconds / 1e9;
      absl::StrAppend(&json, ",\"naive_gbps\":", naive_gbps, ",\"ratio_naive\":",
                      gbps / naive_gbps);
      absl::StrAppend(line, absl::StrFormat("  %.1f x naive", gbps / naive_gbps));
    }
    return json + "}";
  }

 private:
  // --sweep: the chunk-copy kernel of `plan` (D2D) at several CTA sizes and grid sizes, next to
  // cudaMemcpy and two plain copy kernels of the same bytes. Grid "occ" is the converter's
  // persistent one-wave grid; ×2/×4 oversubscribe it; "tiles" launches one CTA per tile.
  absl::StatusOr<std::string> Sweep(const TransferPlan& plan, std::string json,
                                    std::string* line) {
    const uint64_t bytes = static_cast<uint64_t>(plan.bytes());
    const std::vector<ChunkAddress> all = plan.Chunks();
    ASSIGN_OR_RETURN(DeviceBuffer table,
                     DeviceBuffer::Create(0, all.size() * sizeof(ChunkAddress)));
    CUDA_RETURN_IF_ERROR(cudaMemcpy(table.data(), all.data(), all.size() * sizeof(ChunkAddress),
                                    cudaMemcpyHostToDevice));
    const auto* chunks = static_cast<const ChunkAddress*>(table.data());
    ASSIGN_OR_RETURN(const Timing m, Memcpy(bytes, Placement::kD2D, kPipelineDepth));
    const double memcpy_gbps = bytes / m.seconds / 1e9;
    absl::StrAppend(&json, ",\"bytes\":", bytes, ",\"memcpy_gbps\":", memcpy_gbps,
                    ",\"sweep\":[");
    double best = 0;
    std::string best_name;
    bool first = true;
    auto add = [&](const std::string& name, const Timing& t, uint64_t moved = 0) {
      const double gbps = (moved ? moved : bytes) / t.seconds / 1e9;
      absl::StrAppend(&json, first ? "" : ",", "{\"config\":\"", name, "\",\"gbps\":", gbps,
                      ",\"ratio_memcpy\":", gbps / memcpy_gbps, "}");
      first = false;
      if (name.rfind("chunk", 0) == 0 && gbps > best) {
        best = gbps;
        best_name = name;
      }
    };
    int sms = 0;
    CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    for (int threads : {128, 256, 512, 1024}) {
      const int occ = sms * ResidentCtasPerSm(plan.alignment(), threads);
      for (int mult : {1, 2, 4, 0}) {
        const int grid = mult == 0 ? (1 << 30) : occ * mult;
        ASSIGN_OR_RETURN(const Timing t,
                         TimeIt([&] { return LaunchChunkCopy(plan, chunks, grid, threads,
                                                             stream_); },
                                stream_, args_.min_ms, kPipelineDepth));
        add(absl::StrCat("chunk t", threads, mult == 0 ? " tiles" : absl::StrCat(" occx", mult)),
            t);
      }
    }
    const uint64_t rounded = bytes / 16 * 16;
    ASSIGN_OR_RETURN(const Timing pc, Plain(bytes));
    add("plain grid-stride", pc);
    for (int threads : {256, 512}) {
      ASSIGN_OR_RETURN(const Timing pt,
                       TimeIt([&] { return LaunchPlainTileCopy(dev_dst_.data(), dev_src_.data(),
                                                               rounded, threads, stream_); },
                              stream_, args_.min_ms, kPipelineDepth));
      add(absl::StrCat("plain tiles t", threads), pt);
    }
    // The copy engines on the same row pattern (rows of row_bytes at the geometry's inner
    // strides), as far as the buffers hold it: the roof for row-granular conversions.
    const ChunkGeometry& g = plan.geometry();
    if (g.row_bytes < g.chunk_bytes()) {
      const int64_t sp = g.inner_count > 1 ? g.src_inner_stride : g.src_outer_stride;
      const int64_t dp = g.inner_count > 1 ? g.dst_inner_stride : g.dst_outer_stride;
      const uint64_t width = g.row_bytes;
      const uint64_t spitch = std::max<int64_t>(sp, g.row_bytes);
      const uint64_t dpitch = std::max<int64_t>(dp, g.row_bytes);
      const uint64_t height =
          std::min(bytes / width, args_.max_bytes / std::max(spitch, dpitch) - 1);
      ASSIGN_OR_RETURN(const Timing t2,
                       TimeIt(
                           [&]() -> absl::Status {
                             CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(
                                 dev_dst_.data(), dpitch, dev_src_.data(), spitch, width, height,
                                 cudaMemcpyDeviceToDevice, stream_));
                             return absl::OkStatus();
                           },
                           stream_, args_.min_ms, kPipelineDepth));
      add(absl::StrCat("memcpy2d rows ", width, "B pitch ", spitch, "/", dpitch), t2,
          width * height);
    }
    *line = absl::StrFormat("best %s %.3f x memcpy", best_name, best / memcpy_gbps);
    return json + "]}";
  }

  absl::StatusOr<Timing> Memcpy(uint64_t bytes, Placement p, int depth) {
    const auto key = std::make_tuple(bytes, static_cast<int>(p), depth);
    if (auto it = memcpy_cache_.find(key); it != memcpy_cache_.end()) return it->second;
    void* dst = p == Placement::kD2H ? host_.data() : dev_dst_.data();
    const void* src = p == Placement::kH2D ? host_.data() : dev_src_.data();
    ASSIGN_OR_RETURN(const Timing t, TimeIt(
        [&]() -> absl::Status {
          CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_));
          return absl::OkStatus();
        },
        stream_, args_.min_ms, depth));
    memcpy_cache_[key] = t;
    return t;
  }

  absl::StatusOr<Timing> Plain(uint64_t bytes) {
    const uint64_t rounded = bytes / 16 * 16;
    if (auto it = plain_cache_.find(rounded); it != plain_cache_.end()) return it->second;
    ASSIGN_OR_RETURN(const Timing t,
                     TimeIt([&] { return LaunchPlainCopy(dev_dst_.data(), dev_src_.data(), rounded,
                                                         stream_); },
                            stream_, args_.min_ms, kPipelineDepth));
    plain_cache_[rounded] = t;
    return t;
  }

  absl::StatusOr<Timing> Naive(const TransferSpec& r, const std::vector<uint64_t>& src_table,
                               const std::vector<uint64_t>& dst_table, int nb) {
    ASSIGN_OR_RETURN(DeviceBuffer tables, DeviceBuffer::Create(
        0, (src_table.size() + dst_table.size()) * sizeof(uint64_t)));
    uint64_t* d_src = static_cast<uint64_t*>(tables.data());
    uint64_t* d_dst = d_src + src_table.size();
    CUDA_RETURN_IF_ERROR(cudaMemcpy(d_src, src_table.data(), src_table.size() * 8, cudaMemcpyDefault));
    CUDA_RETURN_IF_ERROR(cudaMemcpy(d_dst, dst_table.data(), dst_table.size() * 8, cudaMemcpyDefault));
    return TimeIt([&] { return LaunchNaiveConvert(r, d_src, d_dst, nb, stream_); }, stream_,
                  args_.min_ms, kPipelineDepth);
  }

  const Args& args_;
  Converter& conv_;
  cudaStream_t stream_;
  DeviceBuffer dev_src_, dev_dst_;
  PinnedBuffer host_;
  std::map<std::tuple<uint64_t, int, int>, Timing> memcpy_cache_;
  std::map<uint64_t, Timing> plain_cache_;
};

// The KVS_EXP_* experiment switches set in this process's environment (kernels/), recorded in
// the JSON so an A/B run says which side it is.
std::string ExperimentEnvironment() {
  std::string out;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "KVS_EXP_", 8) == 0) absl::StrAppend(&out, out.empty() ? "" : " ", *e);
  }
  return out;
}

absl::StatusOr<Args> ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* name) -> const char* {
      const std::string prefix = absl::StrCat("--", name, "=");
      return arg.rfind(prefix, 0) == 0 ? argv[i] + prefix.size() : nullptr;
    };
    if (arg == "--quick") {
      a.quick = true;
    } else if (arg == "--sweep") {
      a.sweep = true;
    } else if (arg == "--reverse") {
      a.reverse = true;
    } else if (const char* v = value("suites")) {
      a.suites = absl::StrSplit(v, ',');
    } else if (const char* v = value("out")) {
      a.out = v;
    } else if (const char* v = value("commit")) {
      a.commit = v;
    } else if (const char* v = value("filter")) {
      a.filter = v;
    } else if (const char* v = value("min_ms")) {
      a.min_ms = std::atof(v);
    } else if (const char* v = value("max_mib")) {
      a.max_bytes = uint64_t(std::atoll(v)) << 20;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown argument ", arg,
          "; usage: kvs_kernel_bench [--suites=pairs,ranges,backends,placement|all] [--quick] "
          "[--out=FILE] [--commit=SHA] [--filter=TEXT] [--min_ms=20] [--max_mib=2048] [--sweep] [--reverse]"));
    }
  }
  return a;
}

absl::Status Main(int argc, char** argv) {
  ASSIGN_OR_RETURN(const Args args, ParseArgs(argc, argv));
  std::vector<Case> cases = MakeCases(args.suites, args.quick);
  if (args.reverse) std::reverse(cases.begin(), cases.end());
  bool host = false;
  for (const Case& c : cases) host = host || c.placement != Placement::kD2D;
  cudaDeviceProp prop{};
  CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, 0));
  ASSIGN_OR_RETURN(std::unique_ptr<Converter> conv, Converter::Create(0));
  cudaStream_t stream;
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  Runner runner(args, *conv, stream);
  RETURN_IF_ERROR(runner.Allocate(host));
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  std::string json = absl::StrCat("{\"benchmark\":\"kvs_kernel_bench\",\"device\":\"", prop.name,
                                  "\",\"driver\":\"", DriverVersion(), "\",\"sm_count\":",
                                  prop.multiProcessorCount, ",\"date\":\"", date,
                                  "\",\"commit\":\"", args.commit, "\",\"quick\":",
                                  args.quick ? "true" : "false", ",\"experiments\":\"",
                                  ExperimentEnvironment(), "\",\"cases\":[");
  std::fprintf(stderr, "kvs_kernel_bench on %s (driver %s), %zu cases\n", prop.name,
               DriverVersion().c_str(), cases.size());
  // --filter=A|B: cases whose name contains A or B.
  const std::vector<absl::string_view> filters = absl::StrSplit(args.filter, '|');
  int index = 0;
  bool first = true;
  for (const Case& c : cases) {
    ++index;
    const std::string name = absl::StrCat(c.suite, " ", LayoutKindName(c.spec.src.kind), "->",
                                          LayoutKindName(c.spec.dst.kind), " ", c.shape, " ",
                                          c.range, " nb=", c.nb, " ", PlacementName(c.placement),
                                          " ", BackendName(c.backend),
                                          c.max_sms ? absl::StrCat(" sms=", c.max_sms) : "");
    if (!args.filter.empty() &&
        std::none_of(filters.begin(), filters.end(),
                     [&](absl::string_view f) { return absl::StrContains(name, f); })) {
      continue;
    }
    if (args.sweep && (c.placement != Placement::kD2D || c.backend != Backend::kKernel)) continue;
    std::string line;
    absl::StatusOr<std::string> one = runner.Run(c, &line);
    if (!one.ok()) {
      return absl::Status(one.status().code(), absl::StrCat(name, ": ", one.status().message()));
    }
    std::fprintf(stderr, "[%d/%zu] %-90s %s\n", index, cases.size(), name.c_str(), line.c_str());
    absl::StrAppend(&json, first ? "" : ",\n", *one);
    first = false;
  }
  json += "]}\n";
  if (!args.out.empty()) {
    std::ofstream(args.out) << json;
    std::fprintf(stderr, "wrote %s\n", args.out.c_str());
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace kvshuttle::bench

int main(int argc, char** argv) {
  const absl::Status s = kvshuttle::bench::Main(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "kvs_kernel_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}

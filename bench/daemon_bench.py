#!/usr/bin/env python3
"""The daemon from Python, beside what a Python user would do instead (issue #14).

    python3 bench/daemon_bench.py --target unix:/tmp/kvs.sock [--quick] [--out FILE]

One process on the GPU host, a vLLM-style cache (per layer [2, num_blocks, nt, nh, hd], bf16,
torch's caching allocator) lent to kvshuttled, offload of `nb` blocks into a universal device
pool, one job in flight, for nb in 1, 8, 64 (and 4 jobs in flight for 64). Same bytes, same run:

  memcpy        torch `dst.copy_(src)` of the bytes (cudaMemcpy D2D), CUDA-event timed;
  torch         what a user would write instead: gather the blocks of every layer and permute
                them into universal order [nb, nh, nl, 2, nt, hd] (`index_select` + `permute` +
                `copy_`), CUDA-event timed;
  daemon        `session.offload(cache, ids, pool, pool_ids).result()` through the Python
                client (over the streaming channel by default), wall clock per job.

The first offload is checked byte-exact against the torch result. Progress on stderr, a table on
stdout, JSON to --out.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

import kvshuttle

SHAPE = dict(nl=80, nt=16, nh=8, hd=128)  # Llama-70B-like: 5 MiB per block (K and V, bf16)
CACHE_BLOCKS = 256
POOL_BLOCKS = 512


def cuda_time(fn, reps: int) -> float:
    """Median seconds per call of `fn` over `reps` calls, CUDA-event timed, after a warm-up."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def torch_universal(caches, ids, out) -> None:
    """Blocks `ids` of every layer in universal order [nb, nh, nl, 2, nt, hd], into `out`."""
    index = torch.as_tensor(ids, device=caches[0].device)
    stacked = torch.stack([kv.index_select(1, index) for kv in caches])  # [nl, 2, nb, nt, nh, hd]
    out.copy_(stacked.permute(2, 4, 0, 1, 3, 5))


def run_path(client, path: str, caches, block_bytes: int, args, rows: list) -> bool:
    """The cases of one client path; appends their rows; False when the bytes are wrong."""
    device = caches[0].device
    nl, nt, nh, hd = SHAPE["nl"], SHAPE["nt"], SHAPE["nh"], SHAPE["hd"]
    with client.session(f"daemon-bench-py-{path}", attach=path == "channel") as session:
        cache = session.register_vllm_cache(caches)
        pool = session.create_pool(f"bench-py-{path}-{int(time.time())}",
                                   cache.layout.replace("universal"), POOL_BLOCKS,
                                   memory="device")
        pool_ids = pool.allocate(POOL_BLOCKS)
        try:
            # Byte-exact check: offload 8 blocks, onboard them into blocks 8..15, compare.
            session.offload(cache, list(range(8)), pool, pool_ids[:8]).result(timeout=60)
            session.onboard(pool, pool_ids[:8], cache, list(range(8, 16))).result(timeout=60)
            torch.cuda.synchronize()
            for kv in caches:
                if not torch.equal(kv[:, :8], kv[:, 8:16]):
                    print("offload + onboard is not byte-exact", file=sys.stderr)
                    return False
            print("offload + onboard byte-exact; channel:", session.over_channel, file=sys.stderr)
            cases = [(1, 1), (64, 1)] if args.quick else [(1, 1), (8, 1), (64, 1), (64, 4)]
            for nb, inflight in cases:
                print(f"nb {nb}, {inflight} in flight", file=sys.stderr)
                nbytes = nb * block_bytes
                src = torch.empty(nbytes, dtype=torch.uint8, device=device)
                dst = torch.empty_like(src)
                memcpy_s = cuda_time(lambda: dst.copy_(src), 50)
                out = torch.empty(nb, nh, nl, 2, nt, hd, dtype=torch.bfloat16, device=device)
                ids = list(range(nb))
                torch_s = cuda_time(lambda: torch_universal(caches, ids, out), 20)
                latencies = []
                jobs = 0
                start = time.perf_counter()
                end = start + args.seconds
                k = 0
                while time.perf_counter() < end:
                    futures = []
                    t0 = time.perf_counter()
                    for f in range(inflight):
                        first = ((k + f) * nb) % POOL_BLOCKS
                        futures.append(session.offload(
                            cache, [(i + first) % CACHE_BLOCKS for i in range(nb)], pool,
                            [pool_ids[(first + i) % POOL_BLOCKS] for i in range(nb)]))
                    for future in futures:
                        future.result(timeout=60)
                    latencies.append((time.perf_counter() - t0) * 1e6)
                    jobs += inflight
                    k += inflight
                wall = time.perf_counter() - start
                gbps = jobs * nbytes / wall / 1e9
                memcpy_gbps = nbytes / memcpy_s / 1e9
                row = dict(nb=nb, inflight=inflight, bytes_per_job=nbytes, jobs=jobs,
                           daemon_gbps=gbps, memcpy_gbps=memcpy_gbps, memcpy_us=memcpy_s * 1e6,
                           torch_gbps=nbytes / torch_s / 1e9, ratio_memcpy=gbps / memcpy_gbps,
                           ratio_torch=gbps / (nbytes / torch_s / 1e9),
                           round_p50_us=statistics.median(latencies),
                           round_p99_us=sorted(latencies)[int(len(latencies) * 0.99)],
                           channel=session.over_channel, path=path)
                rows.append(row)
                print(f"{path:7s} nb {nb:3d} x{inflight}: daemon {gbps:7.1f} GB/s = {row['ratio_memcpy']:.3f} x "
                      f"memcpy ({memcpy_gbps:.0f} GB/s, {memcpy_s * 1e6:.1f} us), "
                      f"{row['ratio_torch']:.2f} x torch gather+permute "
                      f"({row['torch_gbps']:.0f} GB/s); round p50 {row['round_p50_us']:.0f} us")
                sys.stdout.flush()
        finally:
            pool.destroy()
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="unix:/run/kvshuttle/kvshuttle.sock")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="")
    parser.add_argument("--commit", default="unknown")
    parser.add_argument("--seconds", type=float, default=0.5, help="per daemon case")
    parser.add_argument("--paths", default="channel,unary",
                        help="channel (an attached session: submit and completion on its "
                             "streaming channel) and/or unary (an unattached one: SubmitBatch "
                             "and Wait calls)")
    args = parser.parse_args()
    device = torch.device("cuda:0")
    nl, nt, nh, hd = SHAPE["nl"], SHAPE["nt"], SHAPE["nh"], SHAPE["hd"]
    caches = [torch.randn(2, CACHE_BLOCKS, nt, nh, hd, dtype=torch.bfloat16, device=device)
              for _ in range(nl)]
    block_bytes = nl * 2 * nt * nh * hd * 2
    client = kvshuttle.connect(args.target)
    rows = []
    for path in args.paths.split(","):
        if path not in ("channel", "unary"):
            print(f"--paths: unknown path {path}", file=sys.stderr)
            return 2
        if not run_path(client, path, caches, block_bytes, args, rows):
            return 1
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip().split(", ")
    record = dict(bench="daemon_python", device=smi[0] if smi else "?",
                  driver=smi[1] if len(smi) > 1 else "?", commit=args.commit,
                  date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), torch=torch.__version__,
                  shape=SHAPE, cases=rows)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

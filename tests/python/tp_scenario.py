#!/usr/bin/env python3
"""The tensor-parallel scenario's processes (test_tp.py runs them; each has its own client and
session, the pool is shared by name).

  worker: holds a vLLM-like cache with all 8 heads (NHD, [2, nb, nt, nh, hd]); creates the
          pool (universal, 8 heads), offloads --blocks into freshly allocated pool blocks and
          prints {"pool_blocks": [...]} on stdout.
  rank:   TP rank --rank of --tp, holding 8/tp heads in a cache of its own layout; onboards
          its head slice of --pool-blocks into --dst-blocks and checks the cache against the
          worker's data (regenerated from --seed) sliced with numpy / torch. Exit 0 when equal.

--memory host: numpy arrays in kvshuttle shared memory and a host pool; --memory device:
torch CUDA tensors and a device pool.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

import kvshuttle
from arrays import CudaArrays, HostArrays
from baseline import bytes_equal, cache_block, describe_difference

NL, NT, HD, HEADS, WORKER_BLOCKS = 3, 16, 64, 8, 6
# Each rank keeps its own cache geometry: (layout, kv_first, num_blocks).
RANK_GEOMETRY = {0: ("NHD", True, 5), 1: ("HND", False, 7), 2: ("NHD", False, 4),
                 3: ("HND", True, 6)}


def cache_shape(layout: str, kv_first: bool, num_blocks: int, nh: int) -> tuple[int, ...]:
    inner = (NT, nh, HD) if layout == "NHD" else (nh, NT, HD)
    return (2, num_blocks, *inner) if kv_first else (num_blocks, 2, *inner)


def worker_cache(arrays, dtype: str, seed: int) -> list:
    rng = np.random.default_rng(seed)
    shape = cache_shape("NHD", True, WORKER_BLOCKS, HEADS)
    return [arrays.random(shape, dtype, rng) for _ in range(NL)]


def ids(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def run_worker(args, arrays, session: kvshuttle.Session) -> int:
    caches = worker_cache(arrays, args.dtype, args.seed)
    cache = session.register_vllm_cache(caches)
    pool = session.create_pool(args.pool, cache.layout.replace("universal"), 16,
                               memory=args.memory)
    pool_blocks = pool.allocate(len(ids(args.blocks)))
    session.offload(cache, ids(args.blocks), pool, pool_blocks).result(timeout=60)
    print(json.dumps({"pool_blocks": pool_blocks}))
    return 0


def run_rank(args, arrays, session: kvshuttle.Session) -> int:
    layout, kv_first, num_blocks = RANK_GEOMETRY[args.rank]
    per_rank = HEADS // args.tp
    shape = cache_shape(layout, kv_first, num_blocks, per_rank)
    caches = [arrays.empty(shape, args.dtype) for _ in range(NL)]
    for c in caches:
        c[...] = 0
    cache = session.register_vllm_cache(caches, layout=layout, kv_first=kv_first)
    pool = session.pool(args.pool)
    dst = ids(args.dst_blocks)
    session.onboard(pool, ids(args.pool_blocks), cache, dst,
                    heads=kvshuttle.Span.tp(args.rank, args.tp, HEADS)).result(timeout=60)
    source = worker_cache(arrays, args.dtype, args.seed)
    heads = slice(args.rank * per_rank, (args.rank + 1) * per_rank)
    failures = []
    for src_block, dst_block in zip(ids(args.blocks), dst):
        got = cache_block(caches, dst_block, layout, kv_first)
        want = cache_block(source, src_block, "NHD", True)[:, :, :, heads]
        if not bytes_equal(got, want):
            failures.append(f"block {dst_block} (worker block {src_block}): "
                            f"{describe_difference(got, want)}")
    for block in set(range(num_blocks)) - set(dst):
        if cache_block(caches, block, layout, kv_first).any():
            failures.append(f"block {block} was not onboarded but changed")
    print(json.dumps({"rank": args.rank, "checked": len(dst), "failures": failures}))
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("worker", "rank"))
    parser.add_argument("--target", required=True)
    parser.add_argument("--pool", required=True)
    parser.add_argument("--memory", choices=("host", "device"), required=True)
    parser.add_argument("--dtype", default="f16")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--blocks", required=True, help="worker blocks, comma-separated")
    parser.add_argument("--pool-blocks", default="")
    parser.add_argument("--dst-blocks", default="")
    parser.add_argument("--rank", type=int, default=0)
    parser.add_argument("--tp", type=int, default=2)
    args = parser.parse_args()
    arrays = HostArrays() if args.memory == "host" else CudaArrays()
    with kvshuttle.connect(args.target) as client, client.session(
            f"tp-{args.role}-{args.rank}") as session:
        return (run_worker if args.role == "worker" else run_rank)(args, arrays, session)


if __name__ == "__main__":
    sys.exit(main())

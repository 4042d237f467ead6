#!/usr/bin/env python3
"""Offloading vLLM KV-cache blocks through kvshuttled, and reading them back — from Python.

A worker's cache (per-layer tensors [2, num_blocks, block_size, num_kv_heads, head_size], the
vLLM flash-attention shape) is registered in one call; four of its blocks go into a daemon pool
in the head-first universal layout, then come back into a second cache of another layout (HND,
[num_blocks, 2, heads, tokens, head_size]) and into a tensor-parallel rank's cache that holds
only half of the heads. Every block is checked against the source; the exit status is 1 on a
mismatch.

With torch and a GPU the caches are CUDA tensors (shared with the daemon through CUDA IPC) and
the copies are ordered on a torch stream; otherwise the example says so and uses host shared
memory and the daemon's CPU executor.

    pip install ./python                       # or: PYTHONPATH=<stubs dir>:python
    python3 examples/vllm_offload.py --target unix:/run/kvshuttle/kvshuttle.sock
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

try:
    import kvshuttle
    kvshuttle.connect  # noqa: B018 - a stubs-only folder on the path imports as a bare namespace
except (ImportError, AttributeError):  # run from a checkout: use python/ (stubs generated)
    sys.modules.pop("kvshuttle", None)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    import kvshuttle

LAYERS, BLOCKS, TOKENS, HEADS, HEAD_SIZE = 4, 16, 16, 8, 128
OFFLOADED = [3, 7, 8, 12]   # worker blocks to offload
RESTORED = [0, 1, 2, 3]     # where they come back


def use_gpu(client: kvshuttle.Client, force_host: bool) -> tuple[bool, str]:
    """(True, "") when torch sees a GPU the daemon serves; else (False, why not)."""
    if force_host:
        return False, "--host given"
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    if not torch.cuda.is_available():
        return False, "torch sees no CUDA device"
    from kvshuttle import cuda  # the torch helpers; importing it needs torch
    served = {d.uuid for d in client.info().devices}
    uuid = cuda.gpu_uuid(torch.cuda.current_device())
    if uuid not in served:
        return False, f"the daemon does not serve this process's GPU ({uuid})"
    return True, ""


class Memory:
    """Makes caches on the GPU (torch) or in host shared memory (numpy)."""

    def __init__(self, gpu: bool) -> None:
        self.gpu = gpu
        self.rng = np.random.default_rng(2024)
        if gpu:
            import torch
            self.torch = torch

    def cache(self, shape: tuple[int, ...], random: bool) -> list[Any]:
        layers = []
        for _ in range(LAYERS):
            if self.gpu:
                torch = self.torch
                t = torch.zeros(shape, dtype=torch.bfloat16, device="cuda")
                if random:
                    t.copy_(torch.randn(shape, dtype=torch.bfloat16, device="cuda"))
            else:
                t = kvshuttle.shm_zeros(shape, np.float16)
                if random:
                    t[...] = self.rng.standard_normal(shape)
            layers.append(t)
        return layers


def block(cache: list[Any], b: int, layout: str, kv_first: bool) -> Any:
    """Block b of a per-layer cache as [layers, 2, tokens, heads, head_size]."""
    parts = [layer[:, b] if kv_first else layer[b] for layer in cache]
    if isinstance(parts[0], np.ndarray):
        x = np.stack(parts)
        return x if layout == "NHD" else x.transpose(0, 1, 3, 2, 4)
    import torch
    x = torch.stack(parts)
    return x if layout == "NHD" else x.permute(0, 1, 3, 2, 4)


def same(a: Any, b: Any) -> bool:
    """Byte-exact equality of two 16-bit arrays (f16 on the host, bf16 on the GPU)."""
    if isinstance(a, np.ndarray):
        return bool(np.array_equal(np.ascontiguousarray(a).view(np.uint16),
                                   np.ascontiguousarray(b).view(np.uint16)))
    import torch
    return torch.equal(a.contiguous().view(torch.int16), b.contiguous().view(torch.int16))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default=os.environ.get("KVSHUTTLE_TARGET",
                                                           kvshuttle.DEFAULT_TARGET))
    parser.add_argument("--host", action="store_true", help="use host memory even with a GPU")
    args = parser.parse_args()

    client = kvshuttle.connect(args.target)
    info = client.info()
    print(f"kvshuttled {info.version} at {client.target}: "
          f"{len(info.devices)} GPU(s), CPU executor {'on' if info.cpu_executor else 'off'}")
    gpu, why = use_gpu(client, args.host)
    if not gpu:
        print(f"no GPU path ({why}): using host shared memory and the CPU executor")
    memory = Memory(gpu)
    stream = memory.torch.cuda.Stream() if gpu else None
    mismatches = 0

    with client.session("vllm-offload-example") as session:
        worker = memory.cache((2, BLOCKS, TOKENS, HEADS, HEAD_SIZE), random=True)
        cache = session.register_vllm_cache(worker, layout="NHD", kv_first=True)
        print(f"registered the worker cache: {cache.layout}, {cache.num_blocks} blocks, "
              f"{cache.memory} memory")

        pool = session.create_pool(f"vllm-offload-example-{os.getpid()}",
                                   cache.layout.replace("universal"), 64,
                                   memory="device" if gpu else "host")
        try:
            pool_blocks = pool.allocate(len(OFFLOADED))
            result = session.offload(cache, OFFLOADED, pool, pool_blocks, stream=stream
                                     ).result(timeout=60)
            print(f"offloaded blocks {OFFLOADED} → pool blocks {pool_blocks}: {result.bytes} "
                  f"bytes on {result.executor} in {result.run_seconds * 1e6:.0f} us")

            other = memory.cache((BLOCKS, 2, HEADS, TOKENS, HEAD_SIZE), random=False)
            restored = session.register_vllm_cache(other, layout="HND", kv_first=False)
            session.onboard(pool, pool_blocks, restored, RESTORED, stream=stream
                            ).result(timeout=60)
            print(f"onboarded them into an HND cache at blocks {RESTORED}")

            half = memory.cache((2, BLOCKS, TOKENS, HEADS // 2, HEAD_SIZE), random=False)
            rank1 = session.register_vllm_cache(half)
            heads = kvshuttle.Span.tp(rank=1, tp_size=2, num_heads=HEADS)
            session.onboard(pool, pool_blocks, rank1, RESTORED, heads=heads, stream=stream
                            ).result(timeout=60)
            print(f"onboarded heads {heads.pool_offset}..{heads.pool_offset + heads.count} "
                  "into a TP rank's cache (rank 1 of 2)")
            if stream is not None:
                stream.synchronize()

            for src, dst in zip(OFFLOADED, RESTORED):
                want = block(worker, src, "NHD", True)
                if not same(block(other, dst, "HND", False), want):
                    print(f"MISMATCH: HND cache block {dst} != worker block {src}")
                    mismatches += 1
                if not same(block(half, dst, "NHD", True), want[:, :, :, HEADS // 2:]):
                    print(f"MISMATCH: rank cache block {dst} != heads 4..8 of block {src}")
                    mismatches += 1
            pool.free(pool_blocks)
        finally:
            pool.destroy()
    client.close()
    if mismatches:
        print(f"FAILED: {mismatches} mismatching blocks")
        return 1
    print(f"OK: {2 * len(OFFLOADED)} blocks verified byte for byte")
    return 0


if __name__ == "__main__":
    sys.exit(main())

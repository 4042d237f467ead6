"""vLLM-style caches registered in one call, checked against permute baselines through a
universal block set the test owns; offload into / onboard from pools with head and layer
ranges. Host shared memory (CPU executor) and CUDA memory (gpu)."""
from __future__ import annotations

import uuid
import zlib
from typing import Any

import numpy as np
import pytest

import kvshuttle
from baseline import (Shape, bytes_equal, cache_block, describe_difference, permute,
                      stack_to_universal)

S = Shape(nb=6, nl=3, no=2, nt=4, nh=4, hd=16)
DTYPE = "f16"


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def vllm_shape(s: Shape, layout: str, kv_first: bool) -> tuple[int, ...]:
    inner = (s.nt, s.nh, s.hd) if layout == "NHD" else (s.nh, s.nt, s.hd)
    return (2, s.nb, *inner) if kv_first else (s.nb, 2, *inner)


def make_cache(kit, s: Shape, layout: str, kv_first: bool, rng, fill: bool = True) -> list:
    shape = vllm_shape(s, layout, kv_first)
    if fill:
        return [kit.arrays.random(shape, DTYPE, rng) for _ in range(s.nl)]
    caches = [kit.arrays.empty(shape, DTYPE) for _ in range(s.nl)]
    for c in caches:
        c[...] = 0
    return caches


def universal_buffers(kit, s: Shape, count: int) -> tuple[list, kvshuttle.BlockSet]:
    layout = kvshuttle.Layout.of("universal", nl=s.nl, no=s.no, nt=s.nt, nh=s.nh, hd=s.hd,
                                 dtype=DTYPE)
    buffers = [kit.arrays.empty(layout.slot_shape, DTYPE) for _ in range(count)]
    return buffers, kit.session.register_buffers(buffers, layout)


def expected_universal(caches: list, block: int, s: Shape, layout: str, kv_first: bool) -> Any:
    chunks = [(c[o, block] if kv_first else c[block, o]) for c in caches for o in range(s.no)]
    return stack_to_universal(chunks, s, layout)


def assert_same(actual: Any, expected: Any, what: str) -> None:
    assert bytes_equal(actual, expected), f"{what}: {describe_difference(actual, expected)}"


def new_pool(kit, layout: kvshuttle.Layout, blocks: int = 8) -> kvshuttle.Pool:
    return kit.session.create_pool(f"pytest-{uuid.uuid4().hex[:12]}", layout, blocks,
                                   memory=kit.memory)


@pytest.mark.parametrize("kv_first", [True, False], ids=["kv_first", "blocks_first"])
@pytest.mark.parametrize("layout", ["NHD", "HND"])
def test_vllm_cache_maps_every_block_and_slot(kit, layout: str, kv_first: bool) -> None:
    caches = make_cache(kit, S, layout, kv_first, _rng(layout, kv_first))
    cache = kit.session.register_vllm_cache(caches, layout=layout, kv_first=kv_first)
    try:
        assert cache.layout == kvshuttle.Layout.of(layout, nl=S.nl, no=2, nt=S.nt, nh=S.nh,
                                                   hd=S.hd, dtype=DTYPE)
        assert cache.num_blocks == S.nb and cache.memory == kit.memory
        buffers, universal = universal_buffers(kit, S, S.nb)
        order = [4, 0, 5, 2, 1, 3]
        job = kvshuttle.Job(cache, universal, list(zip(order, range(S.nb))))
        result = kit.session.submit([job]).result(timeout=60)
        assert result.bytes == S.nb * cache.layout.block_bytes
        for i, b in enumerate(order):
            assert_same(buffers[i], expected_universal(caches, b, S, layout, kv_first),
                        f"cache block {b}")
        universal.close()
    finally:
        cache.close()
    assert kit.session.list_regions() == []


def test_permuted_view_is_read_from_its_strides(kit) -> None:
    """vLLM's kv_cache_stride_order: logical [2, nb, nt, nh, hd] over HND memory."""
    physical = make_cache(kit, S, "HND", True, _rng("permuted"))
    logical = [permute(c, (0, 1, 3, 2, 4)) for c in physical]
    cache = kit.session.register_vllm_cache(logical, layout="NHD", kv_first=True)
    try:
        assert cache.layout.kind == kvshuttle.LayoutKind.HND
        buffers, universal = universal_buffers(kit, S, 2)
        kit.session.submit([kvshuttle.Job(cache, universal, [(3, 0), (5, 1)])]).result(60)
        assert_same(buffers[0], expected_universal(logical, 3, S, "NHD", True), "block 3")
        assert_same(buffers[1], expected_universal(logical, 5, S, "NHD", True), "block 5")
    finally:
        cache.close()


@pytest.mark.parametrize("rank", [3, 4])
def test_one_chunk_caches(kit, rank: int) -> None:
    """MLA-style caches: [nb, nt, hd] (no 1, nh 1) and [nb, nt, nh, hd] (no 1)."""
    s = Shape(nb=5, nl=2, no=1, nt=4, nh=1 if rank == 3 else 2, hd=24)
    shape = (s.nb, s.nt, s.hd) if rank == 3 else (s.nb, s.nt, s.nh, s.hd)
    caches = [kit.arrays.random(shape, DTYPE, _rng("mla", rank, l)) for l in range(s.nl)]
    cache = kit.session.register_vllm_cache(caches)
    try:
        assert cache.layout.shape == kvshuttle.BlockShape(s.nl, 1, s.nt, s.nh, s.hd)
        buffers, universal = universal_buffers(kit, s, 1)
        kit.session.submit([kvshuttle.Job(cache, universal, [(4, 0)])]).result(60)
        chunks = [c[4].reshape(s.nt, s.nh, s.hd) for c in caches]
        assert_same(buffers[0], stack_to_universal(chunks, s, "NHD"), "block 4")
    finally:
        cache.close()


def test_tp_rank_offloads_its_heads_and_reads_them_back(kit) -> None:
    """A rank holding heads [4, 8) of 8 writes them into a pool; a full-head cache of another
    layout reads exactly those heads back and nothing else."""
    rank_cache_tensors = make_cache(kit, S, "NHD", True, _rng("tp"))  # nh 4
    full = Shape(S.nb, S.nl, S.no, S.nt, 8, S.hd)
    reader_tensors = make_cache(kit, full, "HND", False, None, fill=False)
    rank_cache = kit.session.register_vllm_cache(rank_cache_tensors)
    reader = kit.session.register_vllm_cache(reader_tensors, layout="HND", kv_first=False)
    pool = new_pool(kit, rank_cache.layout.replace("universal", nh=8))
    try:
        ids = pool.allocate(2)
        kit.session.offload(rank_cache, [1, 4], pool, ids,
                            heads=kvshuttle.Span.tp(rank=1, tp_size=2, num_heads=8)).result(60)
        kit.session.onboard(pool, ids, reader, [0, 5],
                            heads=kvshuttle.Span(cache_offset=4, pool_offset=4, count=4)
                            ).result(60)
        for src_block, dst_block in ((1, 0), (4, 5)):
            got = cache_block(reader_tensors, dst_block, "HND", False)  # [nl, no, nt, 8, hd]
            want = cache_block(rank_cache_tensors, src_block, "NHD", True)
            assert_same(got[:, :, :, 4:], want, f"heads 4..8 of block {dst_block}")
            assert not got[:, :, :, :4].any(), "heads 0..4 must stay untouched (zero)"
        untouched = [b for b in range(S.nb) if b not in (0, 5)]
        for b in untouched:
            assert not cache_block(reader_tensors, b, "HND", False).any(), f"block {b}"
    finally:
        pool.destroy()
        rank_cache.close()
        reader.close()


def test_layer_range_moves_only_those_layers(kit) -> None:
    source_tensors = make_cache(kit, S, "HND", True, _rng("layers"))
    target_tensors = make_cache(kit, S, "NHD", True, None, fill=False)
    source = kit.session.register_vllm_cache(source_tensors, layout="HND")
    target = kit.session.register_vllm_cache(target_tensors, layout="NHD")
    pool = new_pool(kit, source.layout.replace("universal"))
    try:
        ids = pool.allocate(1)
        kit.session.offload(source, [2], pool, ids, layers=slice(1, 3)).result(60)
        kit.session.onboard(pool, ids, target, [3], layers=(1, 1, 2)).result(60)
        got = cache_block(target_tensors, 3, "NHD", True)
        want = cache_block(source_tensors, 2, "HND", True)
        assert_same(got[1:3], want[1:3], "layers 1..3")
        assert not got[0].any(), "layer 0 must stay untouched"
    finally:
        pool.destroy()
        source.close()
        target.close()


def test_pool_is_shared_by_name_across_sessions(kit) -> None:
    caches = make_cache(kit, S, "NHD", True, _rng("shared"))
    cache = kit.session.register_vllm_cache(caches)
    pool = new_pool(kit, cache.layout.replace("universal"))
    other_client = kit.daemon.connect()
    other = other_client.session("pytest-other")
    try:
        ids = pool.allocate(1)
        kit.session.offload(cache, [5], pool.name, ids).result(60)
        copy_tensors = make_cache(kit, S, "NHD", True, None, fill=False)
        copy = other.register_vllm_cache(copy_tensors)
        handle = other.pool(pool.name)
        assert handle.layout == pool.layout and handle.blocks_in_use == 1
        other.onboard(handle, ids, copy, [0]).result(60)
        assert_same(cache_block(copy_tensors, 0, "NHD", True),
                    cache_block(caches, 5, "NHD", True), "block 5 through the pool")
    finally:
        other.close()
        other_client.close()
        pool.destroy()
        cache.close()

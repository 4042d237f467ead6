"""The seed's four functions through the daemon, byte for byte against stack/permute baselines,
on host shared memory (CPU executor) and on CUDA memory (gpu), for every layout, dtype and
shape of baseline.SHAPES."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

import kvshuttle
from arrays import GPU_DTYPES, HOST_DTYPES
from baseline import (SHAPES, Shape, bytes_equal, chunk_shape, describe_difference,
                      operational_to_stack, stack_to_operational, stack_to_universal,
                      universal_to_stack)

LAYOUTS = ["NHD", "HND"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each tier sweeps its own dtypes: (kit, dtype) pairs instead of kit × dtype."""
    if "dtype" in metafunc.fixturenames:
        pairs = [pytest.param("host", d, id=f"host-{d}") for d in HOST_DTYPES] + [
            pytest.param("cuda", d, id=f"cuda-{d}", marks=pytest.mark.gpu) for d in GPU_DTYPES]
        metafunc.parametrize(("kit", "dtype"), pairs, indirect=["kit"], scope="module")


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def _stacks(kit, s: Shape, layout: str, dtype: str, rng, fill: bool) -> list[list]:
    make = kit.arrays.random if fill else (lambda shape, d, _: kit.arrays.empty(shape, d))
    return [[make(chunk_shape(s, layout), dtype, rng) for _ in range(s.nl * s.no)]
            for _ in range(s.nb)]


def _buffers(kit, s: Shape, shape: tuple[int, ...], dtype: str, rng, fill: bool) -> list:
    make = kit.arrays.random if fill else (lambda sh, d, _: kit.arrays.empty(sh, d))
    return [make(shape, dtype, rng) for _ in range(s.nb)]


def _assert_same(actual, expected, what: str) -> None:
    assert bytes_equal(actual, expected), f"{what}: {describe_difference(actual, expected)}"


@pytest.mark.parametrize("shape", SHAPES.keys())
@pytest.mark.parametrize("layout", LAYOUTS)
class TestSeedFunctions:
    def test_block_to_universal(self, kit, layout: str, dtype: str, shape: str) -> None:
        s, rng = SHAPES[shape], _rng("b2u", layout, dtype, shape)
        blocks = _stacks(kit, s, layout, dtype, rng, fill=True)
        universals = _buffers(kit, s, (s.nh, s.nl, s.no, s.nt, s.hd), dtype, rng, fill=True)
        assert kvshuttle.block_to_universal(blocks, universals, layout,
                                            session=kit.session) is None
        for i in range(s.nb):
            _assert_same(universals[i], stack_to_universal(blocks[i], s, layout),
                         f"universals[{i}]")

    def test_universal_to_block(self, kit, layout: str, dtype: str, shape: str) -> None:
        s, rng = SHAPES[shape], _rng("u2b", layout, dtype, shape)
        universals = _buffers(kit, s, (s.nh, s.nl, s.no, s.nt, s.hd), dtype, rng, fill=True)
        blocks = _stacks(kit, s, layout, dtype, rng, fill=True)
        kvshuttle.universal_to_block(universals, blocks, layout, session=kit.session)
        for i in range(s.nb):
            expected = universal_to_stack(universals[i], s, layout)
            for j in range(s.nl * s.no):
                _assert_same(blocks[i][j], expected[j], f"blocks[{i}][{j}]")

    def test_block_to_operational(self, kit, layout: str, dtype: str, shape: str) -> None:
        s, rng = SHAPES[shape], _rng("b2o", layout, dtype, shape)
        blocks = _stacks(kit, s, layout, dtype, rng, fill=True)
        operationals = _buffers(kit, s, (s.nl, s.no, s.nt * s.nh * s.hd), dtype, rng, True)
        kvshuttle.block_to_operational(blocks, operationals, layout=layout,
                                       session=kit.session)
        for i in range(s.nb):
            _assert_same(operationals[i], stack_to_operational(blocks[i], s),
                         f"operationals[{i}]")

    def test_operational_to_block(self, kit, layout: str, dtype: str, shape: str) -> None:
        s, rng = SHAPES[shape], _rng("o2b", layout, dtype, shape)
        operationals = _buffers(kit, s, (s.nl, s.no, s.nt * s.nh * s.hd), dtype, rng, True)
        blocks = _stacks(kit, s, layout, dtype, rng, fill=True)
        kvshuttle.operational_to_block(operationals, blocks, layout=layout,
                                       session=kit.session)
        for i in range(s.nb):
            expected = operational_to_stack(operationals[i], s, layout)
            for j in range(s.nl * s.no):
                _assert_same(blocks[i][j], expected[j], f"blocks[{i}][{j}]")


@pytest.mark.parametrize("backend", ["auto", "kernel", "batch", "async"])
def test_backends_convert_the_same(kit, backend: str) -> None:
    """Every backend name reaches the daemon and gives the same bytes (the CPU executor
    ignores it; on a GPU each one runs)."""
    s, rng = SHAPES["llama"], _rng("backend", backend)
    blocks = _stacks(kit, s, "NHD", "f16", rng, fill=True)
    operationals = _buffers(kit, s, (s.nl, s.no, s.nt * s.nh * s.hd), "f16", rng, True)
    kvshuttle.block_to_operational(blocks, operationals, backend, session=kit.session)
    for i in range(s.nb):
        _assert_same(operationals[i], stack_to_operational(blocks[i], s), f"operationals[{i}]")


def test_calls_leave_nothing_registered(kit) -> None:
    """Registrations are per call: after a call the session holds no region or block set."""
    s, rng = SHAPES["seed"], _rng("leak")
    blocks = _stacks(kit, s, "NHD", "f32", rng, fill=True)
    universals = _buffers(kit, s, (s.nh, s.nl, s.no, s.nt, s.hd), "f32", rng, fill=False)
    for _ in range(3):
        kvshuttle.block_to_universal(blocks, universals, session=kit.session)
    assert kit.session.list_regions() == []
    assert kit.session.list_block_sets() == []


def test_chunks_sharing_one_allocation_share_one_region(kit) -> None:
    """Chunks that are views of one tensor are lent as one region, and still land right."""
    s, rng = SHAPES["nl3"], _rng("views")
    whole = kit.arrays.random((s.nb, s.nl * s.no, *chunk_shape(s, "NHD")), "f16", rng)
    blocks = [[whole[b, c] for c in range(s.nl * s.no)] for b in range(s.nb)]
    universals = _buffers(kit, s, (s.nh, s.nl, s.no, s.nt, s.hd), "f16", rng, fill=False)
    seen_regions: list[int] = []
    session = kit.session
    rpc = session.rpc  # the registrations go through the session's SessionRpc
    original = rpc.register_memfd if kit.memory == "host" else rpc.register_cuda_ipc

    def counting(*args, **kwargs):
        region = original(*args, **kwargs)
        seen_regions.append(region.region_id)
        return region

    setattr(rpc, original.__name__, counting)
    try:
        kvshuttle.block_to_universal(blocks, universals, session=session)
    finally:
        delattr(rpc, original.__name__)
    for i in range(s.nb):
        _assert_same(universals[i], stack_to_universal(blocks[i], s, "NHD"), f"universals[{i}]")
    # One region for `whole`, at most one more per allocation holding the universals.
    assert 1 <= len(seen_regions) <= 1 + s.nb


def test_default_session_comes_from_kvshuttle_target(kit, monkeypatch) -> None:
    """Without session=, the call opens the default session at $KVSHUTTLE_TARGET."""
    monkeypatch.setenv("KVSHUTTLE_TARGET", kit.daemon.target)
    kvshuttle.set_default_session(None)
    try:
        s, rng = SHAPES["seed"], _rng("default")
        blocks = _stacks(kit, s, "HND", "f32", rng, fill=True)
        universals = _buffers(kit, s, (s.nh, s.nl, s.no, s.nt, s.hd), "f32", rng, False)
        kvshuttle.block_to_universal(blocks, universals, "HND")
        session = kvshuttle.default_session()
        assert session.client.target == kit.daemon.target
        for i in range(s.nb):
            _assert_same(universals[i], stack_to_universal(blocks[i], s, "HND"),
                         f"universals[{i}]")
    finally:
        kvshuttle.default_session().close()
        kvshuttle.set_default_session(None)

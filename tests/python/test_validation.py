"""Every argument check of the seed functions, before any RPC: the default session points at a
socket nobody serves, so an error that is not the expected TypeError / ValueError (say, a
connection attempt) fails the test. Host arrays are plain numpy unless the check needs
shared memory; the torch-only checks (devices, CUDA) run where torch is installed."""
from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np
import pytest

import kvshuttle
from baseline import SHAPES, Shape, chunk_shape

S = SHAPES["seed"]  # nb 2, nl 2, no 2, nt 4, nh 3, hd 5


@pytest.fixture(autouse=True)
def no_daemon(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("KVSHUTTLE_TARGET", f"unix:{tmp_path}/nobody.sock")
    kvshuttle.set_default_session(None)


def stacks(s: Shape = S, layout: str = "NHD", dtype: Any = np.float16,
           make: Callable[..., Any] = np.zeros) -> list[list[Any]]:
    return [[make(chunk_shape(s, layout), dtype) for _ in range(s.nl * s.no)]
            for _ in range(s.nb)]


def universals(s: Shape = S, dtype: Any = np.float16,
               make: Callable[..., Any] = np.zeros) -> list[Any]:
    return [make((s.nh, s.nl, s.no, s.nt, s.hd), dtype) for _ in range(s.nb)]


def operationals(s: Shape = S, dtype: Any = np.float16,
                 make: Callable[..., Any] = np.zeros) -> list[Any]:
    return [make((s.nl, s.no, s.nt * s.nh * s.hd), dtype) for _ in range(s.nb)]


def raises(kind: type[Exception], pattern: str, call: Callable[..., Any], *args: Any,
           **kwargs: Any) -> None:
    """`call` raises exactly `kind` (not a daemon error subclass) with a message matching
    `pattern`."""
    with pytest.raises(kind, match=pattern) as caught:
        call(*args, **kwargs)
    assert type(caught.value) is kind, f"{type(caught.value).__name__}: {caught.value}"


TO_UNIVERSAL = [kvshuttle.block_to_universal, kvshuttle.universal_to_block]
TO_OPERATIONAL = [kvshuttle.block_to_operational, kvshuttle.operational_to_block]


def call(fn: Callable[..., Any], blocks: Any, buffers: Any, **kwargs: Any) -> Any:
    """Calls a seed function with (stacks, buffers) in its own argument order."""
    if fn in (kvshuttle.block_to_universal, kvshuttle.block_to_operational):
        return fn(blocks, buffers, **kwargs)
    return fn(buffers, blocks, **kwargs)


ALL = TO_UNIVERSAL + TO_OPERATIONAL


def buffers_for(fn: Callable[..., Any], **kwargs: Any) -> list[Any]:
    return universals(**kwargs) if fn in TO_UNIVERSAL else operationals(**kwargs)


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
class TestContainers:
    def test_empty_batch_is_a_no_op_without_any_rpc(self, fn) -> None:
        # A connection attempt would raise UnavailableError: nothing serves the target.
        assert call(fn, [], []) is None
        assert call(fn, (), ()) is None

    def test_blocks_must_be_a_list(self, fn) -> None:
        raises(TypeError, r"^blocks: expected a list .* got ndarray", call, fn,
               np.zeros((2, 4)), buffers_for(fn))

    def test_each_block_must_be_a_list(self, fn) -> None:
        blocks = stacks()
        blocks[1] = {"chunks": 1}
        raises(TypeError, r"^blocks\[1\]: expected a list of nl\*no chunk tensors, got dict",
               call, fn, blocks, buffers_for(fn))

    def test_chunks_must_be_tensors(self, fn) -> None:
        blocks = stacks()
        blocks[0][2] = 7
        raises(TypeError, r"^blocks\[0\]\[2\]: expected a torch.Tensor or numpy.ndarray, got "
               r"builtins.int", call, fn, blocks, buffers_for(fn))

    def test_buffers_must_be_a_list(self, fn) -> None:
        name = "universals" if fn in TO_UNIVERSAL else "operationals"
        raises(TypeError, rf"^{name}: expected a list of tensors", call, fn, stacks(),
               np.zeros(3))

    def test_buffers_must_be_tensors(self, fn) -> None:
        name = "universals" if fn in TO_UNIVERSAL else "operationals"
        buffers = buffers_for(fn)
        buffers[1] = "x"
        raises(TypeError, rf"^{name}\[1\]: expected a torch.Tensor or numpy.ndarray, got "
               r"builtins.str", call, fn, stacks(), buffers)

    def test_block_counts_must_match(self, fn) -> None:
        name = "universals" if fn in TO_UNIVERSAL else "operationals"
        raises(ValueError, rf"^blocks has 2 blocks but {name} has 1", call, fn, stacks(),
               buffers_for(fn)[:1])

    def test_every_block_has_the_same_chunk_count(self, fn) -> None:
        blocks = stacks()
        blocks[1] = blocks[1][:3]
        raises(ValueError, r"^blocks\[1\]: 3 chunks, but blocks\[0\] has 4", call, fn, blocks,
               buffers_for(fn))

    def test_blocks_need_chunks(self, fn) -> None:
        raises(ValueError, r"^blocks\[0\]: no chunks", call, fn, [[], []], buffers_for(fn))

    def test_chunk_count_must_be_nl_times_no(self, fn) -> None:
        blocks = [b[:2] for b in stacks()]
        raises(ValueError, r"^blocks\[0\]: 2 chunks; .* nl=2, no=2, so each block needs "
               r"nl\*no = 4 chunks", call, fn, blocks, buffers_for(fn))

    def test_dtypes_must_match(self, fn) -> None:
        blocks = stacks()
        blocks[1][3] = np.zeros(chunk_shape(S, "NHD"), np.float32)
        raises(ValueError, r"^blocks\[1\]\[3\]: dtype float32, but blocks\[0\]\[0\] is float16",
               call, fn, blocks, buffers_for(fn))

    def test_buffer_dtype_must_match(self, fn) -> None:
        name = "universals" if fn in TO_UNIVERSAL else "operationals"
        raises(ValueError, rf"^{name}\[0\]: dtype float64, but blocks\[0\]\[0\] is float16",
               call, fn, stacks(), buffers_for(fn, dtype=np.float64))

    def test_unsupported_dtype(self, fn) -> None:
        raises(ValueError, r"^blocks\[0\]\[0\]: dtype int32 is not supported; supported: f16, "
               r"bf16, f32, f64, fp8_e4m3, fp8_e5m2, int8, uint8", call, fn,
               stacks(dtype=np.int32), buffers_for(fn, dtype=np.int32))

    def test_chunks_must_be_contiguous(self, fn) -> None:
        blocks = stacks()
        wide = np.zeros((S.nt, S.nh, S.hd * 2), np.float16)
        blocks[1][0] = wide[:, :, ::2]
        raises(ValueError, r"^blocks\[1\]\[0\]: not contiguous \(shape \(4, 3, 5\), strides "
               r"\(30, 10, 2\) elements\)", call, fn, blocks, buffers_for(fn))

    def test_buffers_must_be_contiguous(self, fn) -> None:
        name = "universals" if fn in TO_UNIVERSAL else "operationals"
        buffers = buffers_for(fn)
        buffers[1] = np.asfortranarray(buffers[1])
        raises(ValueError, rf"^{name}\[1\]: not contiguous", call, fn, stacks(), buffers)

    def test_buffer_shapes_must_agree(self, fn) -> None:
        name = "universals" if fn in TO_UNIVERSAL else "operationals"
        buffers = buffers_for(fn)
        bigger = Shape(S.nb, S.nl, S.no, S.nt, S.nh + 1, S.hd) if fn in TO_UNIVERSAL else S
        buffers[1] = (universals(bigger)[0] if fn in TO_UNIVERSAL
                      else np.zeros((S.nl, S.no, 7), np.float16))
        raises(ValueError, rf"^{name}\[1\]: shape \(.*\); expected \(.*\)", call, fn, stacks(),
               buffers)

    def test_host_arrays_must_be_kvshuttle_shared_memory(self, fn) -> None:
        # Shapes and dtypes right, memory plain numpy: the daemon could not map it.
        raises(ValueError, r"^blocks\[0\]\[0\]: host memory at 0x[0-9a-f]+ \(120 bytes\) is not "
               r"kvshuttle shared memory", call, fn, stacks(), buffers_for(fn))

    def test_one_array_outside_shared_memory_is_named(self, fn) -> None:
        blocks = stacks(make=kvshuttle.shm_empty)
        buffers = universals(make=kvshuttle.shm_empty) if fn in TO_UNIVERSAL else operationals(
            make=kvshuttle.shm_empty)
        buffers[1] = np.zeros_like(buffers[1])
        name = "universals" if fn in TO_UNIVERSAL else "operationals"
        raises(ValueError, rf"^{name}\[1\]: host memory .* is not kvshuttle shared memory",
               call, fn, blocks, buffers)

    def test_unknown_backend(self, fn) -> None:
        raises(ValueError, r"^backend: 'fastest'; allowed: auto, kernel, batch, async, staged",
               call, fn, stacks(), buffers_for(fn), backend="fastest")

    @pytest.mark.parametrize("layout", ["XYZ", "universal", "operational_nhd"])
    def test_layout_must_be_a_stack(self, fn, layout: str) -> None:
        raises(ValueError, r"^layout: ", call, fn, stacks(), buffers_for(fn), layout=layout)


@pytest.mark.parametrize("fn", TO_UNIVERSAL, ids=lambda f: f.__name__)
class TestUniversalShapes:
    def test_universal_needs_five_dimensions(self, fn) -> None:
        raises(ValueError, r"^universals\[0\]: shape \(3, 2, 2, 20\); expected 5 dimensions "
               r"\[nh, nl, no, nt, hd\]", call, fn, stacks(),
               [np.zeros((3, 2, 2, 20), np.float16)] * 2)

    def test_chunk_shape_names_layout_and_expected_shape(self, fn) -> None:
        blocks = stacks()
        blocks[1][2] = np.zeros((S.nh, S.nt, S.hd), np.float16)  # HND chunk in an NHD call
        raises(ValueError, r"^blocks\[1\]\[2\]: shape \(3, 4, 5\); expected \(4, 3, 5\) \(NHD "
               r"chunk of nhd\[nl=2, no=2, nt=4, nh=3, hd=5\] f16\)", call, fn, blocks,
               universals())

    def test_hnd_chunks_are_checked_as_hnd(self, fn) -> None:
        raises(ValueError, r"^blocks\[0\]\[0\]: shape \(4, 3, 5\); expected \(3, 4, 5\) \(HND",
               call, fn, stacks(layout="NHD"), universals(), layout="HND")

    def test_zero_sized_dimension(self, fn) -> None:
        empty = Shape(S.nb, S.nl, S.no, S.nt, 0, S.hd)
        raises(ValueError, r"^universals\[0\]: shape \[nh, nl, no, nt, hd\] = .* has a "
               r"dimension outside \[1, 2\*\*32\)", call, fn, stacks(empty), universals(empty))


@pytest.mark.parametrize("fn", TO_OPERATIONAL, ids=lambda f: f.__name__)
class TestOperationalShapes:
    def test_operational_needs_three_dimensions(self, fn) -> None:
        raises(ValueError, r"^operationals\[0\]: shape \(2, 2, 4, 15\); expected 3 dimensions "
               r"\[nl, no, nt\*nh\*hd\]", call, fn, stacks(),
               [np.zeros((2, 2, 4, 15), np.float16)] * 2)

    def test_chunks_need_three_dimensions(self, fn) -> None:
        blocks = [[np.zeros((S.nt, S.nh * S.hd), np.float16)] * 4] * 2
        raises(ValueError, r"^blocks\[0\]\[0\]: shape \(4, 15\); expected 3 dimensions", call,
               fn, blocks, operationals())

    def test_inner_must_be_nt_nh_hd(self, fn) -> None:
        raises(ValueError, r"^operationals\[0\]: shape \(2, 2, 61\); its last dimension must be "
               r"nt\*nh\*hd = 60", call, fn, stacks(),
               [np.zeros((2, 2, 61), np.float16)] * 2)

    def test_operational_layers_times_outer_must_match_chunks(self, fn) -> None:
        raises(ValueError, r"^blocks\[0\]: 4 chunks; operationals\[0\] of shape \(3, 2, 60\) "
               r"has nl=3, no=2", call, fn, stacks(), [np.zeros((3, 2, 60), np.float16)] * 2)


def test_stream_is_for_cuda_tensors_only() -> None:
    blocks = stacks(make=kvshuttle.shm_empty)
    raises(ValueError, r"^stream: only for CUDA tensors", kvshuttle.block_to_universal, blocks,
           universals(make=kvshuttle.shm_empty), stream=object())


def test_validation_happens_before_connecting() -> None:
    """A valid call does try the (unserved) default target: the checks above passed first."""
    blocks = stacks(make=kvshuttle.shm_empty)
    with pytest.raises(kvshuttle.UnavailableError, match="cannot connect to unix:"):
        kvshuttle.block_to_universal(blocks, universals(make=kvshuttle.shm_empty))


# ---------------------------------------------------------------------------------------------
# torch-specific checks (host side; the CUDA ones are in test_cuda_checks.py)


def test_torch_dtypes_map_to_daemon_types() -> None:
    torch = pytest.importorskip("torch", reason="torch dtype mapping needs torch")
    lookup = kvshuttle.dtypes.lookup
    assert lookup(torch.float16) is kvshuttle.dtypes.F16
    assert lookup(torch.bfloat16) is kvshuttle.dtypes.BF16
    assert lookup(torch.float32) is kvshuttle.dtypes.F32
    assert lookup(torch.float64) is kvshuttle.dtypes.F64
    assert lookup(torch.float8_e4m3fn) is kvshuttle.dtypes.FP8_E4M3
    assert lookup(torch.float8_e5m2) is kvshuttle.dtypes.FP8_E5M2
    assert lookup(torch.int8) is kvshuttle.dtypes.INT8
    assert lookup(torch.uint8) is kvshuttle.dtypes.UINT8
    assert lookup(torch.int32) is None
    assert lookup(torch.float8_e4m3fnuz) is None  # a different encoding: refused


def test_torch_cpu_tensors_outside_shared_memory_are_refused() -> None:
    torch = pytest.importorskip("torch", reason="needs torch")
    blocks = stacks(make=lambda shape, _: torch.zeros(shape, dtype=torch.bfloat16))
    unis = universals(make=lambda shape, _: torch.zeros(shape, dtype=torch.bfloat16))
    raises(ValueError, r"^blocks\[0\]\[0\]: host memory .* is not kvshuttle shared memory",
           kvshuttle.block_to_universal, blocks, unis)


def test_torch_non_contiguous_chunk_is_refused() -> None:
    torch = pytest.importorskip("torch", reason="needs torch")
    blocks = stacks(make=lambda shape, _: torch.zeros(shape, dtype=torch.float16))
    blocks[0][1] = torch.zeros((S.nh, S.nt, S.hd), dtype=torch.float16).transpose(0, 1)
    unis = universals(make=lambda shape, _: torch.zeros(shape, dtype=torch.float16))
    raises(ValueError, re.escape("blocks[0][1]: not contiguous (shape (4, 3, 5), strides "
                                 "(5, 20, 1) elements)"), kvshuttle.block_to_universal, blocks,
           unis)


def test_torch_and_numpy_dtype_names_are_compared() -> None:
    torch = pytest.importorskip("torch", reason="needs torch")
    blocks = stacks()
    unis = universals(make=lambda shape, _: torch.zeros(shape, dtype=torch.bfloat16))
    raises(ValueError, r"^universals\[0\]: dtype bfloat16, but blocks\[0\]\[0\] is float16",
           kvshuttle.block_to_universal, blocks, unis)

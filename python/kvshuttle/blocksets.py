"""Block sets: blocks of one layout over registered memory.

Ways to describe them from arrays:
- `vllm_cache(...)`: per-layer vLLM cache tensors [2, num_blocks, nt, nh, hd] (kv_first),
  [num_blocks, 2, nt, nh, hd], their HND forms ([.., nh, nt, hd]) and MLA forms
  ([num_blocks, nt, nh, hd] / [num_blocks, nt, hd]) as one *strided* block set: per slot
  (layer, K/V) a base address, one block stride for all. The chunk's physical order (NHD or
  HND) is read from the strides, so a permuted view (vLLM's kv_cache_stride_order) works too.
- `explicit_block_set(...)` over `describe_stacks(...)`: the seed's list (blocks) of lists
  (nl*no chunks) as an *explicit* table; over `describe_buffers(...)`: one buffer per block
  (operational / universal). `table_block_set(...)` does the same over existing placements.

The BlockSet object keeps its MemoryRegistration (and so the arrays) alive until `close()`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from kvshuttle import dtypes, shm
from kvshuttle._stubs import pb
from kvshuttle.layout import BlockShape, Layout, LayoutKind
from kvshuttle.regions import (MemoryRegistration, Placement, not_shared_message,
                               register_memory)
from kvshuttle.rpc import SessionRpc
from kvshuttle.tensors import TensorInfo, check_contiguous, check_dtype, describe


class BlockSet:
    """A registered block set: id, layout, number of blocks, memory kind, the calls of its
    session (`rpc`) and (when the client registered the memory itself) the registration it
    owns. Closing it releases the block set and that registration."""

    def __init__(self, rpc: SessionRpc, message: pb.BlockSet,
                 registration: MemoryRegistration | None = None) -> None:
        self.rpc = rpc
        self.block_set_id: int = message.block_set_id
        self.name: str = message.name
        self.layout = Layout.from_proto(message.layout)
        self.num_blocks: int = message.num_blocks
        self.memory = "device" if message.memory == pb.MEMORY_DEVICE else "host"
        self.gpu_uuid: str = message.gpu_uuid
        self.registration = registration
        self.closed = False

    @property
    def device_index(self) -> int:
        return self.registration.device_index if self.registration else 0

    def close(self) -> None:
        """Unregisters the block set and the regions registered for it (idempotent)."""
        if self.closed:
            return
        self.closed = True
        if self.registration is not None:
            self.registration.release()  # the block set goes with its regions
        else:
            self.rpc.unregister_block_set(self.block_set_id)

    def __enter__(self) -> BlockSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(id={self.block_set_id}, {self.layout}, "
                f"num_blocks={self.num_blocks}, memory={self.memory})")


class KVCache(BlockSet):
    """A vLLM-style cache registered as one strided block set; `tensors` are its layers."""

    def __init__(self, rpc: SessionRpc, message: pb.BlockSet,
                 registration: MemoryRegistration, tensors: list[Any]) -> None:
        super().__init__(rpc, message, registration)
        self.tensors = tensors


# ---------------------------------------------------------------------------------------------
# Common checks


def same_place(infos: Sequence[TensorInfo], whats: Sequence[str]) -> None:
    """ValueError unless every array is on the same device as the first; host arrays must be
    in kvshuttle shared memory (checked at registration)."""
    first = infos[0]
    for info, what in zip(infos, whats):
        if info.device != first.device:
            raise ValueError(f"{what}: on {info.device}, but {whats[0]} is on {first.device}; "
                             "all tensors of a call must be on one device")


def check_registrable(infos: Sequence[TensorInfo], whats: Sequence[str]) -> None:
    """ValueError for a host array outside kvshuttle shared memory (the daemon maps only the
    memfd objects this client lends it); CUDA tensors are checked when they are shared."""
    for info, what in zip(infos, whats):
        if not info.is_cuda and shm.find(info.data_ptr, info.extent_bytes) is None:
            raise ValueError(not_shared_message(info, what))


def same_dtype(infos: Sequence[TensorInfo], whats: Sequence[str]) -> dtypes.DType:
    """The common DType; ValueError naming the first array that differs or is unsupported."""
    first = check_dtype(infos[0], whats[0])
    for info, what in zip(infos, whats):
        if info.dtype_name != infos[0].dtype_name:
            raise ValueError(f"{what}: dtype {info.dtype_name}, but {whats[0]} is "
                             f"{infos[0].dtype_name}; all tensors must have one dtype")
    return first


# ---------------------------------------------------------------------------------------------
# vLLM caches → strided placement


@dataclass(frozen=True)
class VllmGeometry:
    """How one per-layer vLLM tensor maps to blocks: shape, element strides of the outer (K/V)
    and block axes, and the chunk's physical kind."""

    kind: LayoutKind  # NHD or HND: the chunk's order in memory
    num_blocks: int
    no: int
    nt: int
    nh: int
    hd: int
    outer_stride: int  # elements between K and V of one block (0 when no == 1)
    block_stride: int  # elements between blocks


def vllm_geometry(info: TensorInfo, layout: LayoutKind, kv_first: bool,
                  what: str) -> VllmGeometry:
    """Reads a per-layer cache tensor. Its dims are, by rank: 5 = [2, nb, a, b, hd] (kv_first)
    or [nb, 2, a, b, hd]; 4 = [nb, a, b, hd] (one outer chunk); 3 = [nb, nt, hd] (MLA: no 1,
    nh 1); (a, b) = (nt, nh) for layout NHD, (nh, nt) for HND. The inner three dims must be one
    contiguous chunk in NHD or HND order; the outer strides may be anything ≥ 0."""
    shape, strides = info.shape, info.strides
    if len(shape) == 5:
        o_axis, b_axis = (0, 1) if kv_first else (1, 0)
        if shape[o_axis] != 2:
            raise ValueError(f"{what}: shape {shape}; the K/V axis ({o_axis}) must be 2 for "
                             f"kv_first={kv_first} (shape [2, num_blocks, ...] when kv_first, "
                             "[num_blocks, 2, ...] otherwise)")
        no, outer_stride = 2, strides[o_axis]
        inner, inner_strides = shape[2:], strides[2:]
        num_blocks, block_stride = shape[b_axis], strides[b_axis]
    elif len(shape) == 4:
        no, outer_stride = 1, 0
        num_blocks, block_stride = shape[0], strides[0]
        inner, inner_strides = shape[1:], strides[1:]
    elif len(shape) == 3:
        no, outer_stride = 1, 0
        num_blocks, block_stride = shape[0], strides[0]
        inner, inner_strides = (shape[1], 1, shape[2]), (strides[1], shape[2], strides[2])
        layout = LayoutKind.NHD
    else:
        raise ValueError(f"{what}: shape {shape} has rank {len(shape)}; a vLLM layer cache is "
                         "[2, num_blocks, nt, nh, hd] / [num_blocks, 2, nt, nh, hd] (rank 5), "
                         "[num_blocks, nt, nh, hd] (rank 4) or [num_blocks, nt, hd] (rank 3)")
    if layout == LayoutKind.NHD:
        (nt, nh, hd), (t_stride, h_stride, d_stride) = inner, inner_strides
    else:
        (nh, nt, hd), (h_stride, t_stride, d_stride) = inner, inner_strides
    if min(num_blocks, nt, nh, hd) < 1:
        raise ValueError(f"{what}: shape {shape} has an empty dimension")
    is_nhd = d_stride == 1 and (nh == 1 or h_stride == hd) and (nt == 1 or t_stride == nh * hd)
    is_hnd = d_stride == 1 and (nt == 1 or t_stride == hd) and (nh == 1 or h_stride == nt * hd)
    if not (is_nhd or is_hnd):
        raise ValueError(f"{what}: strides {strides} (elements) of shape {shape}: each "
                         "(layer, K/V, block) chunk must be contiguous in NHD ([nt, nh, hd]) or "
                         "HND ([nh, nt, hd]) order")
    chunk_elements = nt * nh * hd
    if outer_stride < 0 or block_stride < 0:
        raise ValueError(f"{what}: negative strides {strides} are not supported")
    if block_stride < chunk_elements and num_blocks > 1:
        raise ValueError(f"{what}: block stride {block_stride} elements is smaller than a "
                         f"chunk ({chunk_elements}): blocks would overlap")
    physical = layout if (is_nhd and is_hnd) else (LayoutKind.NHD if is_nhd else LayoutKind.HND)
    return VllmGeometry(physical, num_blocks, no, nt, nh, hd, outer_stride, block_stride)


def vllm_cache(rpc: SessionRpc, kv_caches: Sequence[Any], layout: str = "NHD",
               kv_first: bool = True, name: str = "") -> KVCache:
    """Registers per-layer vLLM cache tensors as one strided block set (see vllm_geometry)."""
    if not isinstance(kv_caches, (list, tuple)) or not kv_caches:
        raise TypeError("kv_caches: expected a non-empty list of per-layer tensors, got "
                        f"{type(kv_caches).__name__}"
                        f"{'' if not isinstance(kv_caches, (list, tuple)) else ' (empty)'}")
    kind = LayoutKind.parse(layout)
    if not kind.is_stack:
        raise ValueError(f"layout: {layout!r}; a vLLM cache is 'NHD' or 'HND'")
    whats = [f"kv_caches[{i}]" for i in range(len(kv_caches))]
    infos = [describe(t, w) for t, w in zip(kv_caches, whats)]
    same_place(infos, whats)
    dtype = same_dtype(infos, whats)
    geometry = vllm_geometry(infos[0], kind, kv_first, whats[0])
    for info, what in zip(infos[1:], whats[1:]):
        other = vllm_geometry(info, kind, kv_first, what)
        if other != geometry:
            raise ValueError(f"{what}: shape {info.shape} / strides {info.strides} differ from "
                             f"kv_caches[0] ({infos[0].shape} / {infos[0].strides}); all layers "
                             "must have one shape and layout")
    check_registrable(infos, whats)
    block_layout = Layout(geometry.kind,
                          BlockShape(len(infos), geometry.no, geometry.nt, geometry.nh,
                                     geometry.hd), dtype)
    registration = register_memory(rpc, infos, whats, name)
    try:
        itemsize = dtype.itemsize
        strided = pb.StridedPlacement(block_stride=geometry.block_stride * itemsize)
        for placement in registration.placements:
            for o in range(geometry.no):
                strided.slots.append(placement.to_proto(o * geometry.outer_stride * itemsize))
        message = rpc.register_block_set_raw(block_layout, geometry.num_blocks,
                                             strided=strided, name=name)
    except BaseException:
        registration.release()
        raise
    return KVCache(rpc, message, registration, list(kv_caches))


# ---------------------------------------------------------------------------------------------
# Explicit tables (seed-style arguments)


def table_block_set(rpc: SessionRpc, layout: Layout, placements: Sequence[Placement],
                    name: str = "", registration: MemoryRegistration | None = None) -> BlockSet:
    """Registers an explicit block set of `layout` whose (block, slot) addresses are
    `placements`, block-major (layout.slots per block)."""
    table = pb.ExplicitPlacement(addresses=[p.to_proto() for p in placements])
    message = rpc.register_block_set_raw(layout, len(placements) // layout.slots,
                                         explicit=table, name=name)
    return BlockSet(rpc, message, registration)


def explicit_block_set(rpc: SessionRpc, layout: Layout, infos: Sequence[TensorInfo],
                       whats: Sequence[str], name: str = "") -> BlockSet:
    """Registers the memory of `infos` (block-major, layout.slots per block) and one explicit
    block set over it, which owns the registration."""
    registration = register_memory(rpc, infos, whats, name)
    try:
        return table_block_set(rpc, layout, registration.placements, name, registration)
    except BaseException:
        registration.release()
        raise


def describe_stacks(blocks: Any, what: str) -> tuple[list[TensorInfo], list[str], int]:
    """Flattens a list (blocks) of lists (chunks) into block-major TensorInfos; returns them,
    their names ("blocks[i][j]") and the chunk count per block (equal for all blocks)."""
    if not isinstance(blocks, (list, tuple)):
        raise TypeError(f"{what}: expected a list (one entry per block) of lists of tensors, "
                        f"got {type(blocks).__name__}")
    infos: list[TensorInfo] = []
    whats: list[str] = []
    chunks = -1
    for i, chunk_list in enumerate(blocks):
        if not isinstance(chunk_list, (list, tuple)):
            raise TypeError(f"{what}[{i}]: expected a list of nl*no chunk tensors, got "
                            f"{type(chunk_list).__name__}")
        if chunks < 0:
            chunks = len(chunk_list)
        elif len(chunk_list) != chunks:
            raise ValueError(f"{what}[{i}]: {len(chunk_list)} chunks, but {what}[0] has "
                             f"{chunks}; every block has nl*no chunks")
        for j, chunk in enumerate(chunk_list):
            whats.append(f"{what}[{i}][{j}]")
            infos.append(describe(chunk, whats[-1]))
    if chunks == 0:
        raise ValueError(f"{what}[0]: no chunks; every block has nl*no ≥ 1 chunk tensors")
    return infos, whats, chunks


def describe_buffers(buffers: Any, what: str) -> tuple[list[TensorInfo], list[str]]:
    """TensorInfos of a list of per-block buffers and their names ("universals[i]")."""
    if not isinstance(buffers, (list, tuple)):
        raise TypeError(f"{what}: expected a list of tensors (one per block), got "
                        f"{type(buffers).__name__}")
    whats = [f"{what}[{i}]" for i in range(len(buffers))]
    return [describe(b, w) for b, w in zip(buffers, whats)], whats


def check_shapes(infos: Sequence[TensorInfo], whats: Sequence[str],
                 expected: tuple[int, ...], context: str) -> None:
    """ValueError naming the first array whose shape is not `expected`; also contiguity."""
    for info, what in zip(infos, whats):
        if info.shape != expected:
            raise ValueError(f"{what}: shape {info.shape}; expected {expected} ({context})")
        check_contiguous(info, what)

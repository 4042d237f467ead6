"""The seed's in-process conversion API, served by the daemon.

    block_to_universal(blocks, universals, layout="NHD")
    universal_to_block(universals, blocks, layout="NHD")
    block_to_operational(blocks, operationals, backend="auto")
    operational_to_block(operationals, blocks, backend="auto")

`blocks` is a list (nb) of lists (nl*no) of chunk tensors, chunk l*no+o being [nt, nh, hd]
(layout "NHD") or [nh, nt, hd] ("HND"); `universals` a list (nb) of [nh, nl, no, nt, hd]
tensors; `operationals` a list (nb) of [nl, no, nt*nh*hd] tensors (inner order = layout). All
tensors share one dtype and one device and are contiguous: torch CUDA tensors, or host arrays
(numpy or torch CPU) in kvshuttle shared memory. Wrong container or element types raise
TypeError, wrong shapes / dtypes / devices / contiguity ValueError — naming the argument, the
index, what was expected and what was given — before anything is sent. An empty batch is a
no-op.

Registrations are per call: each call lends the daemon the memory of its tensors, converts
block i ↔ i in one job, and unregisters that memory before it returns (with `stream=`, once the
job is launched; the daemon then keeps it until the job ends). Nothing stays registered between
calls, so freeing a tensor afterwards is always safe. For hot loops over the same memory,
register it once through a Session (register_blocks / register_buffers / register_vllm_cache)
and submit jobs.

The calls run in `session=` or in the process's default session, opened on first use at
$KVSHUTTLE_TARGET (default unix:/run/kvshuttle/kvshuttle.sock); set_default_session() picks
another. Without `stream=` a call returns once the copy is done (CUDA: after synchronizing the
tensors' current stream first, so the daemon sees what torch wrote). With `stream=` (a
torch.cuda.Stream) it returns once the copy is launched, `stream` waiting for it on the GPU, and
hands back the JobFuture.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from kvshuttle import blocksets
from kvshuttle.jobs import Job, JobFuture, parse_backend
from kvshuttle.layout import BlockShape, Layout, LayoutKind
from kvshuttle.regions import register_memory
from kvshuttle.client import DEFAULT_TARGET, Client
from kvshuttle.session import Session
from kvshuttle.tensors import TensorInfo

_default_lock = threading.Lock()
_default_session: Session | None = None
_default_pid = 0


def set_default_session(session: Session | None) -> None:
    """The session the seed functions use when none is passed (None: open one on next use)."""
    global _default_session, _default_pid
    with _default_lock:
        _default_session, _default_pid = session, os.getpid()


def default_session() -> Session:
    """The process's default session, opened at $KVSHUTTLE_TARGET on first use (and again in
    a forked child, which cannot use its parent's channel)."""
    global _default_session, _default_pid
    with _default_lock:
        if _default_session is None or _default_session.closed or _default_pid != os.getpid():
            target = os.environ.get("KVSHUTTLE_TARGET", DEFAULT_TARGET)
            _default_session = Session(Client(target), "kvshuttle-seed")
            _default_pid = os.getpid()
        return _default_session


@dataclass
class _Plan:
    """A validated call: both layouts and the tensors of each side, block-major."""

    stack_layout: Layout
    buffer_layout: Layout
    stack_infos: list[TensorInfo]
    stack_whats: list[str]
    buffer_infos: list[TensorInfo]
    buffer_whats: list[str]


def _shape(dims: tuple[int, ...], what: str, names: str) -> BlockShape:
    """BlockShape(*dims) with the error naming the argument that carried the dimensions."""
    try:
        return BlockShape(*dims)
    except ValueError as error:
        raise ValueError(f"{what}: shape {names} = {dims} has a dimension outside [1, 2**32)"
                         f" ({error})") from None


def _plan(blocks: Any, buffers: Any, buffer_arg: str, layout: Any,
          target: str) -> _Plan | None:
    """Validates seed arguments (see the module docstring); None for an empty batch.
    `target` is "universal" or "operational"."""
    kind = LayoutKind.parse(layout, "layout")
    if not kind.is_stack:
        raise ValueError(f"layout: {layout!r}; allowed: 'NHD', 'HND'")
    stack_infos, stack_whats, chunks = blocksets.describe_stacks(blocks, "blocks")
    buffer_infos, buffer_whats = blocksets.describe_buffers(buffers, buffer_arg)
    if len(blocks) != len(buffers):
        raise ValueError(f"blocks has {len(blocks)} blocks but {buffer_arg} has "
                         f"{len(buffers)}; block i converts to {buffer_arg}[i]")
    if not blocks:
        return None
    all_infos, all_whats = stack_infos + buffer_infos, stack_whats + buffer_whats
    dtype = blocksets.same_dtype(all_infos, all_whats)
    blocksets.same_place(all_infos, all_whats)

    first, first_what = buffer_infos[0], buffer_whats[0]
    if target == "universal":
        if len(first.shape) != 5:
            raise ValueError(f"{first_what}: shape {first.shape}; expected 5 dimensions "
                             "[nh, nl, no, nt, hd]")
        nh, nl, no, nt, hd = first.shape
        shape = _shape((nl, no, nt, nh, hd), first_what, "[nh, nl, no, nt, hd]")
        buffer_kind = LayoutKind.UNIVERSAL
    else:
        if len(first.shape) != 3:
            raise ValueError(f"{first_what}: shape {first.shape}; expected 3 dimensions "
                             "[nl, no, nt*nh*hd]")
        chunk = stack_infos[0]
        if len(chunk.shape) != 3:
            raise ValueError(f"{stack_whats[0]}: shape {chunk.shape}; expected 3 dimensions "
                             f"({'[nt, nh, hd]' if kind == LayoutKind.NHD else '[nh, nt, hd]'})")
        nt, nh, hd = chunk.shape if kind == LayoutKind.NHD else (
            chunk.shape[1], chunk.shape[0], chunk.shape[2])
        nl, no, inner = first.shape
        shape = _shape((nl, no, nt, nh, hd), f"{first_what} / {stack_whats[0]}",
                       "(nl, no, nt, nh, hd)")
        if inner != shape.chunk_elements:
            raise ValueError(f"{first_what}: shape {first.shape}; its last dimension must be "
                             f"nt*nh*hd = {shape.chunk_elements} for chunks of shape "
                             f"{chunk.shape} ({kind.name})")
        buffer_kind = (LayoutKind.OPERATIONAL_NHD if kind == LayoutKind.NHD
                       else LayoutKind.OPERATIONAL_HND)
    if chunks != shape.nl * shape.no:
        raise ValueError(f"blocks[0]: {chunks} chunks; {first_what} of shape {first.shape} "
                         f"has nl={shape.nl}, no={shape.no}, so each block needs nl*no = "
                         f"{shape.nl * shape.no} chunks")
    stack_layout = Layout(kind, shape, dtype)
    buffer_layout = Layout(buffer_kind, shape, dtype)
    blocksets.check_shapes(buffer_infos, buffer_whats, buffer_layout.slot_shape,
                           f"{buffer_kind.value} of {stack_layout}")
    blocksets.check_shapes(stack_infos, stack_whats, stack_layout.slot_shape,
                           f"{kind.name} chunk of {stack_layout}")
    blocksets.check_registrable(all_infos, all_whats)
    return _Plan(stack_layout, buffer_layout, stack_infos, stack_whats, buffer_infos,
                 buffer_whats)


def _run(plan: _Plan | None, to_buffers: bool, backend: str, session: Session | None,
         stream: Any, timeout: float | None) -> JobFuture | None:
    """Registers both sides, converts block i ↔ i in one job, releases the registration."""
    if plan is None:
        return None
    infos = plan.stack_infos + plan.buffer_infos
    whats = plan.stack_whats + plan.buffer_whats
    is_cuda = infos[0].is_cuda
    if stream is not None and not is_cuda:
        raise ValueError("stream: only for CUDA tensors; these are host arrays (the call "
                         "returns once the copy is done)")
    if stream is None and is_cuda:
        from kvshuttle import cuda
        cuda.synchronize(cuda.current_stream(infos[0].device_index))
    session = session or default_session()
    registration = register_memory(session.rpc, infos, whats, "")
    try:
        split = len(plan.stack_infos)
        stacks = blocksets.table_block_set(session.rpc, plan.stack_layout,
                                           registration.placements[:split])
        buffers = blocksets.table_block_set(session.rpc, plan.buffer_layout,
                                            registration.placements[split:])
        pairs = [(i, i) for i in range(len(plan.buffer_infos))]
        job = Job(stacks, buffers, pairs, backend=backend) if to_buffers else Job(
            buffers, stacks, pairs, backend=backend)
        future = session.submit([job], stream=stream, timeout=timeout,
                                device_index=infos[0].device_index)
        if stream is not None:
            return future  # launched; the daemon keeps the released regions until it ends
        future.result(timeout)
        return None
    finally:
        registration.release()


def block_to_universal(blocks: Any, universals: Any, layout: str = "NHD", *,
                       backend: str = "auto", session: Session | None = None,
                       stream: Any = None, timeout: float | None = None) -> JobFuture | None:
    """Copies block stacks blocks[i] (nl*no chunks, NHD or HND) into universals[i]
    ([nh, nl, no, nt, hd])."""
    parse_backend(backend)
    return _run(_plan(blocks, universals, "universals", layout, "universal"), True, backend,
                session, stream, timeout)


def universal_to_block(universals: Any, blocks: Any, layout: str = "NHD", *,
                       backend: str = "auto", session: Session | None = None,
                       stream: Any = None, timeout: float | None = None) -> JobFuture | None:
    """Copies universals[i] ([nh, nl, no, nt, hd]) into block stacks blocks[i]."""
    parse_backend(backend)
    return _run(_plan(blocks, universals, "universals", layout, "universal"), False, backend,
                session, stream, timeout)


def block_to_operational(blocks: Any, operationals: Any, backend: str = "auto", *,
                         layout: str = "NHD", session: Session | None = None,
                         stream: Any = None, timeout: float | None = None) -> JobFuture | None:
    """Copies block stacks blocks[i] into operationals[i] ([nl, no, nt*nh*hd], inner order =
    layout; the seed's form is NHD). backend: auto, kernel, batch, async, staged."""
    parse_backend(backend)
    return _run(_plan(blocks, operationals, "operationals", layout, "operational"), True,
                backend, session, stream, timeout)


def operational_to_block(operationals: Any, blocks: Any, backend: str = "auto", *,
                         layout: str = "NHD", session: Session | None = None,
                         stream: Any = None, timeout: float | None = None) -> JobFuture | None:
    """Copies operationals[i] ([nl, no, nt*nh*hd]) into block stacks blocks[i]."""
    parse_backend(backend)
    return _run(_plan(blocks, operationals, "operationals", layout, "operational"), False,
                backend, session, stream, timeout)

"""torch CUDA memory and events as the daemon needs them: legacy CUDA IPC handles of the
allocation holding a tensor, the GPU's UUID, and interprocess events.

Sharing a storage: `storage._share_cuda_()` gives the cudaIpcMemHandle of the caching
allocator's allocation base plus the storage's offset and size in it. torch then counts the
daemon as a consumer of that storage (a reference counter in shared memory): if the tensor is
freed while the counter is held, torch parks the block in its IPC "limbo" instead of reusing it.
This module shares each storage once (re-sharing would stack wrappers on the storage), caches
the result for the storage's life and releases the counter when the storage dies; a region the
daemon still maps therefore never points at memory torch has handed to someone else.

Memory from expandable segments (PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True) or other
VMM allocators (cuMemCreate) has no legacy IPC handle: ValueError saying so and how to fix it.

Imported lazily (only when a CUDA tensor is seen), so the package works without torch.
"""
from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import torch

# Bytes of a cudaIpcMemHandle_t / cudaIpcEventHandle_t.
IPC_HANDLE_BYTES = 64
# torch ≥ 2.5 prefixes the handle with a format version byte and a kind byte.
_SHAREABLE_VERSION = 2
_SHAREABLE_CUDA_MALLOC = ord("c")
_SHAREABLE_EXPANDABLE = ord("e")

_VMM_FIX = ("legacy CUDA IPC cannot share memory from expandable segments or other VMM "
            "(cuMemCreate) allocators; allocate the tensor with the default caching allocator: "
            "unset expandable_segments in PYTORCH_CUDA_ALLOC_CONF (currently "
            f"{os.environ.get('PYTORCH_CUDA_ALLOC_CONF', '<unset>')!r}) or call "
            "torch.cuda.memory._set_allocator_settings('expandable_segments:False') before "
            "allocating it")


@dataclass(frozen=True)
class CudaShare:
    """A storage's place in its CUDA allocation: the 64-byte IPC handle of the allocation base,
    the storage's byte offset and size in it, and its GPU."""

    handle: bytes
    offset: int
    size: int
    device_index: int
    gpu_uuid: str
    storage_ptr: int  # address of the storage's first byte in this process


_lock = threading.Lock()
_shares: dict[int, CudaShare] = {}  # StorageImpl address → its share, while the storage lives
_uuids: dict[int, str] = {}


def gpu_uuid(device_index: int) -> str:
    """The UUID of a visible GPU as nvidia-smi prints it ("GPU-xxxxxxxx-...")."""
    with _lock:
        if device_index not in _uuids:
            uuid = str(torch.cuda.get_device_properties(device_index).uuid)
            _uuids[device_index] = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
        return _uuids[device_index]


def parse_ipc_handle(handle: bytes, what: str) -> bytes:
    """The 64-byte cudaIpcMemHandle inside what `_share_cuda_` returned (a bare handle, or
    torch's versioned form); ValueError for expandable-segment handles and unknown forms."""
    if len(handle) == IPC_HANDLE_BYTES:
        return bytes(handle)
    if len(handle) >= 2 and handle[0] == _SHAREABLE_VERSION:
        if handle[1] == _SHAREABLE_CUDA_MALLOC and len(handle) == 2 + IPC_HANDLE_BYTES:
            return bytes(handle[2:])
        if handle[1] == _SHAREABLE_EXPANDABLE:
            raise ValueError(f"{what}: the tensor lives in an expandable segment; {_VMM_FIX}")
    raise ValueError(f"{what}: torch returned a {len(handle)}-byte IPC handle of an unknown "
                     f"form (expected {IPC_HANDLE_BYTES} bytes); {_VMM_FIX}")


def _release_counter(key: int, counter: bytes, counter_offset: int) -> None:
    """Storage finalizer: forget the share and give torch's consumer counter back."""
    with _lock:
        _shares.pop(key, None)
    release = getattr(torch.UntypedStorage, "_release_ipc_counter_cuda", None)
    if release is None or counter is None:
        return
    try:
        release(counter, counter_offset)
    except Exception:  # noqa: BLE001 - best effort, as torch's own consumers do at exit
        pass


def share(tensor: Any, what: str) -> CudaShare:
    """The CudaShare of the storage under a CUDA tensor (shared once per storage)."""
    storage = tensor.untyped_storage()
    key = storage._cdata
    with _lock:
        cached = _shares.get(key)
    if cached is not None:
        return cached
    try:
        shared = storage._share_cuda_()
    except RuntimeError as error:
        text = str(error)
        if "expandable" in text.lower():
            raise ValueError(f"{what}: {_VMM_FIX} (torch: {text.splitlines()[0]})") from error
        raise ValueError(f"{what}: torch cannot export this tensor through CUDA IPC: "
                         f"{text.splitlines()[0]}. If it comes from a VMM allocator, {_VMM_FIX}; "
                         "tensors received from another process must be cloned first") from error
    device, handle, size, offset, counter, counter_offset = shared[:6]
    try:
        ipc_handle = parse_ipc_handle(handle, what)
    except ValueError:
        _release_counter(key, counter, counter_offset)
        raise
    result = CudaShare(handle=ipc_handle, offset=int(offset), size=int(size),
                       device_index=int(device), gpu_uuid=gpu_uuid(int(device)),
                       storage_ptr=int(storage.data_ptr()))
    with _lock:
        _shares[key] = result
    weakref.finalize(storage, _release_counter, key, counter, counter_offset)
    return result


class IpcEvent:
    """A CUDA event created with cudaEventInterprocess | cudaEventDisableTiming on one GPU, and
    its 64-byte IPC handle (what Job.completion_event carries)."""

    def __init__(self, device_index: int) -> None:
        self.device_index = device_index
        self.event = torch.cuda.Event(enable_timing=False, blocking=False, interprocess=True)
        with torch.cuda.device(device_index):
            self.handle = bytes(self.event.ipc_handle())  # creates the event on that GPU
        if len(self.handle) != IPC_HANDLE_BYTES:
            raise RuntimeError(f"torch returned a {len(self.handle)}-byte event IPC handle; "
                               f"expected {IPC_HANDLE_BYTES}")

    def record(self, stream: Any) -> None:
        """Records the event on `stream` (a torch.cuda.Stream): complete once the work queued
        on it so far is done."""
        self.event.record(stream)

    def make_stream_wait(self, stream: Any) -> None:
        """Makes `stream` (a torch.cuda.Stream) wait on the GPU for the event's latest record."""
        stream.wait_event(self.event)


def synchronize(stream: Any) -> None:
    """Waits on the CPU until `stream`'s queued work is done."""
    stream.synchronize()


def current_stream(device_index: int) -> Any:
    return torch.cuda.current_stream(device_index)


def check_stream(stream: Any, device_index: int | None, what: str = "stream") -> None:
    """TypeError unless `stream` is a torch.cuda.Stream; ValueError when it is on another GPU
    than `device_index` (None: any GPU)."""
    if not isinstance(stream, torch.cuda.Stream):
        raise TypeError(f"{what}: expected a torch.cuda.Stream, got {type(stream).__name__}")
    if device_index is not None and stream.device.index != device_index:
        raise ValueError(f"{what}: on cuda:{stream.device.index}, but the job's memory is on "
                         f"cuda:{device_index}")

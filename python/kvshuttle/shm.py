"""Host memory the daemon can map: memfd objects created, sealed and mapped here.

    arr = kvshuttle.shm_empty((8, 16, 128), "float16")        # numpy array in its own object
    arena = kvshuttle.HostArena(64 << 20)                     # many arrays, one object
    a = arena.empty((4, 2, 16, 8, 128), np.float16)
    t = kvshuttle.shm_empty((4, 16), torch.bfloat16)           # a torch CPU tensor (torch dtype)

Each object is an anonymous memfd (memfd_create with MFD_ALLOW_SEALING), sized once and sealed
against shrinking, growing and further sealing, so neither this process nor anyone it is shared
with can truncate memory the daemon has mapped. It has no name in /dev/shm: the daemon gets it
as a descriptor over its side channel (Session.send_fds), so host arrays given to the client
must live in one of these objects; `find(address, nbytes)` tells which (and where). A mapping
stays alive while any array over it does; this process keeps one descriptor per object open
until the last array goes (or `close()`), after which existing daemon mappings keep working but
no new region can be registered over it. Linux only (memfd, Linux ≥ 3.17).
"""
from __future__ import annotations

import bisect
import fcntl
import itertools
import math
import mmap
import os
import sys
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

_counter = itertools.count()
_registry_lock = threading.Lock()
# Live mappings sorted by start address: (start, end, name); and each one's descriptor by name.
_registry: list[tuple[int, int, str]] = []
_fds: dict[str, int] = {}

# Alignment of arrays handed out by a HostArena (covers every dtype and 16-byte vector access).
DEFAULT_ALIGNMENT = 256
# What every object is sealed with: its size is final, and the seals are too.
SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
# Python ≥ 3.13 can map without keeping a second descriptor of its own.
_MMAP_OPTIONS: dict[str, Any] = {"trackfd": False} if sys.version_info >= (3, 13) else {}


class _Mapping:
    """One mapped memfd object. Arrays over it keep it (and its mmap) alive."""

    def __init__(self, size: int, mode: int) -> None:
        if size <= 0:
            raise ValueError(f"shared memory size: {size}; must be > 0")
        self.name = f"kvshuttle-py-{os.getpid()}-{next(_counter)}"
        fd = os.memfd_create(self.name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.fchmod(fd, mode)
            os.ftruncate(fd, size)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
            self.mmap = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                                  **_MMAP_OPTIONS)
        except BaseException:
            os.close(fd)
            raise
        self.size = size
        self.bytes = np.frombuffer(self.mmap, dtype=np.uint8)
        self.address = int(self.bytes.__array_interface__["data"][0])
        with _registry_lock:
            bisect.insort(_registry, (self.address, self.address + size, self.name))
            _fds[self.name] = fd
        # Close the descriptor and forget the object once no array (nor this) refers to the
        # mmap any more.
        weakref.finalize(self.mmap, _forget, self.name)

    def close(self) -> None:
        """Closes the descriptor and removes the registry entry (idempotent): no new
        registrations."""
        _forget(self.name)

    def view(self, shape: Sequence[int], dtype: Any, offset: int) -> Any:
        """An array of `shape`/`dtype` at byte `offset` (numpy, or torch for a torch dtype)."""
        torch_dtype = _torch_dtype(dtype)
        np_dtype = np.dtype(np.uint8) if torch_dtype is not None else np.dtype(dtype)
        itemsize = torch_dtype.itemsize if torch_dtype is not None else np_dtype.itemsize
        shape = tuple(int(d) for d in shape)
        nbytes = math.prod(shape) * itemsize
        if offset < 0 or offset + nbytes > self.size:
            raise ValueError(f"shared memory {self.name}: {nbytes} bytes at offset {offset} "
                             f"exceed its {self.size} bytes")
        raw = self.bytes[offset:offset + nbytes]
        if torch_dtype is None:
            return raw.view(np_dtype).reshape(shape)
        import torch  # a torch dtype was given, so torch is installed
        return torch.from_numpy(raw).view(torch_dtype).reshape(shape)


def _torch_dtype(dtype: Any) -> Any | None:
    """`dtype` when it is a torch dtype, else None."""
    return dtype if type(dtype).__module__ == "torch" and hasattr(dtype, "itemsize") else None


def _forget(name: str) -> None:
    with _registry_lock:
        _registry[:] = [entry for entry in _registry if entry[2] != name]
        fd = _fds.pop(name, None)
        if fd is not None:
            os.close(fd)


@dataclass(frozen=True)
class ShmLocation:
    """Where host memory lives: memfd object `name` (size `size`), `offset` bytes in."""

    name: str
    size: int
    offset: int


def find(address: int, nbytes: int) -> ShmLocation | None:
    """The live kvshuttle memfd object holding [address, address + nbytes), or None."""
    with _registry_lock:
        i = bisect.bisect_right(_registry, (address, float("inf"), "")) - 1
        if i < 0:
            return None
        start, end, name = _registry[i]
    if address + nbytes > end:
        return None
    return ShmLocation(name, end - start, address - start)


def dup_fd(name: str) -> int:
    """A new descriptor (close-on-exec; the caller closes it) of the live object `name`, to
    send to the daemon. ValueError once the object was closed or its arrays are gone."""
    with _registry_lock:
        fd = _fds.get(name)
        if fd is None:
            raise ValueError(f"shared memory {name} is closed; it can no longer be registered")
        return os.dup(fd)


class SharedMemory:
    """A memfd object of `size` bytes created, sealed (SEALS) and mapped read-write by this
    process. `name` is the memfd's name (as /proc/<pid>/fd shows it, not a path); `mode` its
    permission bits."""

    def __init__(self, size: int, mode: int = 0o600) -> None:
        self._mapping: _Mapping | None = _Mapping(int(size), mode)
        self.name = self._mapping.name
        self.size = self._mapping.size
        self.address = self._mapping.address

    def array(self, shape: Sequence[int], dtype: Any = np.uint8, offset: int = 0) -> Any:
        """An array over bytes [offset, offset + nbytes) of the object: numpy for numpy dtypes,
        a torch CPU tensor for torch dtypes. It keeps the mapping alive."""
        return self._live().view(shape, dtype, offset)

    def dup_fd(self) -> int:
        """A new descriptor of the object (the caller closes it); ValueError once closed."""
        return dup_fd(self._live().name)

    def close(self) -> None:
        """Closes this process's descriptor and drops this object's reference; arrays made from
        it stay usable in this process, but new registrations over them fail."""
        if self._mapping is not None:
            self._mapping.close()
            self._mapping = None

    def __enter__(self) -> SharedMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _live(self) -> _Mapping:
        if self._mapping is None:
            raise ValueError(f"shared memory {self.name} is closed")
        return self._mapping

    def __repr__(self) -> str:
        return f"SharedMemory(name={self.name!r}, size={self.size})"


class HostArena:
    """Many host arrays in one memfd object (one daemon region): a bump allocator.

    Arrays are never freed individually; the object goes when the arena and every array over
    it are gone. MemoryError when `capacity` is used up.
    """

    def __init__(self, capacity: int, alignment: int = DEFAULT_ALIGNMENT) -> None:
        if alignment <= 0 or alignment & (alignment - 1):
            raise ValueError(f"alignment: {alignment}; must be a power of two")
        self.segment = SharedMemory(capacity)
        self.alignment = alignment
        self.used = 0
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        return self.segment.size

    def empty(self, shape: Sequence[int], dtype: Any) -> Any:
        """An uninitialized (in fact zero-filled at creation) array of `shape` and `dtype`."""
        nbytes = math.prod(int(d) for d in shape) * _itemsize(dtype)
        with self._lock:
            offset = -(-self.used // self.alignment) * self.alignment
            if offset + nbytes > self.capacity:
                raise MemoryError(f"HostArena: {nbytes} bytes requested, "
                                  f"{max(self.capacity - offset, 0)} of {self.capacity} left")
            self.used = offset + nbytes
        return self.segment.array(shape, dtype, offset)

    def zeros(self, shape: Sequence[int], dtype: Any) -> Any:
        array = self.empty(shape, dtype)
        array[...] = 0
        return array

    def close(self) -> None:
        self.segment.close()


def _itemsize(dtype: Any) -> int:
    torch_dtype = _torch_dtype(dtype)
    return torch_dtype.itemsize if torch_dtype is not None else np.dtype(dtype).itemsize


def shm_empty(shape: Sequence[int], dtype: Any) -> Any:
    """An array of `shape`/`dtype` in its own memfd object (zero-filled): numpy for numpy
    dtypes and names, a torch CPU tensor for torch dtypes. The object goes with the array."""
    nbytes = max(math.prod(int(d) for d in shape) * _itemsize(dtype), 1)
    return _Mapping(nbytes, 0o600).view(shape, dtype, 0)


def shm_zeros(shape: Sequence[int], dtype: Any) -> Any:
    """shm_empty; new memfd objects are zero-filled already."""
    return shm_empty(shape, dtype)

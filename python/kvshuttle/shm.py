"""Host memory the daemon can map: POSIX shared-memory objects created and mapped here.

    arr = kvshuttle.shm_empty((8, 16, 128), "float16")        # numpy array in its own object
    arena = kvshuttle.HostArena(64 << 20)                     # many arrays, one object
    a = arena.empty((4, 2, 16, 8, 128), np.float16)
    t = kvshuttle.shm_empty((4, 16), torch.bfloat16)           # a torch CPU tensor (torch dtype)

The daemon maps host memory by shm name + offset + size, so host arrays given to the client
must live in one of these objects; `find(address, nbytes)` tells which (and where). A mapping
stays alive while any array over it does; the name is unlinked when the last array goes (or at
`close()`), after which existing daemon mappings keep working but no new region can be
registered over it. Objects are created with mode 0600: the daemon must run as this user (or
root). Linux only (the objects live in /dev/shm).
"""
from __future__ import annotations

import bisect
import itertools
import math
import mmap
import os
import secrets
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

_SHM_DIR = "/dev/shm"
_counter = itertools.count()
_registry_lock = threading.Lock()
# Live, linked mappings sorted by start address: (start, end, shm name).
_registry: list[tuple[int, int, str]] = []

# Alignment of arrays handed out by a HostArena (covers every dtype and 16-byte vector access).
DEFAULT_ALIGNMENT = 256


class _Mapping:
    """One mapped shm object. Arrays over it keep it (and its mmap) alive."""

    def __init__(self, size: int, mode: int) -> None:
        if size <= 0:
            raise ValueError(f"shared memory size: {size}; must be > 0")
        self.name = f"/kvshuttle-py-{os.getpid()}-{next(_counter)}-{secrets.token_hex(4)}"
        path = _SHM_DIR + self.name
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)  # exactly `mode`, whatever the umask
            os.ftruncate(fd, size)
            self.mmap = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(fd)
        self.size = size
        self.bytes = np.frombuffer(self.mmap, dtype=np.uint8)
        self.address = int(self.bytes.__array_interface__["data"][0])
        with _registry_lock:
            bisect.insort(_registry, (self.address, self.address + size, self.name))
        # Unlink and forget the object once no array (nor this) refers to the mmap any more.
        weakref.finalize(self.mmap, _forget, self.name)

    def unlink(self) -> None:
        """Removes the name and the registry entry (idempotent): no new registrations."""
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
    try:
        os.unlink(_SHM_DIR + name)
    except FileNotFoundError:
        pass


@dataclass(frozen=True)
class ShmLocation:
    """Where host memory lives: shm object `name` (size `size`), `offset` bytes in."""

    name: str
    size: int
    offset: int


def find(address: int, nbytes: int) -> ShmLocation | None:
    """The kvshuttle shm object holding [address, address + nbytes), or None."""
    with _registry_lock:
        i = bisect.bisect_right(_registry, (address, float("inf"), "")) - 1
        if i < 0:
            return None
        start, end, name = _registry[i]
    if address + nbytes > end:
        return None
    return ShmLocation(name, end - start, address - start)


class SharedMemory:
    """A POSIX shm object of `size` bytes created and mapped read-write by this process."""

    def __init__(self, size: int, mode: int = 0o600) -> None:
        self._mapping: _Mapping | None = _Mapping(int(size), mode)
        self.name = self._mapping.name
        self.size = self._mapping.size
        self.address = self._mapping.address

    def array(self, shape: Sequence[int], dtype: Any = np.uint8, offset: int = 0) -> Any:
        """An array over bytes [offset, offset + nbytes) of the object: numpy for numpy dtypes,
        a torch CPU tensor for torch dtypes. It keeps the mapping alive."""
        return self._live().view(shape, dtype, offset)

    def close(self) -> None:
        """Unlinks the name and drops this object's reference; arrays made from it stay usable
        in this process, but new registrations over them fail."""
        if self._mapping is not None:
            self._mapping.unlink()
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
    """Many host arrays in one shm object (one daemon region): a bump allocator.

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
    """An array of `shape`/`dtype` in its own shm object (zero-filled): numpy for numpy dtypes
    and names, a torch CPU tensor for torch dtypes. The object goes with the array."""
    nbytes = max(math.prod(int(d) for d in shape) * _itemsize(dtype), 1)
    return _Mapping(nbytes, 0o600).view(shape, dtype, 0)


def shm_zeros(shape: Sequence[int], dtype: Any) -> Any:
    """shm_empty; new shm objects are zero-filled already."""
    return shm_empty(shape, dtype)

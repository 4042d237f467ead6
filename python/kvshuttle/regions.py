"""Regions: memory lent to the daemon, and the registration of the memory under a set of arrays.

`register_memory(rpc, infos)` registers as few regions as possible for a list of arrays —
one per CUDA allocation (arrays in one caching-allocator allocation share it) and one per host
memfd object (its descriptor sent over the daemon's side channel) — and can tell, for each
array, its (region id, offset). The returned
MemoryRegistration keeps the arrays alive while it is registered, so the daemon never maps
memory that this process has freed; `release()` unregisters its regions (the daemon defers the
unmapping until jobs using them finish; block sets over them go with them).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from kvshuttle import shm
from kvshuttle._stubs import pb
from kvshuttle.errors import KvshuttleError
from kvshuttle.rpc import SessionRpc
from kvshuttle.tensors import TensorInfo


@dataclass
class Region:
    """One registered region: id, memory kind ("device" or "host"), size, GPU (device), and
    the calls of the session that registered it."""

    rpc: SessionRpc
    region_id: int
    memory: str
    size: int
    gpu_uuid: str = ""
    released: bool = False

    def unregister(self) -> bool:
        """Releases the region (idempotent); True when the daemon deferred it for running
        jobs."""
        if self.released:
            return False
        self.released = True
        return self.rpc.unregister_region(self.region_id)

    @classmethod
    def from_proto(cls, rpc: SessionRpc, message: pb.Region) -> Region:
        memory = "device" if message.memory == pb.MEMORY_DEVICE else "host"
        return cls(rpc, message.region_id, memory, message.size, message.gpu_uuid)


@dataclass(frozen=True)
class Placement:
    """Where one array starts: a region and a byte offset in it."""

    region_id: int
    offset: int

    def to_proto(self, extra: int = 0) -> pb.SlotBase:
        return pb.SlotBase(region_id=self.region_id, offset=self.offset + extra)


@dataclass
class MemoryRegistration:
    """The regions under a list of arrays, and each array's Placement (same order)."""

    regions: list[Region]
    placements: list[Placement]
    memory: str  # "device" or "host"
    device_index: int = 0
    keepalive: list[Any] = field(default_factory=list)

    def release(self) -> None:
        """Unregisters every region (idempotent; errors of a vanished session are ignored)."""
        for region in self.regions:
            try:
                region.unregister()
            except KvshuttleError:
                pass  # the session is gone: the daemon released everything already
        self.keepalive.clear()


@dataclass
class _Extent:
    """Byte range a region must cover, relative to the base of its allocation / memfd
    object."""

    start: int
    end: int


def not_shared_message(info: TensorInfo, what: str) -> str:
    return (f"{what}: host memory at 0x{info.data_ptr:x} ({info.extent_bytes} bytes) is not "
            "kvshuttle shared memory; the daemon can only map host arrays created with "
            "kvshuttle.shm_empty(), kvshuttle.HostArena or kvshuttle.SharedMemory.array()")


def _host_key(info: TensorInfo, what: str) -> tuple[tuple[str, int], int]:
    """((memfd object name, object size), offset in the object) of a host array."""
    location = shm.find(info.data_ptr, info.extent_bytes)
    if location is None:
        raise ValueError(not_shared_message(info, what))
    return (location.name, location.size), location.offset


def _cuda_key(info: TensorInfo, what: str) -> tuple[tuple[str, bytes], int]:
    """((GPU uuid, allocation handle), offset in the allocation) of a CUDA tensor."""
    from kvshuttle import cuda
    shared = cuda.share(info.obj, what)
    return (shared.gpu_uuid, shared.handle), shared.offset + info.data_ptr - shared.storage_ptr


def _size(extent: _Extent) -> int:
    return max(extent.end - extent.start, 1)


def _region_name(prefix: str, index: int) -> str:
    return f"{prefix}.{index}" if prefix else ""


def _register_host(rpc: SessionRpc, extents: dict[Any, _Extent], name: str,
                   out: list[Region]) -> None:
    """Sends the memfd of every object in `extents` (keys from _host_key) in as few side-channel
    messages as the daemon allows, then registers one region per object into `out`."""
    if not extents:
        return
    fds: list[int] = []
    try:
        for shm_name, _ in extents:
            fds.append(shm.dup_fd(shm_name))
        sent = rpc.send_fds(fds)
    finally:
        for fd in fds:
            os.close(fd)  # the daemon holds its own copies now
    for index, (extent, (token, fd_index)) in enumerate(zip(extents.values(), sent)):
        out.append(Region.from_proto(rpc, rpc.register_memfd(
            token, fd_index, extent.start, _size(extent), _region_name(name, index))))


def register_memory(rpc: SessionRpc, infos: Sequence[TensorInfo], whats: Sequence[str],
                    name: str = "") -> MemoryRegistration:
    """Registers the memory under `infos` (all host or all CUDA on one GPU; the caller checked)
    as one region per allocation / memfd object. `whats` names each array for messages. `name`
    (optional) prefixes the region names."""
    is_cuda = bool(infos) and infos[0].is_cuda
    keyed: list[tuple[Any, int]] = []
    extents: dict[Any, _Extent] = {}
    for info, what in zip(infos, whats):
        key, offset = _cuda_key(info, what) if is_cuda else _host_key(info, what)
        keyed.append((key, offset))
        end = offset + info.extent_bytes
        extent = extents.setdefault(key, _Extent(offset, end))
        extent.start = min(extent.start, offset)
        extent.end = max(extent.end, end)

    registration = MemoryRegistration([], [], "device" if is_cuda else "host",
                                      infos[0].device_index if infos else 0,
                                      [info.obj for info in infos])
    try:
        if is_cuda:
            for index, (key, extent) in enumerate(extents.items()):
                uuid, handle = key
                registration.regions.append(Region.from_proto(rpc, rpc.register_cuda_ipc(
                    handle, uuid, extent.start, _size(extent), _region_name(name, index))))
        else:
            _register_host(rpc, extents, name, registration.regions)
    except BaseException:
        registration.release()
        raise
    region_ids = {key: region.region_id for key, region in zip(extents, registration.regions)}
    registration.placements = [Placement(region_ids[key], offset - extents[key].start)
                               for key, offset in keyed]
    return registration

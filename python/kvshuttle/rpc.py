"""SessionRpc: one session's unary calls, the layer below the handles.

Every handle (Region, MemoryRegistration, BlockSet, Pool, JobFuture) keeps the SessionRpc of
the session that made it and calls through it; Session (session.py) builds one per session and
composes the handles over it. The calls take and return proto messages and plain values, never
handles, so this module needs nothing above it:

    rpc = SessionRpc(client, opened.session_id)
    region = rpc.register_memfd(token, 0, 0, 4096)     # a pb.Region
    rpc.unregister_region(region.region_id)

Errors: the connection's `call` maps a failed RPC to its KvshuttleError (errors.py); what this
module finds wrong itself (an unknown pool name) raises the KvshuttleError of the same code.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence

import grpc

from kvshuttle import fdchannel
from kvshuttle._stubs import pb
from kvshuttle.errors import error_for
from kvshuttle.layout import Layout


class Connection(Protocol):
    """What a session needs of its client (client.Client is one): the generated stub, the
    deadline of a unary call, and `call`, which runs one unary RPC and raises the matching
    KvshuttleError when it fails."""

    target: str
    stub: Any
    call_timeout: float

    def call(self, method: str, request: Any, timeout: float | None = None) -> Any: ...


class SessionRpc:
    """The unary RPCs of session `session_id` over `connection`; thread-safe (it keeps no state
    beyond the two)."""

    def __init__(self, connection: Connection, session_id: str) -> None:
        self.connection = connection
        self.session_id = session_id

    def call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        """Runs the session RPC `method` with `request` (its session_id set to this session)."""
        request.session_id = self.session_id
        return self.connection.call(method, request, timeout)

    # -----------------------------------------------------------------------------------------
    # Regions

    def register_cuda_ipc(self, handle: bytes, gpu_uuid: str, offset: int, size: int,
                          name: str = "") -> pb.Region:
        """Lends `size` bytes at `offset` of the CUDA allocation with IPC `handle` on GPU
        `gpu_uuid`."""
        memory = pb.CudaIpcMemory(handle=handle, gpu_uuid=gpu_uuid, offset=offset, size=size)
        return self.call("RegisterRegion",
                         pb.RegisterRegionRequest(name=name, cuda_ipc=memory)).region

    def register_shm(self, shm_name: str, offset: int, size: int, name: str = "") -> pb.Region:
        """Lends bytes [offset, offset + size) of the POSIX shm object `shm_name`."""
        memory = pb.HostShmMemory(name=shm_name, offset=offset, size=size)
        return self.call("RegisterRegion",
                         pb.RegisterRegionRequest(name=name, host_shm=memory)).region

    def register_memfd(self, fd_token: bytes, fd_index: int, offset: int, size: int,
                       name: str = "") -> pb.Region:
        """Lends bytes [offset, offset + size) of descriptor `fd_index` sent with `fd_token`."""
        memory = pb.HostMemfdMemory(fd_token=fd_token, fd_index=fd_index, offset=offset,
                                    size=size)
        return self.call("RegisterRegion",
                         pb.RegisterRegionRequest(name=name, host_memfd=memory)).region

    def send_fds(self, fds: Sequence[int]) -> list[tuple[bytes, int]]:
        """Sends descriptors over the daemon's side channel, at most its max_fds per token;
        returns the (token, index) of each, in order (see Session.send_fds)."""
        fds = list(fds)
        if not fds:
            raise ValueError("send_fds: no descriptors given")
        sent: list[tuple[bytes, int]] = []
        while len(sent) < len(fds):
            grant = self.call("CreateFdToken", pb.CreateFdTokenRequest())
            chunk = fds[len(sent):len(sent) + max(grant.max_fds, 1)]
            fdchannel.send_fds(grant.socket_path, grant.token, chunk)
            sent += [(grant.token, index) for index in range(len(chunk))]
        return sent

    def unregister_region(self, region_id: int) -> bool:
        """Releases a region; True when the daemon deferred it until its jobs finish."""
        request = pb.UnregisterRegionRequest(region_id=region_id)
        return self.call("UnregisterRegion", request).deferred

    # -----------------------------------------------------------------------------------------
    # Block sets

    def register_block_set_raw(self, layout: Layout, num_blocks: int, *,
                               strided: pb.StridedPlacement | None = None,
                               explicit: pb.ExplicitPlacement | None = None,
                               name: str = "") -> pb.BlockSet:
        """RegisterBlockSet over registered regions with a strided or an explicit placement
        (exactly one; ValueError otherwise)."""
        if (strided is None) == (explicit is None):
            raise ValueError("register_block_set_raw: give exactly one of strided / explicit")
        request = pb.RegisterBlockSetRequest(name=name, layout=layout.to_proto(),
                                             num_blocks=num_blocks)
        if strided is not None:
            request.strided.CopyFrom(strided)
        else:
            request.explicit_table.CopyFrom(explicit)
        return self.call("RegisterBlockSet", request).block_set

    def unregister_block_set(self, block_set_id: int) -> None:
        self.call("UnregisterBlockSet", pb.UnregisterBlockSetRequest(block_set_id=block_set_id))

    # -----------------------------------------------------------------------------------------
    # Pools

    def find_pool(self, name: str) -> pb.Pool:
        """The daemon's pool `name` (any session's); NotFoundError when there is none."""
        for pool in self.connection.call("ListPools", pb.ListPoolsRequest()).pools:
            if pool.name == name:
                return pool
        raise error_for(grpc.StatusCode.NOT_FOUND, f"pool {name!r}: no such pool")

    def destroy_pool(self, name: str) -> None:
        self.call("DestroyPool", pb.DestroyPoolRequest(name=name))

    def allocate_blocks(self, pool: str, count: int) -> list[int]:
        request = pb.AllocateBlocksRequest(pool=pool, count=count)
        return list(self.call("AllocateBlocks", request).block_ids)

    def free_blocks(self, pool: str, block_ids: Sequence[int]) -> None:
        self.call("FreeBlocks", pb.FreeBlocksRequest(pool=pool, block_ids=list(block_ids)))

    # -----------------------------------------------------------------------------------------
    # Jobs

    def wait_raw(self, job_ids: Sequence[int], timeout: float,
                 until_launched: bool = False) -> pb.WaitResponse:
        """One Wait RPC: the daemon waits up to `timeout` seconds (< 0: not at all)."""
        request = pb.WaitRequest(job_ids=list(job_ids), timeout_seconds=timeout)
        if until_launched:
            request.until_launched = True
        return self.call("Wait", request,
                         timeout=max(timeout, 0.0) + self.connection.call_timeout)

    def cancel(self, job_ids: Sequence[int]) -> list[int]:
        """Cancels jobs that have not started; returns the ids it cancelled."""
        return list(self.call("CancelJobs", pb.CancelJobsRequest(job_ids=list(job_ids)))
                    .cancelled)

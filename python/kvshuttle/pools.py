"""Pools: daemon-owned device or pinned-host memory of N blocks in one layout, shared by name
across sessions (tensor-parallel ranks write head slices into the same pool blocks)."""
from __future__ import annotations

from typing import Sequence

from kvshuttle._stubs import pb
from kvshuttle.layout import Layout
from kvshuttle.rpc import SessionRpc

MEMORY_KINDS = {"device": pb.MEMORY_DEVICE, "host": pb.MEMORY_HOST}


def parse_memory(memory: str) -> int:
    if not isinstance(memory, str) or memory.lower() not in MEMORY_KINDS:
        raise ValueError(f"memory: {memory!r}; allowed: {', '.join(MEMORY_KINDS)}")
    return MEMORY_KINDS[memory.lower()]


class Pool:
    """A handle on a pool, used through one session's calls (`rpc`): allocate / free block
    ids, destroy.

    Attributes mirror the daemon's Pool at the time the handle was made (`refresh()` reloads
    them): name, layout, memory ("device" / "host"), gpu_uuid, num_blocks, blocks_in_use, bytes.
    """

    def __init__(self, rpc: SessionRpc, message: pb.Pool) -> None:
        self.rpc = rpc
        self._load(message)

    def _load(self, message: pb.Pool) -> None:
        self.name: str = message.name
        self.layout = Layout.from_proto(message.layout)
        self.memory = "device" if message.memory == pb.MEMORY_DEVICE else "host"
        self.gpu_uuid: str = message.gpu_uuid
        self.num_blocks: int = message.num_blocks
        self.blocks_in_use: int = message.blocks_in_use
        self.bytes: int = message.bytes

    def refresh(self) -> Pool:
        """Reloads the pool's numbers from the daemon (NotFoundError once destroyed)."""
        self._load(self.rpc.find_pool(self.name))
        return self

    def allocate(self, count: int) -> list[int]:
        """Takes `count` free block ids (ResourceExhaustedError when too few are free)."""
        return self.rpc.allocate_blocks(self.name, count)

    def free(self, block_ids: Sequence[int]) -> None:
        """Returns block ids to the pool."""
        self.rpc.free_blocks(self.name, block_ids)

    def destroy(self) -> None:
        """Destroys the pool for every session."""
        self.rpc.destroy_pool(self.name)

    def __repr__(self) -> str:
        return (f"Pool({self.name!r}, {self.layout}, memory={self.memory}, "
                f"num_blocks={self.num_blocks}, in_use={self.blocks_in_use})")

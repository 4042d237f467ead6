"""Array providers: the same tests run on host memory (numpy, or torch CPU tensors for dtypes
numpy lacks, all in kvshuttle shared memory) and on CUDA memory (torch tensors).

Random contents are random bytes, so every bit pattern (NaNs, denormals) must survive the copy.
"""
from __future__ import annotations

import importlib.util
import math
from typing import Any, Sequence

import numpy as np

import kvshuttle

HAVE_TORCH = importlib.util.find_spec("torch") is not None

# Short dtype name → (numpy dtype or None, torch dtype attribute name).
_DTYPES: dict[str, tuple[str | None, str]] = {
    "f16": ("float16", "float16"),
    "bf16": (None, "bfloat16"),
    "f32": ("float32", "float32"),
    "f64": ("float64", "float64"),
    "fp8_e4m3": (None, "float8_e4m3fn"),
    "int8": ("int8", "int8"),
    "uint8": ("uint8", "uint8"),
}
# What the GPU tier sweeps (the list); the host tier adds the integer types and needs
# torch for bf16 / fp8.
GPU_DTYPES = ["f16", "bf16", "f32", "f64", "fp8_e4m3"]
HOST_DTYPES = ["f16", "f32", "f64", "int8", "uint8"] + (["bf16", "fp8_e4m3"] if HAVE_TORCH
                                                        else [])

_ARENA_MIN_BYTES = 16 << 20


class HostArrays:
    """Arrays in kvshuttle shared memory, carved from HostArenas (one region per arena)."""

    name = "host"
    device = "cpu"

    def __init__(self) -> None:
        self._arenas: list[kvshuttle.HostArena] = []

    def empty(self, shape: Sequence[int], dtype: str) -> Any:
        np_name, torch_name = _DTYPES[dtype]
        if np_name is not None:
            spec: Any = np.dtype(np_name)
        else:
            import torch
            spec = getattr(torch, torch_name)
        nbytes = math.prod(shape) * kvshuttle.dtypes.parse(dtype).itemsize
        for arena in self._arenas:
            if arena.capacity - arena.used >= nbytes + arena.alignment:
                return arena.empty(shape, spec)
        arena = kvshuttle.HostArena(max(_ARENA_MIN_BYTES, nbytes + 4096))
        self._arenas.append(arena)
        return arena.empty(shape, spec)

    def random(self, shape: Sequence[int], dtype: str, rng: np.random.Generator) -> Any:
        array = self.empty(shape, dtype)
        raw = rng.integers(0, 256, size=math.prod(shape) * array_itemsize(array),
                           dtype=np.uint8)
        flat = array.reshape(-1)
        if isinstance(flat, np.ndarray):
            flat.view(np.uint8)[:] = raw
        else:
            import torch
            flat.view(torch.uint8).copy_(torch.from_numpy(raw))
        return array

    def close(self) -> None:
        for arena in self._arenas:
            arena.close()
        self._arenas.clear()


class CudaArrays:
    """torch CUDA tensors on device 0 (allocated by torch's caching allocator)."""

    name = "cuda"

    def __init__(self) -> None:
        import torch
        self.torch = torch
        self.device = "cuda:0"

    def empty(self, shape: Sequence[int], dtype: str) -> Any:
        return self.torch.empty(tuple(shape), dtype=getattr(self.torch, _DTYPES[dtype][1]),
                                device=self.device)

    def random(self, shape: Sequence[int], dtype: str, rng: np.random.Generator) -> Any:
        torch = self.torch
        array = self.empty(shape, dtype)
        raw = rng.integers(0, 256, size=math.prod(shape) * array.element_size(), dtype=np.uint8)
        array.reshape(-1).view(torch.uint8).copy_(torch.from_numpy(raw).to(self.device))
        return array

    def close(self) -> None:
        self.torch.cuda.synchronize()


def array_itemsize(array: Any) -> int:
    return array.itemsize if isinstance(array, np.ndarray) else array.element_size()

"""The obvious definitions the daemon is checked against, written with stack / reshape /
permute so they run on numpy arrays and torch tensors (CPU or CUDA) alike, plus the shapes the
tests sweep and a byte-exact comparison.

Shapes are (nb, nl, no, nt, nh, hd): blocks, layers, outer chunks, tokens, heads, head dim.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np


class Shape(NamedTuple):
    nb: int
    nl: int
    no: int
    nt: int
    nh: int
    hd: int


# The seed's shape (nh 3, nl 2, no 2, nt 4, hd 5), then odd ones: each changes one thing.
SHAPES: dict[str, Shape] = {
    "seed": Shape(2, 2, 2, 4, 3, 5),
    "hd46_nb1": Shape(1, 2, 2, 4, 3, 46),
    "nt1": Shape(3, 2, 2, 1, 3, 5),
    "nh1": Shape(3, 2, 2, 4, 1, 5),
    "no1": Shape(3, 2, 1, 4, 3, 5),
    "nl3": Shape(3, 3, 2, 4, 3, 5),
    "nb7": Shape(7, 2, 2, 4, 3, 5),
    "llama": Shape(3, 4, 2, 16, 8, 128),
}


def is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def stack(xs: Sequence[Any]) -> Any:
    if is_torch(xs[0]):
        import torch
        return torch.stack(list(xs))
    return np.stack(xs)


def permute(x: Any, perm: Sequence[int]) -> Any:
    return x.permute(*perm) if is_torch(x) else x.transpose(perm)


def chunk_shape(s: Shape, layout: str) -> tuple[int, int, int]:
    return (s.nt, s.nh, s.hd) if layout == "NHD" else (s.nh, s.nt, s.hd)


def stack_to_universal(chunks: Sequence[Any], s: Shape, layout: str) -> Any:
    """nl*no chunks ([nt, nh, hd] NHD or [nh, nt, hd] HND) → [nh, nl, no, nt, hd]."""
    x = stack(chunks).reshape(s.nl, s.no, *chunk_shape(s, layout))
    return permute(x, (3, 0, 1, 2, 4) if layout == "NHD" else (2, 0, 1, 3, 4))


def universal_to_stack(universal: Any, s: Shape, layout: str) -> list[Any]:
    """[nh, nl, no, nt, hd] → nl*no chunks of the layout."""
    x = permute(universal, (1, 2, 3, 0, 4) if layout == "NHD" else (1, 2, 0, 3, 4))
    x = x.reshape(s.nl * s.no, *chunk_shape(s, layout))
    return [x[i] for i in range(s.nl * s.no)]


def stack_to_operational(chunks: Sequence[Any], s: Shape) -> Any:
    """nl*no chunks → [nl, no, nt*nh*hd] (each chunk keeps its own order)."""
    return stack(chunks).reshape(s.nl, s.no, s.nt * s.nh * s.hd)


def operational_to_stack(operational: Any, s: Shape, layout: str) -> list[Any]:
    x = operational.reshape(s.nl * s.no, *chunk_shape(s, layout))
    return [x[i] for i in range(s.nl * s.no)]


def cache_block(caches: Sequence[Any], block: int, layout: str, kv_first: bool) -> Any:
    """Block `block` of per-layer vLLM caches as [nl, no, nt, nh, hd] (NHD order), for rank-5
    caches ([2, nb, ..] when kv_first, else [nb, 2, ..]; [.., nh, nt, hd] for HND)."""
    per_layer = [c[:, block] if kv_first else c[block] for c in caches]
    x = stack(per_layer)  # [nl, 2, a, b, hd]
    return x if layout == "NHD" else permute(x, (0, 1, 3, 2, 4))


def as_bytes(x: Any) -> Any:
    """A contiguous uint8 view (same library and device)."""
    if is_torch(x):
        import torch
        return x.contiguous().view(torch.uint8)
    return np.ascontiguousarray(x).view(np.uint8)


def bytes_equal(actual: Any, expected: Any) -> bool:
    """True when both have one shape and identical bytes (NaN payloads included)."""
    if tuple(actual.shape) != tuple(expected.shape):
        return False
    a, e = as_bytes(actual), as_bytes(expected)
    if is_torch(a):
        import torch
        return bool(torch.equal(a, e.to(a.device)))
    return bool(np.array_equal(a, e))


def describe_difference(actual: Any, expected: Any) -> str:
    """For assertion messages: shapes, and the number and first index of differing bytes."""
    if tuple(actual.shape) != tuple(expected.shape):
        return f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a = as_bytes(actual)
    e = as_bytes(expected)
    if is_torch(a):
        a, e = a.cpu().numpy(), e.cpu().numpy()
    diff = np.flatnonzero(a.reshape(-1) != e.reshape(-1))
    return f"{diff.size} of {a.size} bytes differ, first at byte {diff[0] if diff.size else -1}"

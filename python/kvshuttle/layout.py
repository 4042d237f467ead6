"""Layouts as values: a kind (NHD/HND stack, operational, universal), a block shape and a dtype.

    Layout.of("universal", nl=80, no=2, nt=16, nh=8, hd=128, dtype="bf16")

A block of a stack kind is nl*no chunks ("slots", slot = l*no + o), each [nt, nh, hd] (NHD) or
[nh, nt, hd] (HND) at its own address; the other kinds are one contiguous buffer per block:
operational [nl, no, nt*nh*hd] (inner in NHD or HND order) and universal [nh, nl, no, nt, hd].
"""
from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

from kvshuttle import dtypes
from kvshuttle._stubs import pb

# Dimensions are uint32 in the proto.
_MAX_DIM = 2**32 - 1


class LayoutKind(enum.Enum):
    """The five layouts; values are the names the daemon's CLI uses."""

    NHD = "nhd"
    HND = "hnd"
    OPERATIONAL_NHD = "operational_nhd"
    OPERATIONAL_HND = "operational_hnd"
    UNIVERSAL = "universal"

    @property
    def proto(self) -> int:
        return _KIND_TO_PROTO[self]

    @property
    def is_stack(self) -> bool:
        """True for the kinds with nl*no chunk addresses per block."""
        return self in (LayoutKind.NHD, LayoutKind.HND)

    @classmethod
    def parse(cls, value: Any, what: str = "layout") -> LayoutKind:
        """A LayoutKind from itself or a case-insensitive name ("NHD", "universal")."""
        if isinstance(value, LayoutKind):
            return value
        if isinstance(value, str):
            for kind in cls:
                if kind.value == value.lower():
                    return kind
        raise ValueError(f"{what}: {value!r} is not a layout; allowed: "
                         f"{', '.join(k.value for k in cls)}")

    @classmethod
    def from_proto(cls, value: int) -> LayoutKind:
        for kind, proto in _KIND_TO_PROTO.items():
            if proto == value:
                return kind
        raise ValueError(f"layout: proto value {value} is not a known LayoutKind")


_KIND_TO_PROTO = {
    LayoutKind.NHD: pb.LAYOUT_NHD,
    LayoutKind.HND: pb.LAYOUT_HND,
    LayoutKind.OPERATIONAL_NHD: pb.LAYOUT_OPERATIONAL_NHD,
    LayoutKind.OPERATIONAL_HND: pb.LAYOUT_OPERATIONAL_HND,
    LayoutKind.UNIVERSAL: pb.LAYOUT_UNIVERSAL,
}


@dataclass(frozen=True)
class BlockShape:
    """Dimensions of one block: layers, outer chunks (2 = K/V, 1 = MLA), tokens, heads, head
    dim (elements). Every field is in [1, 2**32)."""

    nl: int
    no: int
    nt: int
    nh: int
    hd: int

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"shape.{field.name}: expected an int, got {value!r}")
            if not 1 <= value <= _MAX_DIM:
                raise ValueError(f"shape.{field.name}: {value}; allowed: 1 to {_MAX_DIM}")

    @property
    def chunk_elements(self) -> int:
        """Elements of one (layer, outer) chunk: nt*nh*hd."""
        return self.nt * self.nh * self.hd

    @property
    def block_elements(self) -> int:
        return self.nl * self.no * self.chunk_elements


@dataclass(frozen=True)
class Layout:
    """A layout kind + block shape + dtype (the proto's Layout)."""

    kind: LayoutKind
    shape: BlockShape
    dtype: dtypes.DType

    @classmethod
    def of(cls, kind: LayoutKind | str, *, nl: int, no: int, nt: int, nh: int, hd: int,
           dtype: Any) -> Layout:
        """Layout.of("universal", nl=2, no=2, nt=16, nh=8, hd=128, dtype="bf16")."""
        return cls(LayoutKind.parse(kind), BlockShape(nl, no, nt, nh, hd), dtypes.parse(dtype))

    def replace(self, kind: LayoutKind | str | None = None, dtype: Any = None,
                **dims: int) -> Layout:
        """A copy with another kind, dtype or dimensions: layout.replace("universal", nh=8)."""
        return Layout(LayoutKind.parse(kind) if kind is not None else self.kind,
                      dataclasses.replace(self.shape, **dims),
                      dtypes.parse(dtype) if dtype is not None else self.dtype)

    @property
    def slots(self) -> int:
        """Addresses per block: nl*no for the stacks, 1 otherwise."""
        return self.shape.nl * self.shape.no if self.kind.is_stack else 1

    @property
    def slot_bytes(self) -> int:
        """Bytes at one address: a chunk for the stacks, the whole block otherwise."""
        elements = self.shape.chunk_elements if self.kind.is_stack else self.shape.block_elements
        return elements * self.dtype.itemsize

    @property
    def block_bytes(self) -> int:
        return self.shape.block_elements * self.dtype.itemsize

    @property
    def slot_shape(self) -> tuple[int, ...]:
        """The tensor shape of one slot: a chunk for the stacks, a block buffer otherwise."""
        s = self.shape
        return {
            LayoutKind.NHD: (s.nt, s.nh, s.hd),
            LayoutKind.HND: (s.nh, s.nt, s.hd),
            LayoutKind.OPERATIONAL_NHD: (s.nl, s.no, s.chunk_elements),
            LayoutKind.OPERATIONAL_HND: (s.nl, s.no, s.chunk_elements),
            LayoutKind.UNIVERSAL: (s.nh, s.nl, s.no, s.nt, s.hd),
        }[self.kind]

    def to_proto(self) -> pb.Layout:
        s = self.shape
        return pb.Layout(kind=self.kind.proto, dtype=self.dtype.proto,
                         shape=pb.BlockShape(nl=s.nl, no=s.no, nt=s.nt, nh=s.nh, hd=s.hd))

    @classmethod
    def from_proto(cls, message: pb.Layout) -> Layout:
        s = message.shape
        return cls(LayoutKind.from_proto(message.kind), BlockShape(s.nl, s.no, s.nt, s.nh, s.hd),
                   dtypes.from_proto(message.dtype))

    def __str__(self) -> str:
        s = self.shape
        return (f"{self.kind.value}[nl={s.nl}, no={s.no}, nt={s.nt}, nh={s.nh}, hd={s.hd}]"
                f" {self.dtype}")

"""Element types: the daemon's DType enum and how numpy / torch dtypes map onto it.

Conversions are byte copies, so the daemon only needs the element size, but the dtype is
recorded and both sides of a job must agree. Accepted spellings: the short names below
("bf16"), numpy and torch names ("bfloat16", "torch.bfloat16", "float8_e4m3fn"), numpy dtype
objects and torch dtype objects (torch is never imported here).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kvshuttle._stubs import pb


@dataclass(frozen=True)
class DType:
    """One element type the daemon knows: short name, proto enum value, bytes per element."""

    name: str
    proto: int
    itemsize: int

    def __str__(self) -> str:
        return self.name


F16 = DType("f16", pb.DTYPE_F16, 2)
BF16 = DType("bf16", pb.DTYPE_BF16, 2)
F32 = DType("f32", pb.DTYPE_F32, 4)
F64 = DType("f64", pb.DTYPE_F64, 8)
FP8_E4M3 = DType("fp8_e4m3", pb.DTYPE_FP8_E4M3, 1)
FP8_E5M2 = DType("fp8_e5m2", pb.DTYPE_FP8_E5M2, 1)
INT8 = DType("int8", pb.DTYPE_INT8, 1)
UINT8 = DType("uint8", pb.DTYPE_UINT8, 1)

ALL: tuple[DType, ...] = (F16, BF16, F32, F64, FP8_E4M3, FP8_E5M2, INT8, UINT8)

# Every accepted spelling (lower case, without a "torch." prefix) → DType.
_BY_NAME: dict[str, DType] = {
    **{d.name: d for d in ALL},
    "float16": F16, "half": F16,
    "bfloat16": BF16,
    "float32": F32, "float": F32,
    "float64": F64, "double": F64,
    "float8_e4m3fn": FP8_E4M3, "float8_e4m3": FP8_E4M3, "e4m3": FP8_E4M3,
    "float8_e5m2": FP8_E5M2, "e5m2": FP8_E5M2,
}
_BY_PROTO: dict[int, DType] = {d.proto: d for d in ALL}

SUPPORTED_NAMES = ", ".join(d.name for d in ALL)


def dtype_name(obj: Any) -> str:
    """The bare name of a dtype-like object: "bfloat16" for torch.bfloat16, "float16" for
    numpy.float16 or np.dtype("float16"), the string itself for a string."""
    if isinstance(obj, DType):
        return obj.name
    if isinstance(obj, str):
        name = obj
    elif isinstance(obj, (np.dtype, type)):
        try:
            name = np.dtype(obj).name  # a numpy dtype or scalar type such as np.float16
        except TypeError:
            name = str(obj)
    else:
        name = str(obj)  # torch dtypes print as "torch.bfloat16"
    return name.lower().removeprefix("torch.")


def lookup(obj: Any) -> DType | None:
    """The DType of a dtype-like object, or None when the daemon has no such type."""
    if isinstance(obj, DType):
        return obj
    return _BY_NAME.get(dtype_name(obj))


def parse(obj: Any, what: str = "dtype") -> DType:
    """Like lookup, but raises ValueError naming `what`, the value and the supported types."""
    found = lookup(obj)
    if found is None:
        raise ValueError(f"{what}: {dtype_name(obj)!r} is not supported; "
                         f"supported: {SUPPORTED_NAMES}")
    return found


def from_proto(value: int) -> DType:
    """The DType of a proto enum value (ValueError for DTYPE_UNSPECIFIED or unknown values)."""
    try:
        return _BY_PROTO[value]
    except KeyError:
        raise ValueError(f"dtype: proto value {value} is not a known DType") from None

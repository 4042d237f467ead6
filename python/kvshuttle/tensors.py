"""One small adapter over torch tensors and numpy arrays: what the client needs to know about an
array (shape, dtype, device, contiguity, address) without caring which library made it.

torch is never imported here: an object is a torch tensor only if torch was imported by the
caller, so the package works (host memory, numpy) where torch is not installed.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from kvshuttle import dtypes


@dataclass(frozen=True)
class TensorInfo:
    """What the client knows about one tensor or array. `obj` is the array itself."""

    obj: Any
    shape: tuple[int, ...]
    dtype_name: str            # "bfloat16", "float16", "int32" (library's own name)
    dtype: dtypes.DType | None  # None: the daemon has no such element type
    itemsize: int
    device: str                # "cpu" or "cuda:<index>"
    contiguous: bool
    data_ptr: int              # address of element 0
    nbytes: int
    strides: tuple[int, ...]   # in elements

    @property
    def extent_bytes(self) -> int:
        """Bytes from element 0 to one past the last element (≥ nbytes for views with gaps;
        strides are non-negative)."""
        if self.nbytes == 0:
            return 0
        last = sum((d - 1) * abs(s) for d, s in zip(self.shape, self.strides))
        return (last + 1) * self.itemsize

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def device_index(self) -> int:
        """CUDA device ordinal (0 for host arrays)."""
        return int(self.device.split(":", 1)[1]) if self.is_cuda else 0

    @property
    def library(self) -> str:
        return "numpy" if isinstance(self.obj, np.ndarray) else "torch"


def torch_module() -> Any | None:
    """The torch module if this process imported it, else None (never imports it)."""
    return sys.modules.get("torch")


def is_tensor(obj: Any) -> bool:
    """True for numpy arrays and torch tensors."""
    if isinstance(obj, np.ndarray):
        return True
    torch = torch_module()
    return torch is not None and isinstance(obj, torch.Tensor)


def describe(obj: Any, what: str) -> TensorInfo:
    """The TensorInfo of a numpy array or torch tensor; TypeError naming `what` otherwise."""
    if isinstance(obj, np.ndarray):
        return TensorInfo(
            obj=obj, shape=tuple(obj.shape), dtype_name=obj.dtype.name,
            dtype=dtypes.lookup(obj.dtype), itemsize=obj.dtype.itemsize, device="cpu",
            contiguous=bool(obj.flags["C_CONTIGUOUS"]),
            data_ptr=int(obj.__array_interface__["data"][0]), nbytes=int(obj.nbytes),
            strides=tuple(s // obj.dtype.itemsize for s in obj.strides))
    torch = torch_module()
    if torch is not None and isinstance(obj, torch.Tensor):
        device = "cpu" if obj.device.type == "cpu" else str(obj.device)
        if obj.device.type == "cuda" and obj.device.index is None:
            device = "cuda:0"
        return TensorInfo(
            obj=obj, shape=tuple(obj.shape), dtype_name=dtypes.dtype_name(obj.dtype),
            dtype=dtypes.lookup(obj.dtype), itemsize=obj.element_size(), device=device,
            contiguous=obj.is_contiguous(), data_ptr=obj.data_ptr(),
            nbytes=obj.numel() * obj.element_size(), strides=tuple(obj.stride()))
    raise TypeError(f"{what}: expected a torch.Tensor or numpy.ndarray, got "
                    f"{type(obj).__module__}.{type(obj).__qualname__}")


def check_contiguous(info: TensorInfo, what: str) -> None:
    """ValueError naming `what` when the tensor is not C-contiguous."""
    if not info.contiguous:
        raise ValueError(f"{what}: not contiguous (shape {info.shape}, strides {info.strides} "
                         "elements); pass a contiguous tensor (.contiguous() / "
                         "numpy.ascontiguousarray)")


def check_dtype(info: TensorInfo, what: str) -> dtypes.DType:
    """The tensor's DType; ValueError naming `what` when the daemon has no such element type."""
    if info.dtype is None:
        raise ValueError(f"{what}: dtype {info.dtype_name} is not supported; supported: "
                         f"{dtypes.SUPPORTED_NAMES}")
    return info.dtype

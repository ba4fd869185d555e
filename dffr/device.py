"""Compute-device selection, in one place for PyTorch and TensorFlow.

`auto` means CUDA when present, CPU otherwise; `cpu`, `cuda` or `cuda:N` force a choice.
Frameworks are imported lazily: asking for a torch device must not pay for importing
TensorFlow, and vice versa.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from dffr.errors import DeviceError

_SPEC = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class Device:
    """A resolved device: `kind` is 'cpu' or 'cuda', `index` the GPU number."""

    kind: str
    index: int = 0

    @property
    def torch(self) -> str:
        """The name torch.device() takes."""
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"

    @property
    def tensorflow(self) -> str:
        """The name tf.device() takes."""
        return "/CPU:0" if self.kind == "cpu" else f"/GPU:{self.index}"

    def __str__(self) -> str:
        return self.torch


def _cuda_count() -> int:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(spec: str | None = None) -> Device:
    """Turn 'auto' / 'cpu' / 'cuda' / 'cuda:N' (or $DFFR_DEVICE) into a Device."""
    spec = (spec or os.environ.get("DFFR_DEVICE") or "auto").strip().lower()
    if not _SPEC.match(spec):
        raise DeviceError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N")
    if spec == "cpu":
        return Device("cpu")
    count = _cuda_count()
    if spec == "auto":
        return Device("cuda", 0) if count else Device("cpu")
    index = int(spec.split(":")[1]) if ":" in spec else 0
    if index >= count:
        have = f"{count} CUDA device(s)" if count else "no CUDA device"
        raise DeviceError(f"device {spec!r} requested but this machine has {have}")
    return Device("cuda", index)


PRECISIONS = ("auto", "float32", "bfloat16", "float16")


def compute_dtype(precision: str, device: Device) -> str:
    """The dtype a model computes in (its weights stay float32): `auto` is float16 with
    loss scaling on a GPU and float32 on a CPU; bfloat16 where asked for by name."""
    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "float16" if device.kind == "cuda" else "float32"
    if precision == "float16" and device.kind != "cuda":
        raise DeviceError(
            "precision float16 needs a GPU (a CPU runs it slowly and in part not at all): "
            "use bfloat16 or float32"
        )
    return precision


def native_bfloat16() -> bool:
    """Does this CPU compute bfloat16 in hardware (AVX512-BF16 or AMX)? There mixed
    bfloat16 trains convolutions about 1.7x faster; elsewhere it is emulated, slower."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags

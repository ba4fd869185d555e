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

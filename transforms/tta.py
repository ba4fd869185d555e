"""Test-time augmentation: views of each region image scored beside the image itself.

`hflip` (left-right) and `rotateN` (+N and -N degrees) views are made with the same
perturbations as robustness sweeps and training augmentation use; a scorer averages
P(fake) over the image and its views. A setting is written as its views' names in one
canonical order (`tta_label`), so scores with different settings are never mixed.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from dffr.errors import DffrError
from dffr.transforms.perturbations import hflip, perturb


def parse_tta(names) -> tuple[str, ...]:
    """The TTA view names, validated, in one canonical order ("" or [] for none)."""
    if isinstance(names, str):
        names = names.split(",")
    names = sorted({n.strip().lower() for n in names if n.strip()})
    for n in names:
        if n != "hflip" and not re.fullmatch(r"rotate\d+(\.\d+)?", n):
            raise DffrError(f"unknown TTA view {n!r}: use hflip or rotateN (N degrees, both ways)")
    return tuple(names)


def tta_label(names) -> str:
    """The `tta` column's value: "" without TTA, else the views, comma separated."""
    return ",".join(parse_tta(names))


def tta_views(names) -> list[Callable[[np.ndarray], np.ndarray]]:
    """Batch transforms for the views `names` asks for, besides the images themselves."""

    def rotated(degrees: float):
        return lambda batch: np.stack([perturb(im, "rotate", degrees) for im in batch])

    views = []
    for n in parse_tta(names):
        if n == "hflip":
            views.append(lambda batch: np.stack([hflip(im) for im in batch]))
        else:
            degrees = float(n[len("rotate") :])
            views += [rotated(degrees), rotated(-degrees)]
    return views

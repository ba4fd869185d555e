"""Training-time augmentation: training images degraded as real media are.

`augment(image, names, p, rng)` passes one image, with probability `p` for each listed
augmentation, through a random
`flip` (left-right), `rotate` (up to 15 degrees either way), `resize` (down to half the
side and back), `blur` (sigma 0.2-1.5), `noise` (std 1-8), `color` (brightness,
contrast and saturation by 0.8-1.2) and `jpeg` (quality 30-95), in that order, whatever
order they are listed in. `dffr.detectors.data.Augmented` seeds the draws by (seed,
epoch, sample position), so an epoch is the same every time it is run (`--resume`
continues exactly); only training data is augmented, never validation or test images.

The images are region images (black outside the region): photometric augmentations
keep that black, as if the whole face had been degraded before its regions were cut.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dffr.errors import DffrError
from dffr.transforms.perturbations import hflip, perturb

_GEOMETRIC = ("flip", "rotate")


def _color(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = image.astype(np.float32) * rng.uniform(0.8, 1.2)  # brightness
    inside = image.any(axis=2)
    mean = x[inside].mean() if inside.any() else 0.0
    x = (x - mean) * rng.uniform(0.8, 1.2) + mean  # contrast
    grey = x @ np.float32([0.299, 0.587, 0.114])
    x = grey[..., None] + (x - grey[..., None]) * rng.uniform(0.8, 1.2)  # saturation
    return np.clip(x.round(), 0, 255).astype(np.uint8)


# name -> image, rng -> image; the order here is the order they are applied in
AUGMENTATIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "flip": lambda im, rng: hflip(im),
    "rotate": lambda im, rng: perturb(im, "rotate", rng.uniform(-15, 15)),
    "resize": lambda im, rng: perturb(im, "resize", rng.uniform(0.1, 0.5)),
    "blur": lambda im, rng: perturb(im, "blur", rng.uniform(0.2, 1.5)),
    "noise": lambda im, rng: perturb(im, "noise", rng.uniform(1, 8), seed=rng),
    "color": _color,
    "jpeg": lambda im, rng: perturb(im, "jpeg", int(rng.integers(5, 71))),
}


def check_augment(names, p: float) -> list[str]:
    """The augmentation names, validated (a DffrError names the valid ones)."""
    if isinstance(names, str):
        names = names.split(",")
    names = [n.strip().lower() for n in names if n.strip()]
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise DffrError(
            f"unknown augmentation(s) {unknown}; choose from {', '.join(AUGMENTATIONS)}"
        )
    if not 0 <= p <= 1:
        raise DffrError(f"augmentation probability {p} is not between 0 and 1")
    return names


def augment(image: np.ndarray, names, p: float, rng: np.random.Generator) -> np.ndarray:
    """One image through each of `names` drawn with probability `p`, in the order of
    AUGMENTATIONS; black outside the region stays black."""
    support = image.any(axis=2)
    for name, fn in AUGMENTATIONS.items():
        if name in names and rng.random() < p:
            image = fn(image, rng)
            if name in _GEOMETRIC:
                support = image.any(axis=2)
    return np.where(support[..., None], image, 0).astype(np.uint8)

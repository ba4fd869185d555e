"""Training-time augmentation: training images degraded as real media are.

`augmented(data, config)` wraps the training data (any `Batches`) so that each image it
serves goes, with probability `augment_p` for each listed augmentation, through a random
`flip` (left-right), `rotate` (up to 15 degrees either way), `resize` (down to half the
side and back), `blur` (sigma 0.2-1.5), `noise` (std 1-8), `color` (brightness,
contrast and saturation by 0.8-1.2) and `jpeg` (quality 30-95), in that order, whatever
order they are listed in. The draws are seeded by (seed, epoch, sample position), so an
epoch is the same every time it is run (`--resume` continues exactly) and labels and
the sample order are the wrapped data's own. Only training data is wrapped; validation
and test images are never augmented.

The images are region images (black outside the region): photometric augmentations
keep that black, as if the whole face had been degraded before its regions were cut.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dffr.detectors.base import DetectorConfig
from dffr.detectors.data import Batches
from dffr.errors import DffrError
from dffr.perturbations import hflip, perturb

_STREAM = 0x617567  # keeps these draws apart from other (seed, epoch, sample) streams
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


class Augmented(Batches):
    """The wrapped data's samples, labels and order, with augmented images."""

    def __init__(self, data: Batches, names, p: float = 0.5, seed: int = 0) -> None:
        self.data = data
        self.names = check_augment(names, p)
        self.p = p
        self.seed = data.seed  # the wrapped data's shuffle
        self.augment_seed = seed

    def __len__(self) -> int:
        return len(self.data)

    @property
    def labels(self) -> np.ndarray:
        return self.data.labels

    @property
    def workers(self) -> int:
        return self.data.workers

    def seen(self, positions) -> None:
        self.data.seen(positions)

    def images(self, positions, epoch: int = 0) -> np.ndarray:
        images = self.data.images(positions, epoch)
        rngs = [
            np.random.default_rng([self.augment_seed, epoch, int(p), _STREAM]) for p in positions
        ]
        return np.stack([self.augment(im, rng) for im, rng in zip(images, rngs, strict=True)])

    def augment(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One image through each listed augmentation drawn (probability p)."""
        support = image.any(axis=2)
        for name, fn in AUGMENTATIONS.items():
            if name in self.names and rng.random() < self.p:
                image = fn(image, rng)
                if name in _GEOMETRIC:
                    support = image.any(axis=2)
        return np.where(support[..., None], image, 0).astype(np.uint8)


def augmented(data: Batches, config: DetectorConfig) -> Batches:
    """Training data augmented as `config` asks (the data itself when it asks for none)."""
    if not config.augment:
        return data
    return Augmented(data, config.augment, config.augment_p, config.seed)

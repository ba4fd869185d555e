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
Geometric ones (`flip`, `rotate`) move the face's landmarks and the region's mask with
the image, so a loss that uses them sees where the face now is; a flip also swaps the
points' left and right (`MIRROR`), so point 36 is still the outer corner of the right eye.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from dffr.errors import DffrError
from dffr.transforms.perturbations import hflip, perturb, perturb_landmarks, rotation_matrix

# iBUG 68-point index of each point's mirror image (jaw, brows, nose, eyes, lips)
MIRROR = np.array(
    [*range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, *range(35, 30, -1)]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65]
)

Moved = tuple[np.ndarray, np.ndarray | None, np.ndarray | None]  # image, landmarks, mask


def _flip(image: np.ndarray, landmarks, mask, rng: np.random.Generator) -> Moved:
    if landmarks is not None:
        landmarks = landmarks[MIRROR] * np.float32([-1, 1]) + np.float32([image.shape[1] - 1, 0])
    return hflip(image), landmarks, None if mask is None else hflip(mask)


def _rotate(image: np.ndarray, landmarks, mask, rng: np.random.Generator) -> Moved:
    degrees = rng.uniform(-15, 15)
    if landmarks is not None:
        landmarks = perturb_landmarks(landmarks, "rotate", degrees, image.shape)
    if mask is not None:
        m, (h, w) = rotation_matrix(degrees, mask.shape), mask.shape[:2]
        mask = cv2.warpAffine(mask.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) > 0
    return perturb(image, "rotate", degrees), landmarks, mask


# geometric: they move the face: (image, landmarks, mask, rng) -> (image, landmarks, mask)
GEOMETRIC = {"flip": _flip, "rotate": _rotate}


def _color(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = image.astype(np.float32) * rng.uniform(0.8, 1.2)  # brightness
    inside = image.any(axis=2)
    mean = x[inside].mean() if inside.any() else 0.0
    x = (x - mean) * rng.uniform(0.8, 1.2) + mean  # contrast
    grey = x @ np.float32([0.299, 0.587, 0.114])
    x = grey[..., None] + (x - grey[..., None]) * rng.uniform(0.8, 1.2)  # saturation
    return np.clip(x.round(), 0, 255).astype(np.uint8)


# photometric: name -> image, rng -> image
PHOTOMETRIC: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "resize": lambda im, rng: perturb(im, "resize", rng.uniform(0.1, 0.5)),
    "blur": lambda im, rng: perturb(im, "blur", rng.uniform(0.2, 1.5)),
    "noise": lambda im, rng: perturb(im, "noise", rng.uniform(1, 8), seed=rng),
    "color": _color,
    "jpeg": lambda im, rng: perturb(im, "jpeg", int(rng.integers(5, 71))),
}
AUGMENTATIONS = (*GEOMETRIC, *PHOTOMETRIC)  # the order they are applied in


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


def augment(
    image: np.ndarray,
    names,
    p: float,
    rng: np.random.Generator,
    landmarks: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> Moved:
    """One image through each of `names` drawn with probability `p`, in the order of
    AUGMENTATIONS, with its landmarks and region mask moved along (None stays None);
    black outside the region stays black."""
    support = image.any(axis=2)
    for name in AUGMENTATIONS:
        if name in names and rng.random() < p:
            if name in GEOMETRIC:
                image, landmarks, mask = GEOMETRIC[name](image, landmarks, mask, rng)
                support = image.any(axis=2)
            else:
                image = PHOTOMETRIC[name](image, rng)
    return np.where(support[..., None], image, 0).astype(np.uint8), landmarks, mask

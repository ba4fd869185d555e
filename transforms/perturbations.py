"""Image degradations that real media go through, each with a numeric strength.

Robustness sweeps, training-time augmentation and test-time augmentation all use these
on uint8 RGB images. For every perturbation **level 0 returns the image unchanged**,
bit for bit (the very same array), and a higher level is a stronger degradation:

- `jpeg`: JPEG quality loss, encoded and decoded with OpenCV at quality `100 - level`
  (a whole number, 0-99; 0 means not compressed at all, not quality 100);
- `blur`: Gaussian blur of standard deviation `level` pixels (OpenCV's kernel);
- `noise`: additive Gaussian noise of standard deviation `level` grey levels (0-255),
  seeded, rounded and clipped;
- `dim`: the fraction of the light lost (0 <= level < 1): every level multiplied by
  `1 - level` and rounded, as a dim room's exposure gives it (with `noise` after it, the
  sensor's grain);
- `resize`: the fraction of the side lost (0 <= level < 1): shrunk to `1 - level` of its
  size (area averaging) and enlarged back (bilinear), so the shape stays;
- `rotate`: `level` degrees counter-clockwise as displayed (OpenCV's convention; y points
  down) about the image centre, black where the corners come in. Rotating a square
  image by 90 equals `np.rot90(image)`.

Geometric perturbations also move points (`perturb_landmarks`), so region masks cut from
moved landmarks follow the moved face.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from dffr.errors import DffrError
from dffr.regions.crop import apply_affine
from dffr.registry import Registry

Seed = int | Sequence[int] | np.random.Generator


class PerturbationError(DffrError):
    """An unknown perturbation, a level it does not accept, or an image it cannot take."""


@dataclass(frozen=True)
class Perturbation:
    """How to apply one degradation, what its levels mean and which are valid."""

    name: str
    apply: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
    levels: tuple[float, ...]  # the default sweep, starting at 0 (unchanged)
    unit: str  # what a level means, for tables and plot axes
    valid: Callable[[float], bool]
    valid_text: str
    matrix: Callable[[float, tuple[int, ...]], np.ndarray] | None = None  # geometric only


PERTURBATIONS: Registry[Perturbation] = Registry("perturbation")


def _register(name: str, levels, unit: str, valid, valid_text: str, matrix=None):
    def add(fn):
        PERTURBATIONS.register(name)(
            Perturbation(name, fn, tuple(map(float, levels)), unit, valid, valid_text, matrix)
        )
        return fn

    return add


@_register(
    "jpeg",
    (0, 10, 30, 50, 70),
    "JPEG quality loss (quality = 100 - level)",
    lambda v: float(v).is_integer() and 0 <= v <= 99,
    "a whole number from 0 to 99 (quality = 100 - level)",
)
def jpeg(image: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    params = [cv2.IMWRITE_JPEG_QUALITY, 100 - int(level)]
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise PerturbationError("OpenCV could not JPEG-encode the image")
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@_register(
    "blur", (0, 0.5, 1, 2, 3), "Gaussian blur sigma (pixels)", lambda v: v >= 0, "at least 0"
)
def blur(image: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigmaX=level, sigmaY=level)


@_register(
    "noise", (0, 2, 5, 10, 20), "Gaussian noise std (grey levels)", lambda v: v >= 0, "at least 0"
)
def noise(image: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    noisy = image + rng.normal(0.0, level, size=image.shape)
    return np.clip(noisy.round(), 0, 255).astype(np.uint8)


@_register(
    "dim",
    (0, 0.5, 0.7, 0.85),
    "fraction of the light lost (levels x (1 - level))",
    lambda v: 0 <= v < 1,
    "from 0 up to (not including) 1",
)
def dim(image: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip((image * (1 - level)).round(), 0, 255).astype(np.uint8)


@_register(
    "resize",
    (0, 0.25, 0.5, 0.75),
    "fraction of the side lost (scale = 1 - level)",
    lambda v: 0 <= v < 1,
    "from 0 up to (not including) 1",
)
def resize(image: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    small = (max(1, round(w * (1 - level))), max(1, round(h * (1 - level))))
    down = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
    return cv2.resize(down, (w, h), interpolation=cv2.INTER_LINEAR)


def rotation_matrix(degrees: float, shape: tuple[int, ...]) -> np.ndarray:
    """2x3 map of pixel centres for a counter-clockwise rotation about the centre."""
    h, w = shape[:2]
    return cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), float(degrees), 1.0)


@_register(
    "rotate",
    (0, 5, 10, 20, 30),
    "rotation (degrees, counter-clockwise)",
    lambda v: bool(np.isfinite(v)),
    "a finite number of degrees",
    matrix=rotation_matrix,
)
def rotate(image: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    m = rotation_matrix(level, image.shape)
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)


def get_perturbation(name: str) -> Perturbation:
    """The perturbation called `name`, or a PerturbationError listing the known ones."""
    try:
        return PERTURBATIONS.get(name.strip())
    except KeyError as e:
        raise PerturbationError(str(e).strip("'\"")) from None


def check_level(name: str, level: float) -> float:
    """`level` as a float, or a PerturbationError saying which levels `name` takes."""
    p = get_perturbation(name)
    level = float(level)
    if not p.valid(level):
        raise PerturbationError(f"{p.name} level {level:g} is invalid: use {p.valid_text}")
    return level


def perturb(image: np.ndarray, name: str, level: float, seed: Seed = 0) -> np.ndarray:
    """The uint8 RGB `image` degraded by perturbation `name` at `level`; level 0 gives
    back `image` itself. Deterministic for a given `seed` (only `noise` draws)."""
    level = check_level(name, level)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise PerturbationError(
            f"perturbations take uint8 RGB images (H, W, 3), not {image.dtype} {image.shape}"
        )
    if level == 0:
        return image
    return get_perturbation(name).apply(image, level, np.random.default_rng(seed))


def perturb_landmarks(
    landmarks: np.ndarray, name: str, level: float, shape: tuple[int, ...]
) -> np.ndarray:
    """Points (n, 2) in pixels of an image of `shape`, moved as `perturb` moves the
    image's content (unchanged for photometric perturbations and at level 0)."""
    level = check_level(name, level)
    p = get_perturbation(name)
    if p.matrix is None or level == 0:
        return landmarks
    return apply_affine(p.matrix(level, shape), landmarks)


def hflip(image: np.ndarray) -> np.ndarray:
    """Mirror left-right. Not a degradation, so not a sweep: augmentation and TTA use it."""
    return np.ascontiguousarray(image[:, ::-1])

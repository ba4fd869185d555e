"""Fakes made from real faces, so a detector can learn from real faces only.

- `fwa`: face warping artifacts (Li & Lyu, CVPRW 2019, the protocol DSP-FWA was trained
  with): align the face to a canonical frame at a random low resolution, blur it, warp it
  back with the inverse transform and blend it over the original with a landmark mask.
- `sbi`: self-blended images (Shiohara & Yamasaki, CVPR 2022): blend the face with a
  slightly re-coloured, rescaled and shifted copy of itself.
Both change pixels only inside the landmarks' convex hull (the blend mask is eroded
before it is feathered), which lies inside the `entire` region.
"""

from __future__ import annotations

import cv2
import numpy as np

from dffr.registry import Registry

NEGATIVES: Registry = Registry("negative synthesis")

# canonical positions (unit square) of eye centres, nose tip and mouth corners
_TEMPLATE = np.array([[0.34, 0.40], [0.66, 0.40], [0.50, 0.58], [0.38, 0.75], [0.62, 0.75]])


def _five_points(lm: np.ndarray) -> np.ndarray:
    return np.array([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def blend_mask(
    shape: tuple[int, ...], landmarks: np.ndarray, rng: np.random.Generator, deform: float = 0.0
) -> np.ndarray:
    """A float mask in [0, 1]: the landmarks' hull, eroded then feathered inside itself."""
    h, w = shape[:2]
    pts = np.asarray(landmarks, dtype=np.float64)
    if deform:
        c = pts.mean(0)
        pts = c + (pts - c) * (1 + rng.uniform(-deform, deform, size=pts.shape))
    hull = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, np.round(hull).astype(np.int32), 1)
    hull_mask = np.zeros((h, w), np.uint8)
    hull_full = cv2.convexHull(np.asarray(landmarks, np.float32)).reshape(-1, 2)
    cv2.fillConvexPoly(hull_mask, np.round(hull_full).astype(np.int32), 1)
    mask &= hull_mask  # a deformed mask never leaves the real hull
    size = max(3, int(0.06 * np.ptp(pts[:, 0])) | 1)
    eroded = cv2.erode(mask, np.ones((size, size), np.uint8), iterations=2)
    soft = cv2.GaussianBlur(eroded.astype(np.float32), (size, size), 0)
    # the blur reaches half a kernel, the erosion took a whole one: nothing leaks out
    return soft * mask


def _blend(src: np.ndarray, fake: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None]
    return np.clip(src * (1 - m) + fake * m, 0, 255).round().astype(np.uint8)


@NEGATIVES.register("fwa")
def fwa(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Face-warping artifacts: a low-resolution, blurred face warped back and blended."""
    side = int(rng.choice([48, 64, 80, 96, 128]))
    dst = _TEMPLATE * side
    m, _ = cv2.estimateAffinePartial2D(
        _five_points(landmarks).astype(np.float32), dst.astype(np.float32)
    )
    if m is None:
        return image.copy()
    small = cv2.warpAffine(
        image, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    k = int(rng.choice([1, 3, 5]))
    if k > 1:
        small = cv2.GaussianBlur(small, (k, k), 0)
    h, w = image.shape[:2]
    back = cv2.warpAffine(
        small,
        cv2.invertAffineTransform(m),
        (w, h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
    mask = blend_mask(image.shape, landmarks, rng, deform=0.1)
    return _blend(image.astype(np.float32), back.astype(np.float32), mask)


@NEGATIVES.register("sbi")
def sbi(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Self-blending: the face over a re-coloured, slightly moved copy of itself."""
    h, w = image.shape[:2]
    src = image.astype(np.float32)
    gain = rng.uniform(0.85, 1.15, size=3)
    bias = rng.uniform(-15, 15, size=3)
    recoloured = src * gain + bias
    s = rng.uniform(0.95, 1.05)
    tx, ty = rng.uniform(-0.03, 0.03, size=2) * (w, h)
    cx, cy = w / 2, h / 2
    m = np.array([[s, 0, (1 - s) * cx + tx], [0, s, (1 - s) * cy + ty]])
    moved = cv2.warpAffine(recoloured, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    mask = blend_mask(image.shape, landmarks, rng, deform=0.15) * rng.uniform(0.5, 1.0)
    return _blend(src, moved, mask)

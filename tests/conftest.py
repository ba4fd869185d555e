"""Shared fixtures: the real samples in ../shared (skipped when absent), a few real
photographs that ship with scikit-image, and a place to report measured figures."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
# tests never fetch weights from the internet: a fetch goes to a closed local port (and
# fails at once) unless a test serves the files itself on 127.0.0.1
os.environ["DFFR_WEIGHTS_MIRROR"] = "http://127.0.0.1:9"
_REPORT: dict[str, str] = {}


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared/data, or skip: the suite must pass on a machine without it."""
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip(f"real samples not available ({data} is absent)")
    return data


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    ref = SHARED / "reference"
    if not ref.is_dir():
        pytest.skip(f"reference layouts not available ({ref} is absent)")
    return ref


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real photograph (512x512 RGB) that ships inside scikit-image."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def dlib_backend():
    from dffr.regions import get_backend

    return get_backend("dlib")


@pytest.fixture(scope="session")
def report():
    """report(name, text): a measured figure, printed at the end of the run."""

    def add(name: str, text: str) -> None:
        _REPORT[name] = text

    return add


def pytest_terminal_summary(terminalreporter):
    if _REPORT:
        terminalreporter.section("measured")
        for name, text in sorted(_REPORT.items()):
            terminalreporter.write_line(f"{name}: {text}")


def named(det, path) -> dict:
    """The detector's config for a sidecar beside `path` (<Detector>_<DB>_<region>)."""
    _, ddbb, region = path.stem.split("_")
    return {**det.config.to_dict(), "ddbb": ddbb, "region": region}


def write_video(path: Path, frames, fps: int = 10) -> Path:
    """An MPEG-4 video of the given RGB frames (all of one size)."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    frames = list(frames)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_face_video(path: Path, face: np.ndarray, n_frames: int = 12, size=(320, 240)) -> Path:
    """A short MPEG-4 video of a real face drifting across the frame; frame i's top-left
    8x8 corner has grey level 10*i so a test can tell which frame it got."""
    import cv2

    w, h = size
    small = cv2.resize(face, (h, h))
    frames = []
    for i in range(n_frames):
        frame = np.zeros((h, w, 3), np.uint8)
        x = int(i * (w - h) / max(n_frames - 1, 1))
        frame[:, x : x + h] = small
        frame[:8, :8] = 10 * i
        frames.append(frame)
    return write_video(path, frames)


@pytest.fixture(scope="session")
def face_video(tmp_path_factory, astronaut) -> Path:
    """One synthetic 12-frame face video; tests copy its bytes to build layouts."""
    return write_face_video(tmp_path_factory.mktemp("video") / "face.mp4", astronaut)


@pytest.fixture
def place(face_video):
    """place(root, *relative paths): put a copy of the face video at each path."""

    def put(root: Path, *paths: str) -> None:
        data = face_video.read_bytes()
        for rel in paths:
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

    return put


@pytest.fixture(scope="session")
def tiny_faces(astronaut, dlib_backend):
    """8 real face crops (the astronaut, slightly moved) and 8 fakes
    made from them by face warping (FWA): (images, labels, landmarks), 96 px."""
    import cv2

    from dffr.detectors.negatives import fwa
    from dffr.regions import segment_image

    seg = segment_image(astronaut, dlib_backend, size=96)[0]
    rng = np.random.default_rng(0)
    reals, fakes, lms = [], [], []
    for _ in range(8):
        m = np.float32([[1, 0, rng.uniform(-5, 5)], [0, 1, rng.uniform(-5, 5)]])
        img = cv2.warpAffine(seg.crop.image, m, (96, 96), borderMode=cv2.BORDER_REFLECT)
        lm = seg.crop.landmarks @ m[:, :2].T + m[:, 2]
        reals.append(img)
        fakes.append(fwa(img, lm, rng))
        lms.append(lm)
    images = np.stack(reals + fakes)
    labels = np.array([0] * 8 + [1] * 8)
    return images, labels, np.stack(lms + lms)


@pytest.fixture(scope="session")
def cache(tmp_path_factory, face_video):
    """A folder database with explicit splits, preprocessed: 3 frames a video, 64 px."""
    root = tmp_path_factory.mktemp("db")
    data = face_video.read_bytes()
    for rel in [
        "train/real/a.mp4",
        "train/real/b.mp4",
        "train/fake/c.mp4",
        "train/fake/d.mp4",
        "val/real/e.mp4",
        "val/fake/f.mp4",
        "test/real/g.mp4",
        "test/fake/h.mp4",
    ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    out = tmp_path_factory.mktemp("cache")
    from dffr.datasets import get_dataset
    from dffr.datasets.preprocess import Settings, preprocess

    ds = get_dataset("folder", root)
    preprocess(ds.items(), root, out, Settings(frames=3, size=64), progress=False)
    return out


@pytest.fixture(scope="session")
def models(cache, tmp_path_factory):
    """Tiny DSP-FWA models of the eyes and the mouth, trained one epoch on `cache` as
    database "CelebDF" (models/CelebDF/DSP-FWA_CelebDF_{eyes,mouth}.pt)."""
    from dffr.detectors.base import DetectorConfig
    from dffr.detectors.training import train

    out = tmp_path_factory.mktemp("models")
    for region in ("eyes", "mouth"):
        cfg = DetectorConfig(
            "DSP-FWA",
            region=region,
            ddbb="CelebDF",
            input_size=64,
            epochs=1,
            batch=4,
            pretrained=False,
        )
        train(cfg, cache, out)
    return out


def models_study(path: Path, cache: Path, models: Path, rules: list[str], name: str) -> Path:
    """An experiment YAML at `path` over the `models` fixture's trained models (DSP-FWA,
    eyes and mouth, on `cache` as CelebDF) fusing them by each of `rules`: it only scores
    and fuses (and fits a learned rule on val)."""
    spec = {
        "name": name,
        "caches": {"CelebDF": str(cache)},
        "models": str(models),
        "train": ["CelebDF"],
        "test": ["CelebDF"],
        "detectors": ["DSP-FWA"],
        "regions": ["eyes", "mouth"],
        "training": {"pretrained": False, "input_size": 64},
        "fusion": [{"rule": rule, "subset": ["eyes", "mouth"]} for rule in rules],
        "bootstrap": 0,
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def score_table(
    columns: dict[str, list[float]], labels, split="test", detector="D"
) -> pd.DataFrame:
    """Score rows of one detector, one region per column (video v<i> is row i), as
    `dffr score` writes them: toy inputs for fusion and metrics."""
    rows = []
    for region, values in columns.items():
        for i, (v, y) in enumerate(zip(values, labels, strict=True)):
            rows.append(
                dict(
                    video=f"v{i}",
                    frame=0,
                    label=y,
                    split=split,
                    method="m",
                    test_ddbb="T",
                    train_ddbb="T",
                    detector=detector,
                    region=region,
                    score=v,
                )
            )
    return pd.DataFrame(rows)


@contextlib.contextmanager
def served(folder: Path, handler=None) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 (a free port) serving `folder`; yields its base URL."""
    import http.server
    import threading
    from functools import partial

    handler = handler or http.server.SimpleHTTPRequestHandler
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(handler, directory=str(folder))
    )
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()

"""One image or video in, a verdict and its reasons out: what `dffr detect` prints.

`Models` loads every (detector, region) model of a training database once; calling it
on a file decodes a video once, tracks every face (as `preprocess` does for DFDC), cuts
each face's five regions, scores each region image with its models in one batch per
model, and fuses each face's scores (a fixed rule: there are no labels here to fit one
on). A face's verdict compares its fused P(fake) with a stated threshold: `--threshold`,
or the thresholds chosen on the models' validation faces (the equal-error-rate point,
in their sidecars); with several models their mean, and it says so.

    from dffr.detect import detect
    result = detect("clip.mp4", models="models", ddbb="FaceForensics")
    result.faces[0].verdict, result.faces[0].fused, result.faces[0].scores
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from dffr.errors import DffrError

VERDICTS = ("REAL", "FAKE")


@dataclass
class FaceResult:
    """One face (a track, in a video): its models' P(fake), fused, and the verdict."""

    track: int
    frames: list[int]  # the sampled frames it was seen in
    scores: dict[str, float]  # "detector/region" -> mean P(fake) over its frames
    per_frame: dict[str, list[float]]  # "detector/region" and "fused" -> per frame
    fused: float
    threshold: float
    threshold_source: str
    verdict: str
    face: np.ndarray = field(repr=False)  # its crop in the frame it is largest in
    regions: dict[str, np.ndarray] = field(repr=False)

    def to_dict(self) -> dict:
        return {
            "track": self.track,
            "frames": self.frames,
            "verdict": self.verdict,
            "fused": round(self.fused, 6),
            "threshold": round(self.threshold, 6),
            "threshold_source": self.threshold_source,
            "scores": {k: round(v, 6) for k, v in self.scores.items()},
            "per_frame": {k: [round(x, 6) for x in v] for k, v in self.per_frame.items()},
        }


@dataclass
class Detection:
    """One input: its faces, or why it has none."""

    path: str
    kind: str  # image | video
    frames: list[int]
    faces: list[FaceResult]
    fusion: str
    error: str = ""

    def to_dict(self) -> dict:
        return {
            "input": self.path,
            "kind": self.kind,
            "frames": self.frames,
            "fusion": self.fusion,
            "error": self.error,
            "faces": [f.to_dict() for f in self.faces],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


class Models:
    """The models of one training database, loaded once, and the rule that fuses them."""

    def __init__(
        self,
        models: str | Path,
        ddbb: str,
        detectors=None,
        regions=None,
        fusion: str = "mean",
        threshold: float | None = None,
        device: str | None = None,
        face_detector: str = "hog",
    ) -> None:
        from dffr.detectors.base import DETECTORS, PAPER_DETECTORS
        from dffr.detectors.model_files import load_models, model_path, read_sidecar
        from dffr.fusion.rules import load_rule
        from dffr.regions.landmarks import get_backend
        from dffr.regions.masks import REGIONS

        asked = detectors is not None or regions is not None
        dets = [DETECTORS.canonical(d) for d in (detectors or PAPER_DETECTORS)]
        regs = list(regions or REGIONS)
        keys = [(ddbb, d, r) for d in dets for r in regs]
        found, missing = load_models(models, keys, device)
        if not found or (asked and missing):
            raise DffrError(
                f"no model for {ddbb!r} in {models}"
                if not found
                else f"models asked for but not in {models}: {', '.join(missing)}"
            )
        self.ddbb = ddbb
        self.models = {f"{d}/{r}": (m, r) for (_, d, r), m in found.items()}
        self.rule = load_rule(fusion)
        if self.rule.learns:
            raise DffrError(
                f"fusion rule {fusion!r} learns from labelled validation scores, which a "
                "single file has not: use a fixed rule (mean, max, median, ...)"
            )
        self.fusion = fusion
        if threshold is not None:
            self.threshold, self.threshold_source = float(threshold), "--threshold"
        else:
            recorded = []
            for _, d, r in found:
                meta = read_sidecar(model_path(models, d, ddbb, r))
                thr = meta.get("threshold")
                if not thr:
                    raise DffrError(
                        f"{model_path(models, d, ddbb, r)}: no validation threshold recorded "
                        "(trained by an older dffr): give --threshold"
                    )
                recorded.append(thr["value"])
            self.threshold = float(np.mean(recorded))
            self.threshold_source = (
                "the model's equal-error-rate threshold on its val faces"
                if len(recorded) == 1
                else f"mean of the {len(recorded)} models' equal-error-rate thresholds on "
                "their val faces"
            )
        self.backend = get_backend("dlib", face_detector=face_detector, device=device)

    def __call__(
        self, path: str | Path, frames: int = 20, size: int = 200, progress=None
    ) -> Detection:
        """Detect in one image or video; a file that cannot be read, or has no face,
        gives a Detection with `error` set (a batch goes on). `progress(done, total)` is
        called after each sampled frame."""
        from dffr.datasets.base import VIDEO_SUFFIXES

        path = Path(path)
        kind = "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"
        try:
            sampled, faces = self._faces(path, kind, frames, size, progress)
        except DffrError as e:
            return Detection(str(path), kind, [], [], self.fusion, str(e))
        if not faces:
            why = f"no face found in the {len(sampled)} sampled frame(s)"
            return Detection(str(path), kind, sampled, [], self.fusion, why)
        return Detection(str(path), kind, sampled, self._score(faces), self.fusion)

    def _faces(self, path: Path, kind: str, frames: int, size: int, progress=None):
        """(sampled frames, {track: [(frame, Segmentation)]})."""
        from dffr.datasets.tracking import FaceTracker
        from dffr.datasets.video import read_frames
        from dffr.images import read_image
        from dffr.regions.segment import segment_face

        stream = [(0, read_image(path))] if kind == "image" else read_frames(path, frames)
        tracker = FaceTracker(self.backend, all_faces=True)
        faces: dict[int, list] = {}
        sampled = []
        for index, frame, found in tracker.track(stream):
            sampled.append(int(index))
            for track, face in found:
                faces.setdefault(track, []).append((int(index), segment_face(frame, face, size)))
            if progress is not None:
                progress(len(sampled), 1 if kind == "image" else frames)
        return sampled, faces

    def _score(self, faces: dict[int, list]) -> list[FaceResult]:
        from dffr.fusion.rules import checked

        order = [(t, i) for t in sorted(faces) for i in range(len(faces[t]))]
        regions = {}
        for r in {r for _, r in self.models.values()}:
            regions[r] = np.stack([faces[t][i][1].regions[r] for t, i in order])
        table = pd.DataFrame(
            {k: m.predict(regions[r]).astype(np.float64) for k, (m, r) in self.models.items()}
        )
        table["fused"] = checked(self.rule.apply(table[list(self.models)]), table, self.fusion)
        out = []
        for track in sorted(faces):
            rows = table[[t == track for t, _ in order]]
            seen = faces[track]
            biggest = max(range(len(seen)), key=lambda i: seen[i][1].face.size)
            fused = float(rows["fused"].mean())
            out.append(
                FaceResult(
                    track=track,
                    frames=[f for f, _ in seen],
                    scores={k: float(rows[k].mean()) for k in self.models},
                    per_frame={k: rows[k].tolist() for k in table.columns},
                    fused=fused,
                    threshold=self.threshold,
                    threshold_source=self.threshold_source,
                    verdict=VERDICTS[int(fused >= self.threshold)],
                    face=seen[biggest][1].crop.image,
                    regions=seen[biggest][1].regions,
                )
            )
        return out


@lru_cache(maxsize=4)
def _models(models: str, ddbb: str, fusion: str, threshold, device) -> Models:
    return Models(models, ddbb, fusion=fusion, threshold=threshold, device=device)


def detect(
    path: str | Path,
    models: str | Path = "models",
    ddbb: str = "FaceForensics",
    fusion: str = "mean",
    threshold: float | None = None,
    frames: int = 20,
    device: str | None = None,
) -> Detection:
    """Detect in one file with the models of `ddbb` (loaded once per process)."""
    return _models(str(models), ddbb, fusion, threshold, device)(path, frames)


def inputs(paths) -> list[Path]:
    """The images and videos named, folders searched recursively (sorted)."""
    from dffr.datasets.base import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    suffixes = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in suffixes and q.is_file())
        else:
            out.append(p)  # whatever it is: reading it says what is wrong
    return out

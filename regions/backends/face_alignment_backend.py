"""FAN 2D landmarks (Bulat & Tzimiropoulos) through the `face-alignment` package.

FAN places the points; faces are found by the chosen face detector, and FAN is given
boxes drawn as dlib's HOG draws them (what this backend was tested with; S3FD's own
boxes are not yet measured against the points). Its weights are never
downloaded here: they must already be in torch's hub cache, otherwise the error names
the file and the folder to put it in.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from dffr.device import resolve_device
from dffr.errors import MissingWeightsError
from dffr.regions.landmarks import BACKENDS, LandmarkBackend


def fan_weights_path() -> tuple[Path, str]:
    """(expected local path, download URL) of the 2D FAN-4 weights."""
    import torch.hub
    from face_alignment.api import models_urls

    url = models_urls["2DFAN-4"]
    name = os.path.basename(urlparse(url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name, url


@BACKENDS.register("face-alignment")
class FaceAlignmentBackend(LandmarkBackend):
    """2D-FAN-4 heatmap regression (more robust to pose than dlib)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        path, url = fan_weights_path()
        if not path.is_file():
            raise MissingWeightsError(
                f"face-alignment weights missing: {path.name} is not in {path.parent}. "
                f"Download {url} on a machine with internet access and copy it there "
                "(or set $TORCH_HOME), or use --backend dlib"
            )
        import face_alignment

        try:
            self._fa = face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D,
                device=resolve_device(self.device).torch,
                face_detector="folder",  # boxes come from us; nothing else is loaded
                compile=False,
            )
        except Exception as e:  # a corrupt or foreign file: say which one
            raise MissingWeightsError(f"{path}: cannot load FAN weights ({e})") from None

    def landmarks(self, image: np.ndarray, boxes: list[np.ndarray]) -> list[np.ndarray]:
        pts = self._fa.get_landmarks_from_image(image, detected_faces=[list(b) for b in boxes])
        return [np.asarray(p, dtype=np.float64)[:, :2] for p in (pts or [])]

"""dlib's 68-point shape predictor: the default backend, fully offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dffr.errors import MissingWeightsError
from dffr.regions.dlib_models import SHAPE_68, dlib_model_file
from dffr.regions.landmarks import BACKENDS, LandmarkBackend


@BACKENDS.register("dlib")
class DlibBackend(LandmarkBackend):
    """dlib's ensemble-of-regression-trees 68-point predictor, trained on HOG's boxes."""

    def __init__(self, model_path: str | Path | None = None, **kwargs) -> None:
        import dlib

        super().__init__(**kwargs)
        path = Path(model_path) if model_path else dlib_model_file(SHAPE_68)
        try:
            self._predictor = dlib.shape_predictor(str(path))
        except RuntimeError as e:
            raise MissingWeightsError(f"{path}: not a dlib shape predictor model ({e})") from None

    def landmarks(self, image: np.ndarray, boxes: list[np.ndarray]) -> list[np.ndarray]:
        import dlib

        img = np.ascontiguousarray(image)
        out = []
        for box in boxes:
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            shape = self._predictor(img, dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
            out.append(np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64))
        return out

"""Where dlib's model files are: the PyPI package `face-recognition-models` ships them.

They are found through importlib without importing that package (its __init__ needs
pkg_resources); $DFFR_DLIB_MODELS names another folder holding the same files.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from dffr.errors import MissingWeightsError

SHAPE_68 = "shape_predictor_68_face_landmarks.dat"
MMOD_CNN = "mmod_human_face_detector.dat"


def dlib_model_file(name: str) -> Path:
    """The path of a dlib model file, or MissingWeightsError saying how to get it."""
    folders = []
    if os.environ.get("DFFR_DLIB_MODELS"):
        folders.append(Path(os.environ["DFFR_DLIB_MODELS"]))
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.submodule_search_locations:
        folders.append(Path(next(iter(spec.submodule_search_locations))) / "models")
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    looked = ", ".join(str(f) for f in folders) or "nowhere"
    raise MissingWeightsError(
        f"dlib model {name} not found (looked in {looked}): `pip install "
        "face-recognition-models` ships it, or set $DFFR_DLIB_MODELS to a folder holding it"
    )

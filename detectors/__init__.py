"""Deepfake detectors behind one interface and a registry (Xception, Capsule-Forensics-v2,
DSP-FWA and more backbones), their training, and the models folder they are kept in.

    from dffr.detectors import load_detector
    det = load_detector("models/FF/DSP-FWA_FF_eyes.pt")
    p_fake = det.predict(eyes_images)            # uint8 (n, H, W, 3) -> P(fake) in [0, 1]
"""

from dffr.detectors.base import (
    DETECTORS,
    PAPER_DETECTORS,
    Detector,
    DetectorConfig,
    WeightsError,
    build_detector,
)
from dffr.detectors.model_files import load_detector, load_models, model_path

__all__ = [
    "DETECTORS",
    "PAPER_DETECTORS",
    "Detector",
    "DetectorConfig",
    "WeightsError",
    "build_detector",
    "load_detector",
    "load_models",
    "model_path",
]

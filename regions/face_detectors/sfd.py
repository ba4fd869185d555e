"""S3FD (Zhang et al. 2017), face-alignment's own face detector: a VGG-16 single-shot
detector, strong on small faces, and worth a GPU. Its weights are never downloaded at
run time: `dffr weights fetch --face-detectors sfd` puts them in torch's hub cache
(hash-checked), otherwise the error says so. Its network takes a batch: on a GPU a
video's frames are searched together (`detect_frames`)."""

from __future__ import annotations

import numpy as np

from dffr.detectors.imagenet import WeightsFile, hub_weights
from dffr.device import resolve_device
from dffr.errors import MissingWeightsError
from dffr.regions.face_detection import FACE_DETECTORS, FaceDetector, Found

URL = "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth"


@FACE_DETECTORS.register("sfd")
class SfdFaceDetector(FaceDetector):
    smallest = 20
    tracking_side = 80
    to_points = None  # not measured: no S3FD weights on the machine this was written on

    @classmethod
    def weights(cls) -> WeightsFile:
        return hub_weights(URL)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        spec = self.weights()
        if not spec.path.is_file():
            raise MissingWeightsError(
                f"S3FD weights missing: {spec.name} is not in {spec.folder}: run `dffr weights "
                "fetch --face-detectors sfd` (where there is a network), or choose another "
                "--face-detector"
            )
        if not spec.hash_ok():
            raise MissingWeightsError(f"{spec.path}: not the published S3FD file (its sha256)")
        from face_alignment.detection.sfd.sfd_detector import SFDDetector

        try:
            self._net = SFDDetector(resolve_device(self.device).torch, str(spec.path))
        except Exception as e:  # hash ok, yet it does not load: say which file
            raise MissingWeightsError(f"{spec.path}: cannot load S3FD ({e})") from None

    def find(self, image: np.ndarray, confirm: bool = True) -> Found:
        return _found(self._net.detect_from_image(np.ascontiguousarray(image)))  # RGB, as 1.5

    def find_batch(self, images: list[np.ndarray], confirm: bool = True) -> list[Found]:
        import torch

        batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)  # RGB, as 1.5
        return [_found(boxes) for boxes in self._net.detect_from_batch(batch)]


def _found(boxes) -> Found:
    return [(np.asarray(b[:4], dtype=np.float64), float(b[4])) for b in boxes]

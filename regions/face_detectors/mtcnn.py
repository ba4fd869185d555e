"""MTCNN (Zhang et al. 2016), the cascade most DFDC solutions used, through
`facenet-pytorch`, whose wheel ships the weights (offline).

facenet-pytorch pins an old torch, so it is installed without its dependencies
(envs/setup.sh); it runs on ours (tests/test_face_detectors.py). A final score below
`threshold` is kept only if dlib's CNN detector confirms it, as for HOG. Its networks
take a batch: on a GPU a video's frames are searched together (`detect_frames`)."""

from __future__ import annotations

import numpy as np

from dffr.device import resolve_device
from dffr.errors import MissingWeightsError
from dffr.regions.face_detection import FACE_DETECTORS, FaceDetector, Found

THRESHOLDS = (0.6, 0.7, 0.7)  # P-, R- and O-Net, facenet-pytorch's (and the paper's)


@FACE_DETECTORS.register("mtcnn")
class MtcnnFaceDetector(FaceDetector):
    smallest = 20
    tracking_side = 80
    to_points = (-0.007, 0.252, 0.027, 0.022)  # benchmarks/faces.py, 83 faces

    def __init__(self, threshold: float = 0.9, **kwargs) -> None:
        super().__init__(**kwargs)
        try:
            from facenet_pytorch.models.mtcnn import MTCNN
        except ImportError as e:
            raise MissingWeightsError(
                f"the mtcnn face detector needs facenet-pytorch ({e}): "
                "`pip install --no-deps facenet-pytorch` (envs/setup.sh does)"
            ) from None
        self.threshold = threshold  # a final score below it must be confirmed
        self._net = MTCNN(
            keep_all=True,
            min_face_size=self.smallest,
            thresholds=list(THRESHOLDS),
            device=resolve_device(self.device).torch,
        )

    def _kept(self, image: np.ndarray, boxes, probs, confirm: bool) -> Found:
        if boxes is None:
            return []
        out = []
        for box, p in zip(np.asarray(boxes, dtype=np.float64), probs, strict=True):
            if p >= self.threshold or not confirm or self.confirmed(image, box):
                out.append((box, float(p)))
        return out

    def find(self, image: np.ndarray, confirm: bool = True) -> Found:
        return self.find_batch([image], confirm)[0]

    def find_batch(self, images: list[np.ndarray], confirm: bool = True) -> list[Found]:
        import torch

        with torch.inference_mode():  # the three networks over all images at once
            boxes, probs = self._net.detect(np.stack(images))
        found = zip(images, boxes, probs, strict=True)
        return [self._kept(image, b, p, confirm) for image, b, p in found]

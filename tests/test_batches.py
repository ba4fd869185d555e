"""What a training batch carries (issue 14): the region images and labels, and the
region's name, the face's landmarks and the region's mask in the images' pixels, moved
along with the image by geometric augmentation, so a detector's loss can use them."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from dffr.datasets.cache import read_crop
from dffr.detectors.base import DetectorConfig
from dffr.detectors.data import Augmented, Batch, RegionData
from dffr.detectors.networks.dsp_fwa import DSPFWA
from dffr.detectors.training import train
from dffr.regions.masks import cut_regions, region_masks
from dffr.transforms.augment import MIRROR


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_a_region_batch_carries_the_region_its_landmarks_and_masks(cache):
    data = RegionData.from_cache(cache, "train", "mouth")
    batch = next(data.batches(4))
    n, h, w, _ = batch.images.shape
    assert batch.region == "mouth" and len(batch) == n == 4
    assert batch.landmarks.shape == (n, 68, 2) and batch.landmarks.dtype == np.float32
    assert batch.masks.shape == (n, h, w) and batch.masks.dtype == bool
    assert np.array_equal(batch.labels, data.labels[:4])
    for i in range(n):
        row = data.rows.iloc[i]
        crop = read_crop(cache / row["face"])
        # the same region image as cutting the crop directly, black outside the mask
        assert np.array_equal(batch.images[i], cut_regions(crop, row["landmarks"])["mouth"])
        assert not batch.images[i][~batch.masks[i]].any() and batch.masks[i].any()
        assert np.allclose(batch.landmarks[i], row["landmarks"], atol=1e-4)
    # a batch of another shape (Keras fills its last batch up) keeps every field aligned
    joined = batch.join(batch.head(2))
    assert len(joined) == 6 and joined.masks.shape[0] == joined.landmarks.shape[0] == 6
    assert np.array_equal(joined.images[4:], batch.images[:2])


def test_mirror_is_the_ibug_left_right_swap():
    assert sorted(MIRROR) == list(range(68)) and np.array_equal(MIRROR[MIRROR], np.arange(68))
    # outer eye corners, mouth corners and jaw ends swap; the nose bridge stays
    assert (MIRROR[36], MIRROR[48], MIRROR[0], MIRROR[27]) == (45, 54, 16, 27)


def test_flip_and_rotate_move_the_landmarks_and_masks_with_the_face(cache):
    data = RegionData.from_cache(cache, "train", "eyes")
    plain = data.sample([0, 1])
    moved = Augmented(data, ["flip", "rotate"], p=1.0, seed=3).sample([0, 1])
    w = plain.images.shape[2]
    for i in range(2):
        # the moved mask is where the moved image is (bilinear rotation spreads the
        # image by a pixel around it), and the moved landmarks cut it
        inside = moved.images[i].any(axis=2)
        near = cv2.dilate(moved.masks[i].astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        assert (inside & ~near).sum() <= 0.01 * inside.sum() and inside.sum() > 100
        again = region_masks(moved.landmarks[i], moved.masks[i].shape)["eyes"]
        assert _iou(again, moved.masks[i]) > 0.9
        # after a flip the right eye's outer corner (36) is still on the image's left
        assert moved.landmarks[i][36, 0] < moved.landmarks[i][45, 0]
        assert not np.allclose(moved.landmarks[i], plain.landmarks[i])
    flipped = Augmented(data, ["flip"], p=1.0).sample([0])
    assert np.array_equal(flipped.masks[0], plain.masks[0][:, ::-1])
    assert np.allclose(flipped.landmarks[0][MIRROR][:, 0], w - 1 - plain.landmarks[0][:, 0])


class _MaskAware(DSPFWA):
    """A detector whose loss uses the region's mask: what it was handed is recorded."""

    seen: list

    def batch_loss(self, outputs, batch: Batch) -> torch.Tensor:
        self.seen.append((batch.region, batch.landmarks.shape, batch.masks.shape, len(batch)))
        share = torch.as_tensor(batch.masks.mean(axis=(1, 2)), dtype=torch.float32)
        return super().batch_loss(outputs, batch) + 0.0 * share.mean()


def test_a_detector_s_loss_gets_the_whole_batch_in_training(cache, tmp_path, monkeypatch):
    made = []

    def build(config, device=None):
        det = _MaskAware(config, "cpu")
        det.seen = []
        made.append(det)
        return det

    monkeypatch.setattr("dffr.detectors.training.build_detector", build)
    cfg = DetectorConfig(
        "DSP-FWA", region="nose", input_size=32, epochs=1, batch=4, pretrained=False
    )
    cfg.options = {"trunk": "resnet18"}
    result = train(cfg, cache, tmp_path, device="cpu")
    seen = made[0].seen
    n_train = len(result.train_data)
    assert sum(s[3] for s in seen) == n_train and len(seen) == -(-n_train // 4)
    assert all(r == "nose" and lm[1:] == (68, 2) and m[0] == lm[0] for r, lm, m, _ in seen)

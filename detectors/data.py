"""Region images for training and scoring, cut on the fly from the face cache.

`RegionData` holds index rows of one split and serves batches of one region's images as
`Batch`es: the images and labels, and what a detector's loss may use besides them (the
region's name, the face's 68 landmarks and the region's mask, in the images' pixels).
With `negatives` set, only the real faces are used, each once as itself (label 0) and
once as a fake synthesised from it (label 1). Every index row of a batch it hands out is
recorded in `touched`, so a test can prove that training never looked at test rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from dffr.datasets.cache import read_crop, read_index
from dffr.detectors.negatives import NEGATIVES
from dffr.feed import feed
from dffr.regions.masks import apply_mask, region_masks
from dffr.transforms.augment import augment, check_augment


@dataclass
class Batch:
    """One batch as a detector's training step sees it. `landmarks` and `masks` are in
    the region images' own pixels; None where the data has none (`ArrayData`)."""

    images: np.ndarray  # uint8 (n, H, W, 3) region images
    labels: np.ndarray  # int64 (n,), 1 = fake
    region: str | None = None  # the region the images show
    landmarks: np.ndarray | None = None  # float32 (n, 68, 2), iBUG order, (x, y)
    masks: np.ndarray | None = None  # bool (n, H, W): the region's pixels

    def __len__(self) -> int:
        return len(self.labels)

    def _arrays(self) -> dict[str, np.ndarray]:
        names = ("images", "labels", "landmarks", "masks")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def head(self, n: int) -> Batch:
        """The first `n` samples."""
        return replace(self, **{k: v[:n] for k, v in self._arrays().items()})

    def join(self, other: Batch) -> Batch:
        """This batch's samples followed by `other`'s."""
        theirs = other._arrays()
        return replace(
            self, **{k: np.concatenate([v, theirs[k]]) for k, v in self._arrays().items()}
        )


def _sample(data: Batches, task: tuple[np.ndarray, int]) -> Batch:
    return data.sample(*task)


class Batches:
    """Seeded, shuffled, rank-sharded batches over anything with `labels` and `images`.

    With `workers` > 0 the images are made in that many threads, a few batches ahead,
    in the same order (`dffr.feed`): the same batches whatever the number."""

    seed: int = 0
    workers: int = 0

    def __len__(self) -> int:
        return len(self.labels)

    def images(self, positions, epoch: int = 0) -> np.ndarray:
        raise NotImplementedError

    def sample(self, positions, epoch: int = 0) -> Batch:
        """The samples at `positions` (their images and labels; data that knows more
        about its faces adds it)."""
        return Batch(self.images(positions, epoch), self.labels[np.asarray(positions, int)])

    def seen(self, positions) -> None:
        """Called, in this process, with the positions of every batch handed out."""

    def batches(
        self, batch: int, shuffle: bool = False, epoch: int = 0, part: tuple[int, int] = (0, 1)
    ) -> Iterator[Batch]:
        """Batches in order (shuffled by seed and epoch); `part` (rank, world) takes every
        world-th sample."""
        order = np.arange(len(self))
        if shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(order)
        rank, world = part
        if world > 1:  # equal shares (padded by repetition) keep the ranks in step
            order = np.resize(order, -(-len(order) // world) * world)[rank::world]
        chunks = [order[start : start + batch] for start in range(0, len(order), batch)]
        tasks = [(idx, epoch) for idx in chunks]
        for idx, made in zip(chunks, feed(_sample, self, tasks, self.workers), strict=True):
            self.seen(idx)
            yield made


class ArrayData(Batches):
    """In-memory images and labels (tests, notebooks)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> None:
        self._images = np.asarray(images)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.seed = seed

    def images(self, positions, epoch: int = 0) -> np.ndarray:
        return self._images[np.asarray(positions)]


@dataclass
class RegionData(Batches):
    cache: Path
    rows: pd.DataFrame  # index rows; `row_id` is the row's position in the full index
    region: str
    negatives: str = "none"
    seed: int = 0
    touched: set = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.negatives != "none":
            real = np.flatnonzero(self.rows["label"].to_numpy() == 0)
            self._samples = [(int(i), False) for i in real] + [(int(i), True) for i in real]
            self._fake = NEGATIVES.get(self.negatives)
        else:
            self._samples = [(i, False) for i in range(len(self.rows))]
        lab = self.rows["label"].to_numpy()
        self._labels = np.array(
            [1 if synth else int(lab[i]) for i, synth in self._samples], np.int64
        )

    @classmethod
    def from_cache(cls, cache: str | Path, split: str, region: str, **kw) -> RegionData:
        df = read_index(cache)
        df.insert(0, "row_id", np.arange(len(df)))
        return cls(Path(cache), df[df["split"] == split].reset_index(drop=True), region, **kw)

    def __len__(self) -> int:
        return len(self._samples)

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def fingerprint(self) -> str:
        """A short hash of which faces (and labels) this data holds."""
        key = "\n".join(
            f"{v}|{f}|{lab}"
            for v, f, lab in zip(
                self.rows["video"], self.rows["frame"], self.rows["label"], strict=True
            )
        )
        return hashlib.sha256(f"{self.negatives}\n{key}".encode()).hexdigest()[:16]

    def seen(self, positions) -> None:
        ids = self.rows["row_id"].to_numpy()
        self.touched.update(int(ids[self._samples[int(p)][0]]) for p in positions)

    def images(self, positions, epoch: int = 0) -> np.ndarray:
        """uint8 (n, H, W, 3) region images of the given sample positions."""
        return self.sample(positions, epoch).images

    def sample(self, positions, epoch: int = 0) -> Batch:
        images, landmarks, masks = [], [], []
        for p in positions:
            i, synth = self._samples[int(p)]
            row = self.rows.iloc[i]
            crop = read_crop(self.cache / row["face"])
            if synth:  # a new fake each epoch, the same one for a given (seed, epoch, face)
                rng = np.random.default_rng([self.seed, epoch, int(row["row_id"])])
                crop = self._fake(crop, row["landmarks"], rng)
            mask = region_masks(row["landmarks"], crop.shape)[self.region]
            images.append(apply_mask(crop, mask))
            landmarks.append(row["landmarks"])
            masks.append(mask)
        return Batch(
            np.stack(images),
            self._labels[np.asarray(positions, int)],
            self.region,
            np.stack(landmarks).astype(np.float32),
            np.stack(masks),
        )


_AUGMENT_STREAM = 0x617567  # keeps these draws apart from other (seed, epoch, sample) streams


class Augmented(Batches):
    """The wrapped data's samples, labels and order, with augmented images
    (`dffr.transforms.augment`), drawn from (seed, epoch, sample position)."""

    def __init__(self, data: Batches, names, p: float = 0.5, seed: int = 0) -> None:
        self.data = data
        self.names = check_augment(names, p)
        self.p = p
        self.seed = data.seed  # the wrapped data's shuffle
        self.augment_seed = seed

    def __len__(self) -> int:
        return len(self.data)

    @property
    def labels(self) -> np.ndarray:
        return self.data.labels

    @property
    def workers(self) -> int:
        return self.data.workers

    def seen(self, positions) -> None:
        self.data.seen(positions)

    def images(self, positions, epoch: int = 0) -> np.ndarray:
        return self.sample(positions, epoch).images

    def sample(self, positions, epoch: int = 0) -> Batch:
        batch = self.data.sample(positions, epoch)
        n = len(batch)
        rngs = [
            np.random.default_rng([self.augment_seed, epoch, int(p), _AUGMENT_STREAM])
            for p in positions
        ]
        landmarks = [None] * n if batch.landmarks is None else batch.landmarks
        masks = [None] * n if batch.masks is None else batch.masks
        moved = [
            augment(im, self.names, self.p, rng, lm, m)
            for im, rng, lm, m in zip(batch.images, rngs, landmarks, masks, strict=True)
        ]
        images, landmarks, masks = zip(*moved, strict=True)
        return replace(
            batch,
            images=np.stack(images),
            landmarks=None if batch.landmarks is None else np.stack(landmarks).astype(np.float32),
            masks=None if batch.masks is None else np.stack(masks),
        )


def augmented(data: Batches, names, p: float, seed: int) -> Batches:
    """Training data augmented with `names` (the data itself when there are none)."""
    return Augmented(data, names, p, seed) if names else data

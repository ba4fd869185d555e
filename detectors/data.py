"""Region images for training and scoring, cut on the fly from the face cache.

`RegionData` holds index rows of one split and serves batches of one region's images.
With `negatives` set, only the real faces are used, each once as itself (label 0) and
once as a fake synthesised from it (label 1). Every index row of a batch it hands out is
recorded in `touched`, so a test can prove that training never looked at test rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dffr.datasets.cache import read_crop, read_index
from dffr.detectors.negatives import NEGATIVES
from dffr.feed import feed
from dffr.regions.masks import cut_regions
from dffr.transforms.augment import augment, check_augment


def _images(data: Batches, task: tuple[np.ndarray, int]) -> np.ndarray:
    return data.images(*task)


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

    def seen(self, positions) -> None:
        """Called, in this process, with the positions of every batch handed out."""

    def batches(
        self, batch: int, shuffle: bool = False, epoch: int = 0, part: tuple[int, int] = (0, 1)
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(images, labels) batches; `part` (rank, world) takes every world-th sample."""
        order = np.arange(len(self))
        if shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(order)
        rank, world = part
        if world > 1:  # equal shares (padded by repetition) keep the ranks in step
            order = np.resize(order, -(-len(order) // world) * world)[rank::world]
        labels = self.labels
        chunks = [order[start : start + batch] for start in range(0, len(order), batch)]
        tasks = [(idx, epoch) for idx in chunks]
        for idx, images in zip(chunks, feed(_images, self, tasks, self.workers), strict=True):
            self.seen(idx)
            yield images, labels[idx]


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

    @classmethod
    def from_cache(cls, cache: str | Path, split: str, region: str, **kw) -> RegionData:
        df = read_index(cache)
        df.insert(0, "row_id", np.arange(len(df)))
        return cls(Path(cache), df[df["split"] == split].reset_index(drop=True), region, **kw)

    def __len__(self) -> int:
        return len(self._samples)

    @property
    def labels(self) -> np.ndarray:
        lab = self.rows["label"].to_numpy()
        return np.array([1 if synth else int(lab[i]) for i, synth in self._samples], np.int64)

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
        out = []
        for p in positions:
            i, synth = self._samples[int(p)]
            row = self.rows.iloc[i]
            crop = read_crop(self.cache / row["face"])
            if synth:  # a new fake each epoch, the same one for a given (seed, epoch, face)
                rng = np.random.default_rng([self.seed, epoch, int(row["row_id"])])
                crop = self._fake(crop, row["landmarks"], rng)
            out.append(cut_regions(crop, row["landmarks"], (self.region,))[self.region])
        return np.stack(out)


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
        images = self.data.images(positions, epoch)
        rngs = [
            np.random.default_rng([self.augment_seed, epoch, int(p), _AUGMENT_STREAM])
            for p in positions
        ]
        return np.stack(
            [augment(im, self.names, self.p, rng) for im, rng in zip(images, rngs, strict=True)]
        )


def augmented(data: Batches, names, p: float, seed: int) -> Batches:
    """Training data augmented with `names` (the data itself when there are none)."""
    return Augmented(data, names, p, seed) if names else data

"""Celeb-DF v2 (Li et al., CVPR 2020), official layout and test list.

    <root>/Celeb-real/id<i>_<n>.mp4          real, identity i
    <root>/YouTube-real/<n>.mp4              real, identity unknown (one per video)
    <root>/Celeb-synthesis/id<i>_id<j>_<n>.mp4   fake, identities i and j
    <root>/List_of_testing_videos.txt        "<label> <folder>/<file>", 1 = REAL, 0 = FAKE

`protocol="official"` (default; the database's and the paper's): test = the official
list (its labels inverted to 1 = fake here); train and validation = every other video.
Validation is carved out by identity (15% of the identities, by a stable hash): a video
goes to val when all its identities are validation identities, otherwise to train, so
no video is dropped. Identities are shared between train and test, as the official list
covers 56 of the 59 identities.

`protocol="disjoint"` (stricter): no identity of the test list is trained on, and train
and val share no identity; videos that would break either are excluded (and reported).
Few videos remain: almost all fakes show a test identity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dffr.datasets.base import DATASETS, Dataset, DatasetError, Item, option, placeholders
from dffr.datasets.splits import assign, identity_split

FOLDERS = {
    "Celeb-real": (0, "real"),
    "YouTube-real": (0, "real"),
    "Celeb-synthesis": (1, "Celeb-synthesis"),
}
TRAIN_VAL = {"train": 0.85, "val": 0.15}
TEST_LIST = "List_of_testing_videos.txt"
PROTOCOLS = ("official", "disjoint")


def identities(video: str) -> tuple[str, ...]:
    """Identities shown in a video, from its name (YouTube-real: the video itself)."""
    folder, name = video.split("/", 1)
    if folder == "YouTube-real":
        return (f"yt{name.rsplit('.', 1)[0]}",)
    return tuple(sorted({f"id{i}" for i in re.findall(r"id(\d+)", name)}))


def read_test_list(path) -> dict[str, int]:
    """video -> label (1 = fake) from the official list, whose own convention is 1 = real."""
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ("0", "1"):
            raise DatasetError(f"CelebDF: {path}:{n}: expected '<0|1> <folder>/<file>'")
        out[parts[1]] = 1 - int(parts[0])
    return out


@dataclass
class CelebDFOptions:
    protocol: str = option(
        "official",
        "official (default: test = the official list, train/val = the rest) or disjoint "
        "(no test identity trained on)",
    )


@DATASETS.register("CelebDF")
class CelebDF(Dataset):
    """Options: `protocol` "official" (default) or "disjoint" (see the module docstring)."""

    name = "CelebDF"
    Options = CelebDFOptions

    def __init__(self, root, **options) -> None:
        super().__init__(root)
        protocol = self.parse_options(options).protocol
        if protocol not in PROTOCOLS:
            raise DatasetError(
                f"CelebDF: protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}"
            )
        self.protocol = protocol
        self.test_list = self.root / TEST_LIST
        if not self.test_list.is_file():
            raise DatasetError(f"CelebDF: official test list {self.test_list} not found")
        self.excluded: list[str] = []

    @classmethod
    def example(cls, root: Path) -> tuple[dict, dict[str, int]]:
        # the list's own convention: 1 = real
        (root / TEST_LIST).write_text(
            "1 Celeb-real/id0_0000.mp4\n0 Celeb-synthesis/id0_id1_0000.mp4\n"
            "1 YouTube-real/00000.mp4\n"
        )
        labels = {
            "Celeb-real/id0_0000.mp4": 0,
            "Celeb-synthesis/id0_id1_0000.mp4": 1,
            "YouTube-real/00000.mp4": 0,
            "Celeb-real/id1_0000.mp4": 0,  # identities 1 and 2 train, 5 and 7 val
            "Celeb-real/id5_0000.mp4": 0,
            "Celeb-synthesis/id1_id2_0000.mp4": 1,
            "Celeb-synthesis/id5_id7_0000.mp4": 1,
        }
        return {"protocol": "official"}, placeholders(root, labels)

    def options(self) -> dict:
        return {"protocol": self.protocol}

    def _split(self, ids: tuple[str, ...]) -> str | None:
        if self.protocol == "disjoint":
            return identity_split(ids, TRAIN_VAL, salt="celebdf")
        val = bool(ids) and all(assign(i, TRAIN_VAL, salt="celebdf") == "val" for i in ids)
        return "val" if val else "train"

    def items(self) -> list[Item]:
        test = read_test_list(self.test_list)
        items = []
        for listed, label in test.items():
            video, refused = self.listed(listed, TEST_LIST)
            folder = video.split("/", 1)[0]
            method = FOLDERS.get(folder, (label, "real" if label == 0 else folder))[1]
            ids = () if refused or "/" not in video else identities(video)
            items.append(
                Item(self.name, video, label, "test", method, TEST_LIST, ids, refused=refused)
            )
        test_ids = {i for it in items for i in it.identities}
        self.excluded = []
        for folder, (label, method) in FOLDERS.items():
            for path in sorted((self.root / folder).glob("*.mp4")):
                video = self.rel(path)
                if video in test:
                    continue
                ids = identities(video)
                split = self._split(ids)
                if split is None or (self.protocol == "disjoint" and set(ids) & test_ids):
                    self.excluded.append(video)
                    continue
                items.append(Item(self.name, video, label, split, method, identities=ids))
        return sorted(items, key=lambda i: i.video)

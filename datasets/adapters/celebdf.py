"""Celeb-DF v2 (Li et al., CVPR 2020), official layout and test list.

    <root>/Celeb-real/id<i>_<n>.mp4          real, identity i
    <root>/YouTube-real/<n>.mp4              real, identity unknown (one per video)
    <root>/Celeb-synthesis/id<i>_id<j>_<n>.mp4   fake, identities i and j
    <root>/List_of_testing_videos.txt        "<label> <folder>/<file>", 1 = REAL, 0 = FAKE

Test = the official list (its labels are inverted to 1 = fake here). Train/val come from
the other videos, split 85/15 by identity (stable hash) so no identity is in both.
`protocol="disjoint"` (default) also drops every video sharing an identity with the test
list, so test identities are never trained on (this leaves few videos: the official list
covers 56 of the 59 identities); `protocol="rest"` keeps them, the common practice.
"""

from __future__ import annotations

import re

from dffr.datasets.base import DATASETS, Dataset, DatasetError, Item
from dffr.datasets.splits import identity_split

FOLDERS = {
    "Celeb-real": (0, "real"),
    "YouTube-real": (0, "real"),
    "Celeb-synthesis": (1, "Celeb-synthesis"),
}
TRAIN_VAL = {"train": 0.85, "val": 0.15}
TEST_LIST = "List_of_testing_videos.txt"


def identities(video: str) -> set[str]:
    """Identities shown in a video, from its name (YouTube-real: the video itself)."""
    folder, name = video.split("/", 1)
    if folder == "YouTube-real":
        return {f"yt{name.rsplit('.', 1)[0]}"}
    return {f"id{i}" for i in re.findall(r"id(\d+)", name)}


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


@DATASETS.register("CelebDF")
class CelebDF(Dataset):
    """Options: `protocol` "disjoint" (default) or "rest" (see the module docstring)."""

    name = "CelebDF"

    def __init__(self, root, protocol: str = "disjoint") -> None:
        super().__init__(root)
        if protocol not in ("disjoint", "rest"):
            raise DatasetError(f"CelebDF: protocol must be 'disjoint' or 'rest', not {protocol!r}")
        self.protocol = protocol
        self.test_list = self.root / TEST_LIST
        if not self.test_list.is_file():
            raise DatasetError(f"CelebDF: official test list {self.test_list} not found")
        self.excluded: list[str] = []

    def items(self) -> list[Item]:
        test = read_test_list(self.test_list)
        items = []
        for video, label in test.items():
            folder = video.split("/", 1)[0]
            method = FOLDERS.get(folder, (label, "real" if label == 0 else folder))[1]
            items.append(Item(self.name, video, label, "test", method, listed_in=TEST_LIST))
        test_ids = set().union(*(identities(v) for v in test)) if test else set()
        self.excluded = []
        for folder, (label, method) in FOLDERS.items():
            for path in sorted((self.root / folder).glob("*.mp4")):
                video = self.rel(path)
                if video in test:
                    continue
                ids = identities(video)
                if self.protocol == "disjoint" and ids & test_ids:
                    self.excluded.append(video)
                    continue
                split = identity_split(ids, TRAIN_VAL, salt="celebdf")
                if split is None:
                    self.excluded.append(video)
                    continue
                items.append(Item(self.name, video, label, split, method))
        return sorted(items, key=lambda i: i.video)

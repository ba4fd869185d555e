"""UADFV (Yang et al., ICASSP 2019): 49 real videos and their 49 FakeApp deepfakes.

    <root>/real/<n>.mp4      <root>/fake/<n>_fake.mp4

There is no official split. Pairs (a real video and its fake share one identity) are
split 70/10/20 train/val/test by a stable hash of the identity, so the paper's ~80/20
development/evaluation protocol holds with disjoint identities.
"""

from __future__ import annotations

from pathlib import Path

from dffr.datasets.base import DATASETS, Dataset, DatasetError, Item, placeholders
from dffr.datasets.splits import assign

FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


@DATASETS.register("UADFV")
class UADFV(Dataset):
    name = "UADFV"

    @classmethod
    def example(cls, root: Path) -> tuple[dict, dict[str, int]]:
        # three pairs, whose identities fall in train, test and val
        labels = {}
        for k in ("0000", "0008", "0013"):
            labels |= {f"real/{k}.mp4": 0, f"fake/{k}_fake.mp4": 1}
        return {}, placeholders(root, labels)

    def items(self) -> list[Item]:
        items = []
        for folder, label, method in (("real", 0, "real"), ("fake", 1, "Deepfake")):
            for path in sorted((self.root / folder).glob("*.mp4")):
                identity = path.stem.removesuffix("_fake")
                split = assign("uadfv:" + identity, FRACTIONS)
                items.append(
                    Item(self.name, self.rel(path), label, split, method, identities=(identity,))
                )
        if not items:
            raise DatasetError(f"UADFV: no real/*.mp4 or fake/*_fake.mp4 under {self.root}")
        return sorted(items, key=lambda i: i.video)

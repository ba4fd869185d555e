"""Any `real/` and `fake/` folders of images and/or videos (the seed system's layout).

    <root>/real/**  <root>/fake/**                       split 80/10/10 by stable hash
    <root>/{train,val,test}/{real,fake}/**               the folders are the split

A fake's method is its first sub-folder under fake/ (fake/fwa/x.png -> "fwa"), else
"fake". Images count as one-frame videos. `group` is a regular expression whose first
match in the file name names the group that must stay in one split (for example
"^[a-z]+" keeps all crops of one DFDC video together); by default each file is its own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dffr.datasets.base import (
    DATASETS,
    IMAGE_SUFFIXES,
    SPLITS,
    VIDEO_SUFFIXES,
    Dataset,
    DatasetError,
    Item,
    option,
    placeholders,
)
from dffr.datasets.splits import assign

FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def walk_files(top: Path) -> Iterator[Path]:
    """Every file below `top`, following symlinked folders (a database assembled from
    links to other disks) and entering each real folder once (a link loop ends)."""
    seen: set[str] = set()
    for folder, subfolders, files in os.walk(top, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders.sort()
        for name in sorted(files):
            yield Path(folder) / name


@dataclass
class FolderOptions:
    group: str | None = option(None, "regex naming a file's group (identity)")


@DATASETS.register("folder")
class Folder(Dataset):
    name = "folder"
    Options = FolderOptions

    def __init__(self, root, **options) -> None:
        super().__init__(root)
        group = self.parse_options(options).group
        self.group = re.compile(group) if group else None

    @classmethod
    def example(cls, root: Path) -> tuple[dict, dict[str, int]]:
        labels = {
            "train/real/a.png": 0,
            "train/fake/fwa/b.mp4": 1,
            "val/real/c.mp4": 0,
            "val/fake/d.jpg": 1,
            "test/real/e.avi": 0,
            "test/fake/f.mp4": 1,
        }
        placeholders(root, labels)
        (root / "test" / "fake" / "notes.txt").write_text("not a video: not an item")
        return {}, labels

    def options(self) -> dict:
        return {"group": self.group.pattern if self.group else None}

    def _group(self, name: str) -> str:
        m = self.group.search(name) if self.group else None
        return m.group(0) if m else name

    def items(self) -> list[Item]:
        explicit = [s for s in SPLITS if (self.root / s).is_dir()]
        bases = [(self.root / s, s) for s in explicit] or [(self.root, None)]
        items = []
        for base, split in bases:
            for label, cls in ((0, "real"), (1, "fake")):
                top = base / cls
                for path in walk_files(top):
                    if path.suffix.lower() not in VIDEO_SUFFIXES | IMAGE_SUFFIXES:
                        continue
                    sub = path.relative_to(top).parts
                    method = "real" if label == 0 else (sub[0] if len(sub) > 1 else "fake")
                    group = self._group(path.name)
                    s = split or assign("folder:" + group, FRACTIONS)
                    ids = (group,) if self.group else ()
                    items.append(Item(self.name, self.rel(path), label, s, method, identities=ids))
        if not items:
            raise DatasetError(
                f"folder: no images or videos under {self.root}/real or {self.root}/fake"
            )
        return sorted(items, key=lambda i: i.video)

"""DFDC (Dolhansky et al., 2020): the full release, and the public test set when present.

    <root>/dfdc_train_part_<k>/metadata.json   {"x.mp4": {"label": "FAKE"|"REAL",
    <root>/dfdc_train_part_<k>/*.mp4             "split": ..., "original": "y.mp4"}}
    <root>/test_videos/*.mp4 + <root>/labels.csv   (public test set; filename,label 1 = fake)

The release has no usable split ("split" is "train" everywhere), so videos are grouped
by their original (a real video is its own original) and whole groups go to one split
by a stable hash: a fake and its original always share a split. Without the public test
set: 80/10/10 train/val/test; with it, the test set is test and the parts give 90/10
train/val. Videos listed in a metadata.json but absent are still items: preprocessing
reports them as missing instead of failing.

Several people may appear in a DFDC video and only some of them be swapped, so every
face is tracked (`faces = "all"`), and a fake's original (same part folder) lets
preprocessing tell the swapped faces from the untouched ones.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from dffr.datasets.base import DATASETS, Dataset, DatasetError, Item, placeholders
from dffr.datasets.splits import assign


@DATASETS.register("DFDC")
class DFDC(Dataset):
    name = "DFDC"
    faces = "all"

    @classmethod
    def example(cls, root: Path) -> tuple[dict, dict[str, int]]:
        # a real video and its fake in train (aaaa) and in val (kkkk); the public test set
        meta = {
            "aaaa.mp4": {"label": "REAL", "split": "train"},
            "bbbb.mp4": {"label": "FAKE", "split": "train", "original": "aaaa.mp4"},
            "kkkk.mp4": {"label": "REAL", "split": "train"},
            "llll.mp4": {"label": "FAKE", "split": "train", "original": "kkkk.mp4"},
        }
        labels = {f"dfdc_train_part_0/{n}": int(m["label"] == "FAKE") for n, m in meta.items()}
        labels |= {"test_videos/xxxx.mp4": 1, "test_videos/yyyy.mp4": 0}
        placeholders(root, labels)
        (root / "dfdc_train_part_0" / "metadata.json").write_text(json.dumps(meta))
        (root / "labels.csv").write_text("filename,label\nxxxx.mp4,1\nyyyy.mp4,0\n")
        return {}, labels

    def items(self) -> list[Item]:
        parts = sorted(p for p in self.root.glob("dfdc_train_part_*") if p.is_dir())
        public = self.root / "labels.csv"
        has_test = public.is_file() and (self.root / "test_videos").is_dir()
        fractions = (
            {"train": 0.9, "val": 0.1} if has_test else {"train": 0.8, "val": 0.1, "test": 0.1}
        )
        items = []
        for part in parts:
            meta_path = part / "metadata.json"
            if not meta_path.is_file():
                raise DatasetError(f"DFDC: {meta_path} not found")
            try:
                meta = json.loads(meta_path.read_text())
            except json.JSONDecodeError as e:
                raise DatasetError(f"DFDC: {meta_path} is not valid JSON ({e})") from None
            listed = self.rel(meta_path)
            if not isinstance(meta, dict):
                raise DatasetError(
                    f"DFDC: {meta_path}: expected an object of video -> {{label, split, "
                    f"original}}, not a {type(meta).__name__}"
                )
            for name, info in sorted(meta.items()):
                if not isinstance(info, dict):
                    raise DatasetError(f"DFDC: {meta_path}: {name!r} is not an object ({info!r})")
                label = {"FAKE": 1, "REAL": 0}.get(str(info.get("label", "")).upper())
                if label is None:
                    raise DatasetError(f"DFDC: {meta_path}: {name} has no FAKE/REAL label")
                original = info.get("original") or "" if label else ""
                group = original or name
                split = assign("dfdc:" + group, fractions)
                method = "DFDC" if label else "real"
                video, refused = self.listed(f"{part.name}/{name}", listed)
                if original:
                    original, bad = self.listed(f"{part.name}/{original}", listed)
                    original = "" if bad else original
                items.append(
                    Item(
                        self.name,
                        video,
                        label,
                        split,
                        method,
                        listed,
                        identities=(f"dfdc:{group}",),
                        original=original,
                        refused=refused,
                    )
                )
        if has_test:
            with public.open(newline="") as f:
                reader = csv.DictReader(f)
                if not {"filename", "label"} <= set(reader.fieldnames or ()):
                    raise DatasetError(
                        f"DFDC: {public}: expected the columns filename,label, not "
                        f"{reader.fieldnames}"
                    )
                for n, row in enumerate(reader, start=2):
                    try:
                        label = int(float(row["label"]) >= 0.5)
                    except (TypeError, ValueError):
                        raise DatasetError(
                            f"DFDC: {public}:{n}: label {row['label']!r} is not a number"
                        ) from None
                    video, refused = self.listed(f"test_videos/{row['filename']}", "labels.csv")
                    items.append(
                        Item(
                            self.name,
                            video,
                            label,
                            "test",
                            "DFDC" if label else "real",
                            "labels.csv",
                            refused=refused,
                        )
                    )
        if not items:
            raise DatasetError(f"DFDC: no dfdc_train_part_*/metadata.json under {self.root}")
        return sorted(items, key=lambda i: i.video)

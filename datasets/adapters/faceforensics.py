"""FaceForensics++ (Rössler et al., ICCV 2019), official layout and split.

    <root>/original_sequences/{youtube,actors}/{raw,c23,c40}/videos/*.mp4
    <root>/manipulated_sequences/<method>/{raw,c23,c40}/videos/*.mp4
    <root>/splits/{train,val,test}.json     (or `splits=DIR`)

Methods: the four of the paper and of the FF++ benchmark (Deepfakes, Face2Face,
FaceSwap, NeuralTextures) unless `methods` names others, whatever else is on disk
(FaceShifter and DeepFakeDetection are later additions to the database).

Split: the official lists of [target, source] id pairs; a video `519_515` or `519`
belongs to the split whose pairs hold 519. The DeepFakeDetection videos and the actors'
originals are not in those lists: they are split by actor (the number before `__` or
`_`), 80/10/10 by a stable hash, documented in dffr.datasets.splits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dffr.datasets.base import DATASETS, Dataset, DatasetError, Item, option, placeholders
from dffr.datasets.splits import assign

METHODS = (
    "Deepfakes",
    "Face2Face",
    "FaceSwap",
    "NeuralTextures",
    "FaceShifter",
    "DeepFakeDetection",
)
PAPER_METHODS = METHODS[:4]
COMPRESSIONS = {"raw": "raw", "c0": "raw", "c23": "c23", "c40": "c40"}
ACTOR_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def read_official_splits(folder: Path) -> dict[str, str]:
    """id -> split from the official train/val/test.json pair lists."""
    membership: dict[str, str] = {}
    for split in ("train", "val", "test"):
        path = folder / f"{split}.json"
        if not path.is_file():
            raise DatasetError(
                f"FaceForensics: official split list {path} not found. Get train/val/test.json "
                "from the FaceForensics repository (dataset/splits) into <root>/splits/, "
                "or pass --splits DIR"
            )
        try:
            pairs = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise DatasetError(f"FaceForensics: {path} is not valid JSON ({e})") from None
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, str | int) for v in p)
            for p in pairs
        ):
            raise DatasetError(
                f"FaceForensics: {path}: expected a list of [target, source] id pairs, as the "
                "official lists are"
            )
        for pair in pairs:
            for vid in pair:
                membership[str(vid)] = split
    return membership


@dataclass
class FaceForensicsOptions:
    compression: str = option("c23", "raw/c0, c23 (default), c40")
    methods: str | None = option(
        None,
        "comma list of manipulations (default: Deepfakes, Face2Face, FaceSwap, "
        "NeuralTextures, the paper's)",
    )
    splits: str | None = option(None, "folder with the official train/val/test.json", path=True)


@DATASETS.register("FaceForensics")
class FaceForensics(Dataset):
    """Options: `compression` (raw/c0, c23, c40; default c23), `methods` (names or a
    comma list; default the paper's four), `splits` (folder of the split lists)."""

    name = "FaceForensics"
    Options = FaceForensicsOptions

    def __init__(self, root, **options) -> None:
        super().__init__(root)
        o = self.parse_options(options)
        compression, methods, splits = o.compression, o.methods, o.splits
        if compression not in COMPRESSIONS:
            raise DatasetError(
                f"FaceForensics: unknown compression {compression!r}; use raw, c0, c23 or c40"
            )
        self.compression = COMPRESSIONS[compression]
        if isinstance(methods, str):
            methods = [m for m in methods.split(",") if m]
        unknown = set(methods or ()) - set(METHODS)
        if unknown:
            raise DatasetError(
                f"FaceForensics: unknown method(s) {sorted(unknown)}; choose from {METHODS}"
            )
        # in the database's own order, so that the same methods always read the same
        self.methods = tuple(m for m in METHODS if m in methods) if methods else PAPER_METHODS
        self.own_splits = splits is not None
        self.split_dir = Path(splits) if splits else self.root / "splits"
        self._membership = read_official_splits(self.split_dir)

    @classmethod
    def example(cls, root: Path) -> tuple[dict, dict[str, int]]:
        pairs = {"train": [["000", "001"]], "val": [["002", "003"]], "test": [["004", "005"]]}
        (root / "splits").mkdir(parents=True)
        for split, p in pairs.items():
            (root / "splits" / f"{split}.json").write_text(json.dumps(p))
        real = "original_sequences/youtube/c23/videos"
        fake = "manipulated_sequences/{}/c23/videos/{}.mp4"
        labels = {f"{real}/{k:03d}.mp4": 0 for k in range(6)}
        labels |= {
            fake.format("Deepfakes", "000_001"): 1,
            fake.format("Face2Face", "003_002"): 1,
            fake.format("FaceSwap", "004_005"): 1,
            fake.format("NeuralTextures", "005_004"): 1,
        }
        # not items: another compression, and a method the default leaves out
        others = [
            "original_sequences/youtube/c40/videos/000.mp4",
            fake.format("FaceShifter", "000_001"),
        ]
        placeholders(root, dict.fromkeys(others, 0))
        return {"compression": "c23"}, placeholders(root, labels)

    def options(self) -> dict:
        return {
            "compression": self.compression,
            "methods": list(self.methods),
            # the official lists under the root (which may move), or a folder of one's own
            "splits": str(self.split_dir.resolve()) if self.own_splits else "<root>/splits",
        }

    def _split(self, stem: str, actor: bool) -> str | None:
        if actor:
            return assign("ffpp-actor:" + stem.split("_")[0], ACTOR_FRACTIONS)
        return self._membership.get(stem.split("_")[0])

    def _videos(self, folder: Path) -> list[Path]:
        d = folder / self.compression / "videos"
        return sorted(d.glob("*.mp4")) if d.is_dir() else []

    def items(self) -> list[Item]:
        methods = self.methods
        groups = [("real", 0, self.root / "original_sequences" / "youtube", False)]
        if "DeepFakeDetection" in methods:
            groups.append(("real", 0, self.root / "original_sequences" / "actors", True))
        for m in methods:
            groups.append((m, 1, self.root / "manipulated_sequences" / m, m == "DeepFakeDetection"))
        items = []
        for method, label, folder, actor in groups:
            for path in self._videos(folder):
                split = self._split(path.stem, actor)
                if split is None:
                    continue  # an id the official lists do not mention
                ids = path.stem.split("__")[0].split("_") if actor else path.stem.split("_")
                prefix = "actor" if actor else "yt"
                identities = tuple(f"{prefix}{i}" for i in ids)
                items.append(
                    Item(self.name, self.rel(path), label, split, method, identities=identities)
                )
        if not items:
            raise DatasetError(
                f"FaceForensics: no videos under {self.root}/original_sequences/youtube/"
                f"{self.compression}/videos or manipulated_sequences/<method>/"
                f"{self.compression}/videos"
            )
        return sorted(items, key=lambda i: i.video)

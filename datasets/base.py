"""What every database adapter yields: plain items, one per video (or image).

Labels are 1 = fake, 0 = real everywhere. `video` is the path relative to the database
root (POSIX), which is also the item's identity in caches and score tables.
"""

from __future__ import annotations

import hashlib
import posixpath
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from dffr.errors import DffrError
from dffr.registry import Registry, unknown_options

SPLITS = ("train", "val", "test")
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}


@dataclass(frozen=True)
class Item:
    """One video of a database: where it is, its label, split and manipulation."""

    ddbb: str
    video: str
    label: int
    split: str
    method: str
    listed_in: str = ""  # the metadata file that names it, for "missing" reports
    identities: tuple[str, ...] = ()  # who appears in it (a face swap shows two)
    original: str = ""  # a fake's source video, relative to the root, where known
    refused: str = ""  # why its listed path is not read (it leaves the database root)

    def path(self, root: Path) -> Path:
        return Path(root) / self.video


@dataclass
class NoOptions:
    """The options of a database that has none of its own."""


def option(default: str | None = None, help: str = "", path: bool = False):
    """One field of an adapter's `Options`: its default, what `dffr preprocess --help`
    says of it, and whether it is a file or folder (relative to where it is given). Its
    value comes as a string, as `--<name>` and an experiment's `caches:` entry give it."""
    return field(default=default, metadata={"help": help, "path": path})


class DatasetError(DffrError):
    """A database folder does not have the layout its adapter expects."""


class Dataset(ABC):
    """A database in its official on-disk layout, with its official (or documented) split.

    `faces` is how many faces of a video its labels speak for: "largest" (one subject:
    the largest face is tracked) or "all" (several people may appear, any of them
    swapped: every face is tracked)."""

    name: str = ""
    faces: str = "largest"
    # its own options, a dataclass of `option(...)` fields: each is a keyword of its
    # constructor and becomes `dffr preprocess --<name>`
    Options: ClassVar[type] = NoOptions

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.name}: root folder {self.root} does not exist")

    @abstractmethod
    def items(self) -> list[Item]:
        """Every item, sorted by `video`."""

    @classmethod
    def parse_options(cls, given: dict) -> Any:
        """`given` as this database's `Options`, its defaults filled in; DatasetError
        naming an option it does not have (and those it has)."""
        problem = unknown_options(cls.name, given, cls.Options)
        if problem:
            raise DatasetError(problem)
        return cls.Options(**given)

    @classmethod
    def example(cls, root: Path) -> tuple[dict, dict[str, int]]:
        """Write a miniature of the database's layout under `root` (empty media files:
        an adapter lists them, never reads them) and return (the options to open it
        with, the label of each video it holds). The contract tests open every
        registered adapter on its example, so a new adapter is tested with no test of
        its own; its example holds real and fake videos in each of the three splits."""
        raise NotImplementedError(
            f"database {cls.name or cls.__name__!r} has no example layout: a new adapter "
            "implements the classmethod `example(root)` (see Dataset.example), on which "
            "tests/test_contracts.py checks its labels and splits"
        )

    def options(self) -> dict:
        """The adapter's options as used (defaults filled in), recorded with a cache so
        that adding to it with other options is refused."""
        return {}

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def listed(self, path: str, listed_in: str) -> tuple[str, str]:
        """(video id, why refused or "") for a path a metadata file names.

        A path that leaves the root (`../x.mp4`, `/etc/x`, `a/../../x`) is never read,
        and nothing is written under its name: it gets a stand-in id under `refused/`
        and a reason, recorded as that item's failure."""
        norm = posixpath.normpath(str(path).replace("\\", "/"))
        if norm.startswith(("/", "../")) or norm in ("..", "."):
            digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
            return f"refused/{digest}", (
                f"refused: {listed_in} names {path!r}, which leaves the database root"
            )
        return norm, ""


def placeholders(root: Path, labels: dict[str, int]) -> dict[str, int]:
    """An empty file at each of `labels`' paths under `root`, for an example layout;
    returns `labels`."""
    for video in labels:
        path = Path(root) / video
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    return labels


DATASETS: Registry[type[Dataset]] = Registry("database", "dffr.datasets.adapters", "dffr.datasets")


def get_dataset(name: str, root: str | Path, **options) -> Dataset:
    """Open database `name` at `root`; options are the adapter's own (see its docstring)."""
    cls = DATASETS.get(name)
    cls.parse_options(options)  # an option it does not have is named, before any work
    return cls(root, **options)

"""Deterministic, identity-disjoint splits for databases without an official one.

A video may show several identities (a face swap shows two). Identities, not videos,
are assigned to splits, by a stable hash of their name, so the split never depends on
the order files are listed in or on which other files exist. A video whose identities
fall in different splits belongs to none, and is reported as excluded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping


def stable_unit(key: str, salt: str = "dffr") -> float:
    """A number in [0, 1) fixed by `key`: the same on every machine and run."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(key: str, fractions: Mapping[str, float], salt: str = "dffr") -> str:
    """The split of `key` when splits take the given fractions (in order) of [0, 1)."""
    u, acc = stable_unit(key, salt), 0.0
    for split, frac in fractions.items():
        acc += frac
        if u < acc:
            return split
    return list(fractions)[-1]


def identity_split(
    identities: Iterable[str], fractions: Mapping[str, float], salt: str = "dffr"
) -> str | None:
    """The split of a video from its identities' splits; None when they disagree."""
    splits = {assign(i, fractions, salt) for i in identities}
    return splits.pop() if len(splits) == 1 else None

"""Files that are either the old version or the new one, never half of either.

Whatever dffr writes that a later stage reads (index, parts, scores, models) is written
to a temporary file beside it (`.tmp-<random><suffix>`) that replaces it only once
complete; if the write fails (a full disk, an exception) the temporary file is deleted.
A killed process can leave one behind: the cache removes them when it is next indexed,
and no reader ever takes one for a record.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

TMP_PREFIX = ".tmp-"
_UMASK = os.umask(0)  # read once (setting it is the only way to read it), then restored
os.umask(_UMASK)


@contextlib.contextmanager
def replaced(path: str | Path) -> Iterator[Path]:
    """A temporary path to write `path`'s new content to; moved onto `path` when the
    block ends normally, deleted otherwise. It keeps `path`'s suffix (Keras and pandas
    choose the format by it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX, suffix=path.suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide results from the group
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    with replaced(path) as tmp:
        tmp.write_bytes(data)

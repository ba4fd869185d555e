"""Advisory file locks, so that two dffr runs never write one thing at once.

A lock is `flock` on a small file beside what it guards (`.<name>.lock`). The operating
system releases it when its holder ends, however it ends: a killed run leaves no stale
lock. A run that finds a lock taken stops at once with a message naming what is in use
and by which process; it never waits, and never does the other run's work again.

Within one process a lock is re-entrant: `preprocess` holds its cache's lock and builds
the index, which takes the same lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from dffr.errors import DffrError

_HELD: dict[str, list] = {}  # lock file -> [fd, exclusive, depth], for this process


class LockedError(DffrError):
    """What a run needs is being written by another run."""


def beside(target: str | Path) -> Path:
    """The lock file of a file: `.<name>.lock` in its folder."""
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's process: alive
        pass
    return True


@contextlib.contextmanager
def locked(path: str | Path, what: str, shared: bool = False) -> Iterator[None]:
    """Hold the lock file `path` for the block: exclusive, or shared with other shared
    holders (shards of one cache). LockedError, naming `what`, when it is taken."""
    path = Path(path).resolve()
    key = str(path)
    if key in _HELD:
        held = _HELD[key]
        if not shared and not held[1]:
            raise LockedError(f"{what}: this run holds its lock shared and cannot take it alone")
        held[2] += 1
        try:
            yield
        finally:
            held[2] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            by = f" (process {holder})" if _alive(holder) else ""
            raise LockedError(
                f"{what} is in use by another dffr run{by}: wait for it to end, or stop "
                f"it; its lock ({path}) goes when that run does"
            ) from None
        if not shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        _HELD[key] = [fd, not shared, 1]
        try:
            yield
        finally:
            del _HELD[key]
    finally:
        os.close(fd)  # closing the file releases the lock

"""Input batches made in worker threads, in order, while the network runs.

Reading crops and cutting regions takes a core; on an accelerator the network waits for
it. `feed` runs `fn(state, task)` for each task in `workers` threads, a few tasks ahead,
and yields the results in the tasks' order, so what is computed never depends on the
number of workers (the same scores, the same trained weights for a seed). `workers=0`
runs everything in the calling thread.

Threads, not processes: decoding PNGs (Pillow), OpenCV and NumPy release the GIL, and a
thread hands its batch over without copying it. Worker processes were measured slower
on this work (benchmarks/score.py: pickling five region images per face back to the
main process cost more than cutting them), see the README.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import TypeVar

from dffr.errors import DffrError

S, T, R = TypeVar("S"), TypeVar("T"), TypeVar("R")
AHEAD = 2  # tasks in flight per worker


class FeedError(DffrError):
    """A worker making input batches failed with an error that is not the input's (out
    of memory, a bug in a library): the run stops, naming it."""


def default_workers() -> int:
    """The cores this process may use (its CPU affinity, e.g. a cluster job's share)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def feed(fn: Callable[[S, T], R], state: S, tasks: Iterable[T], workers: int = 0) -> Iterator[R]:
    """fn(state, task) for each task, in order; in `workers` threads when > 0. An error
    in a worker is raised here, at its task's turn: a DffrError (the input's) as it is,
    any other as a FeedError naming it."""
    if workers <= 0:
        for task in tasks:
            yield fn(state, task)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="dffr-feed")
    try:
        todo = iter(tasks)
        pending = deque(pool.submit(fn, state, t) for t in islice(todo, workers * AHEAD))
        while pending:
            try:
                result = pending.popleft().result()
            except DffrError:
                raise
            except Exception as e:
                raise FeedError(
                    f"a worker making input batches failed ({type(e).__name__}: {e}); the "
                    "run stops here"
                ) from e
            pending.extend(pool.submit(fn, state, t) for t in islice(todo, 1))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

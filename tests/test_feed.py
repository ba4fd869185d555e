"""Input batches made by worker threads (`dffr.feed`): in order whatever the number of
workers, the same scores and trained weights with 0 and 2 workers, and a worker that
fails mid-run stops the run with nothing of it written."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest
import torch

from dffr.detectors.base import DetectorConfig
from dffr.detectors.training import train
from dffr.errors import DffrError
from dffr.feed import FeedError, feed
from dffr.scoring.scores import score


def test_results_come_in_the_tasks_order_from_several_threads():
    names = set()

    def slow(offset, task):  # later tasks finish first
        names.add(threading.current_thread().name)
        time.sleep(0.02 * (5 - task % 5))
        return offset + task

    assert list(feed(slow, 100, range(12), workers=3)) == [100 + t for t in range(12)]
    assert len(names) > 1
    assert list(feed(slow, 0, range(4), workers=0)) == [0, 1, 2, 3]


def test_an_error_in_a_worker_is_raised_at_its_turn_and_an_early_stop_does_not_hang():
    def fail_on_3(_, task):
        if task == 3:
            raise DffrError("crop 3 is unreadable")
        return task

    got = []
    with pytest.raises(DffrError, match="crop 3"):
        for value in feed(fail_on_3, None, range(10), workers=2):
            got.append(value)
    assert got == [0, 1, 2]
    stream = feed(lambda _, t: t, None, range(1000), workers=2)
    assert next(stream) == 0
    stream.close()  # the pool is shut down, queued tasks cancelled


def dsp_fwa_scores(cache, models, out, regions, **kw):
    """The tiny DSP-FWA models' test scores of the conftest cache, into `out`."""
    return score(cache, models, "CelebDF", out, ("DSP-FWA",), regions, progress=False, **kw)


def test_scores_are_the_same_with_and_without_workers(cache, models, tmp_path):
    files = []
    for workers in (0, 2):
        out = tmp_path / f"scores-{workers}.parquet"
        dsp_fwa_scores(cache, models, out, ("eyes", "mouth"), batch=2, workers=workers)
        files.append(pd.read_parquet(out))
    a, b = files
    assert len(a) == 12
    assert np.array_equal(a["score"].to_numpy(), b["score"].to_numpy())


def test_trained_weights_are_the_same_with_and_without_workers(cache, tmp_path):
    states = []
    for workers in (0, 2):
        cfg = DetectorConfig(
            "DSP-FWA",
            region="mouth",
            ddbb="CelebDF",
            input_size=64,
            epochs=1,
            batch=2,
            pretrained=False,
            augment=["flip", "noise"],
        )
        r = train(cfg, cache, tmp_path / f"models-{workers}", workers=workers)
        states.append(r.detector.model.state_dict())
        touched = r.train_data.touched
        assert touched  # recorded in the main thread, whatever made the images
    a, b = states
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_worker_failing_mid_run_leaves_the_scores_file_as_it_was(
    cache, models, tmp_path, monkeypatch
):
    import dffr.scoring.scores as scoring

    out = tmp_path / "scores.parquet"
    dsp_fwa_scores(cache, models, out, ("eyes",))
    before = out.read_bytes()
    real, calls = scoring._region_batches, []

    def dies_on_the_second_block(*args):
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError("the worker ran out of memory")
        return real(*args)

    monkeypatch.setattr(scoring, "_region_batches", dies_on_the_second_block)
    with pytest.raises(FeedError, match="MemoryError: the worker ran out of memory"):
        dsp_fwa_scores(cache, models, out, ("mouth",), batch=2, workers=2)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []

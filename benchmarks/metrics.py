"""Bootstrap intervals at 100k frames: the loop they replaced against today's code.

    .venv/bin/python benchmarks/metrics.py [--videos 2000] [--frames 50] [--resamples 1000]
                                           [--decimals 4]

Synthetic scores of `videos` x `frames` frames (half the videos fake, each video with its
own offset, scores rounded to `decimals` places so that some are tied; a negative value
keeps them unrounded), bootstrapped at frame and video level. Prints the time per
resample and in all before (sklearn on every resample's rows, as the code did up to
issue #15) and after, the speed-up, whether the intervals are identical, and how long a
rerun takes when they come from the cache.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import numpy as np
import pandas as pd

from dffr.experiments.metrics import METRICS, bootstrap, metrics, video_level


def loop_bootstrap(scores: pd.DataFrame, n: int, seed: int) -> dict[str, tuple[float, float]]:
    """The implementation replaced: copy each resample's rows and call sklearn on them."""
    labels = scores["label"].to_numpy()
    values = scores["score"].to_numpy(dtype=np.float64)
    rows_of = list(scores.groupby("video", sort=True).indices.values())
    rng = np.random.default_rng(seed)
    draws = {m: [] for m in METRICS}
    for _ in range(n):
        pick = rng.integers(0, len(rows_of), size=len(rows_of))
        idx = np.concatenate([rows_of[i] for i in pick])
        m = metrics(labels[idx], values[idx])
        for k in METRICS:
            draws[k].append(m[k])
    return {
        k: (float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5)))
        if not np.all(np.isnan(v))
        else (np.nan, np.nan)
        for k, v in draws.items()
    }


def synthetic(videos: int, frames: int, decimals: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = np.arange(videos) % 2
    video = np.repeat(np.arange(videos), frames)
    logit = 1.5 * (label - 0.5) + rng.normal(0, 1, videos)
    score = 1 / (1 + np.exp(-(logit[video] + rng.normal(0, 1.5, len(video)))))
    if decimals >= 0:
        score = np.round(score, decimals)
    return pd.DataFrame(
        {"video": [f"v{v:05d}" for v in video], "label": label[video], "score": score}
    )


def same(a: dict, b: dict) -> bool:
    return all(np.array_equal(a[k], b[k], equal_nan=True) for k in METRICS)


def seconds(f, *args) -> tuple[object, float]:
    t = time.perf_counter()
    out = f(*args)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=2000)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--decimals", type=int, default=4)
    args = ap.parse_args()
    n = args.resamples
    rows = synthetic(args.videos, args.frames, args.decimals)
    print(
        f"{len(rows)} frames of {args.videos} videos, {rows['score'].nunique()} distinct "
        f"scores, {n} resamples"
    )
    for level, g in (("frame", rows), ("video", video_level(rows))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn on a resample of one class
            before, t_before = seconds(loop_bootstrap, g, n, 0)
        after, t_after = seconds(bootstrap, g, n, 0)
        with tempfile.TemporaryDirectory() as cache:
            bootstrap(g, n, 0, cache)
            cached, t_cached = seconds(bootstrap, g, n, 0, cache)
        identical = same(before, after) and same(cached, after)
        print(
            f"{level:5s} level, {len(g):6d} rows: "
            f"before {1e3 * t_before / n:7.2f} ms/resample ({t_before:6.1f} s), "
            f"after {1e3 * t_after / n:5.2f} ms/resample ({t_after:5.2f} s), "
            f"{t_before / t_after:5.1f}x faster, intervals identical: {identical} "
            f"(cached too), cached rerun {1e3 * t_cached:.0f} ms"
        )


if __name__ == "__main__":
    main()

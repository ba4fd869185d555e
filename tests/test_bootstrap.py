"""Bootstrap intervals: the same, bit for bit, as the loop that ran sklearn on every
resample's rows, and read back from the cache only for the very same inputs."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from dffr.experiments import metrics as M
from dffr.experiments.metrics import METRICS, bootstrap, bootstrap_draws, evaluate, video_level


def loop_draws(scores: pd.DataFrame, n: int, seed: int) -> dict[str, np.ndarray]:
    """The implementation this replaced: copy each resample's rows, call sklearn."""
    labels = scores["label"].to_numpy()
    values = scores["score"].to_numpy(dtype=np.float64)
    rows_of = list(scores.groupby("video", sort=True).indices.values())
    rng = np.random.default_rng(seed)
    draws = {m: [] for m in METRICS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn on a resample of one class
        for _ in range(n):
            pick = rng.integers(0, len(rows_of), size=len(rows_of))
            idx = np.concatenate([rows_of[i] for i in pick])
            m = M.metrics(labels[idx], values[idx])
            for k in METRICS:
                draws[k].append(m[k])
    return {k: np.array(v) for k, v in draws.items()}


def loop_intervals(draws: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    return {
        k: (float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5)))
        if not np.all(np.isnan(v))
        else (np.nan, np.nan)
        for k, v in draws.items()
    }


def same(a: dict, b: dict) -> bool:
    """Equal to the last bit, NaN equal to NaN."""
    return a.keys() == b.keys() and all(
        np.array_equal(np.asarray(a[k]), np.asarray(b[k]), equal_nan=True) for k in a
    )


def frames(videos: int = 12, per_video: int = 4, fakes: float = 0.5, seed: int = 0) -> pd.DataFrame:
    """Score rows of one cell; scores rounded to one decimal, so many are tied (0.5, the
    accuracy threshold, among them), shuffled so rows of a video are not adjacent."""
    rng = np.random.default_rng(seed)
    label = (np.arange(videos) < round(fakes * videos)).astype(int)
    video = np.repeat(np.arange(videos), per_video)
    score = np.round(np.clip(0.25 * label[video] + rng.uniform(0, 0.75, len(video)), 0, 1), 1)
    rows = pd.DataFrame(
        dict(
            video=[f"v{v:02d}" for v in video],
            frame=np.tile(np.arange(per_video), videos),
            label=label[video],
            method=np.where(label[video] == 1, "fake", "real"),
            score=score,
            train_ddbb="A",
            test_ddbb="A",
            detector="D",
            region="eyes",
            split="test",
        )
    )
    return rows.sample(frac=1, random_state=seed).reset_index(drop=True)


@pytest.mark.parametrize("level", ["frame", "video"])
@pytest.mark.parametrize(
    ("videos", "per_video", "fakes", "seed"),
    [(12, 4, 0.5, 0), (9, 3, 0.3, 1), (20, 1, 0.5, 2), (6, 5, 1 / 6, 3)],
)
def test_draws_equal_the_sklearn_loop_bit_for_bit(level, videos, per_video, fakes, seed):
    rows = frames(videos, per_video, fakes, seed)
    g = video_level(rows) if level == "video" else rows
    old = loop_draws(g, 100, seed)
    assert same(bootstrap_draws(g, 100, seed), old)
    assert same(bootstrap(g, 100, seed), loop_intervals(old))


def test_a_resample_of_one_class_counts_for_accuracy_only():
    rows = frames(videos=6, per_video=3, fakes=1 / 6)  # one fake video: often not drawn
    old = loop_draws(rows, 100, 5)
    one_class = np.isnan(old["auc"])
    assert 10 < one_class.sum() < 100  # the case occurs, and not in every resample
    new = bootstrap_draws(rows, 100, 5)
    assert same(new, old)
    assert np.isnan(new["eer"][one_class]).all() and np.isnan(new["ap"][one_class]).all()
    assert not np.isnan(new["acc"]).any()


def test_evaluate_at_both_levels_gives_the_loop_intervals():
    rows = frames(videos=10, per_video=3, seed=4)
    rows.loc[rows["video"] == "v01", "score"] = np.nan  # a video without a face
    frame = evaluate(rows, "frame", n_bootstrap=100, seed=7).iloc[0]
    video = evaluate(rows, "video", n_bootstrap=100, seed=7, no_face_score=0.3).iloc[0]
    for row, g in ((frame, rows[rows["score"].notna()]), (video, video_level(rows, 0.3))):
        want = loop_intervals(loop_draws(g, 100, 7))
        assert same({k: (row[f"{k}_lo"], row[f"{k}_hi"]) for k in METRICS}, want)


def test_a_cell_without_any_face_has_no_interval():
    rows = frames(videos=4, per_video=2).assign(score=np.nan)
    row = evaluate(rows, "frame", n_bootstrap=20).iloc[0]
    assert all(np.isnan(row[f"{k}_{e}"]) for k in METRICS for e in ("lo", "hi"))


def test_the_cache_gives_back_identical_intervals_without_recomputing(tmp_path, monkeypatch):
    rows = frames(seed=8)
    first = evaluate(rows, "video", n_bootstrap=100, cache_dir=tmp_path)
    (cached,) = tmp_path.glob("*.json")
    assert same(json.loads(cached.read_text()), bootstrap(video_level(rows), 100))

    def recompute(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(M, "bootstrap_draws", recompute)
    again = evaluate(rows, "video", n_bootstrap=100, cache_dir=tmp_path)
    pd.testing.assert_frame_equal(again, first, check_exact=True)


def intervals(table: pd.DataFrame) -> dict[str, tuple[float, float]]:
    return {k: (table[f"{k}_lo"].item(), table[f"{k}_hi"].item()) for k in METRICS}


def moved_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The same scores and labels, one frame counted in another video of its class."""
    rows = rows.copy()
    rows.loc[rows.index[rows["video"] == "v00"][0], "video"] = "v01"
    return rows


def other_score(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.copy()
    rows.loc[rows.index[rows["video"] == "v00"][0], "score"] += 0.05
    return rows


def other_label(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.copy()
    rows.loc[rows.index[rows["video"] == "v00"][0], "label"] = 0
    return rows


@pytest.mark.parametrize(
    ("level", "rows_change", "setting_change"),
    [
        ("frame", other_score, {}),
        ("frame", other_label, {}),
        ("frame", moved_frame, {}),
        ("frame", None, {"n_bootstrap": 51}),
        ("frame", None, {"seed": 1}),
        ("frame", None, {"level": "video"}),
        ("video", None, {"no_face_score": 0.9}),  # the faceless video's score
    ],
    ids=["score", "label", "video", "n_bootstrap", "seed", "level", "no_face_score"],
)
def test_a_changed_input_or_setting_misses_the_cache(tmp_path, level, rows_change, setting_change):
    rows = frames(seed=9)
    rows.loc[rows["video"] == "v05", "score"] = np.nan
    settings = dict(level=level, n_bootstrap=50, seed=0, no_face_score=0.5)
    evaluate(rows, cache_dir=tmp_path, **settings)
    changed = rows_change(rows) if rows_change else rows
    settings.update(setting_change)
    got = evaluate(changed, cache_dir=tmp_path, **settings)
    assert len(list(tmp_path.glob("*.json"))) == 2
    assert same(intervals(got), intervals(evaluate(changed, **settings)))


def test_a_setting_that_changes_no_row_shares_the_cache(tmp_path):
    rows = frames(seed=10)
    evaluate(rows, "frame", n_bootstrap=30, no_face_score=0.5, cache_dir=tmp_path)
    evaluate(rows, "frame", n_bootstrap=30, no_face_score=0.9, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 1  # frame level has no use for it


@pytest.mark.parametrize(
    "damage",
    [b"", b"{not json", b"\xff\xfe\x00garbage", b"[1, 2]", b'{"auc": [0.1, 0.2]}',
     b'{"auc": 1, "eer": 1, "ap": 1, "acc": 1}',
     b'{"auc": [1, 2, 3], "eer": [1, 2], "ap": [1, 2], "acc": [1, 2]}',
     b'{"auc": ["a", "b"], "eer": [1, 2], "ap": [1, 2], "acc": [1, 2]}'],
)  # fmt: skip
def test_a_damaged_cache_file_is_recomputed_and_replaced(tmp_path, damage):
    rows = frames(seed=11)
    fresh = evaluate(rows, "frame", n_bootstrap=40, cache_dir=tmp_path)
    (cached,) = tmp_path.glob("*.json")
    good = cached.read_bytes()
    cached.write_bytes(damage)
    again = evaluate(rows, "frame", n_bootstrap=40, cache_dir=tmp_path)
    pd.testing.assert_frame_equal(again, fresh, check_exact=True)
    assert cached.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == [cached.name]  # no temporary file left

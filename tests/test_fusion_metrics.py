"""Fusion rules and metrics on hand-made score tables with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.metrics import average_precision_score, roc_auc_score

from dffr.cli import main
from dffr.experiments.metrics import eer, evaluate, metrics, video_level
from dffr.fusion import FUSION, FusionError, fuse, load_rule

from .conftest import score_table


def test_simple_rules_give_known_answers():
    df = score_table({"eyes": [0.2, 0.9], "mouth": [0.6, 0.5]}, [0, 1])
    got = {
        r: fuse(df, "regions", r, subset=["eyes", "mouth"])["score"].round(6).tolist()
        for r in ("mean", "median", "max", "min", "product")
    }
    assert got == {
        "mean": [0.4, 0.7],
        "median": [0.4, 0.7],
        "max": [0.6, 0.9],
        "min": [0.2, 0.5],
        "product": [0.12, 0.45],
    }
    out = fuse(df, "regions", "mean", subset=["eyes", "mouth"])
    assert out["region"].iloc[0] == "mean(eyes+mouth)" and (out["detector"] == "D").all()


def test_logistic_fusion_of_a_perfect_and_a_random_detector():
    rng = np.random.default_rng(0)
    n = 400
    labels = rng.integers(0, 2, n)
    perfect = np.where(labels == 1, rng.uniform(0.6, 1, n), rng.uniform(0, 0.4, n))
    noise = rng.uniform(0, 1, n)
    val = score_table({"eyes": perfect[:200], "mouth": noise[:200]}, labels[:200], split="val")
    test = score_table({"eyes": perfect[200:], "mouth": noise[200:]}, labels[200:], split="test")
    fused = fuse(pd.concat([val, test]), "regions", "logistic", subset=["eyes", "mouth"])
    held_out = fused[fused["split"] == "test"]
    assert roc_auc_score(held_out["label"], held_out["score"]) == 1.0
    for rule in ("weighted_mean", "svm"):
        f = fuse(pd.concat([val, test]), "regions", rule, subset=["eyes", "mouth"])
        f = f[f["split"] == "test"]
        assert roc_auc_score(f["label"], f["score"]) > 0.99, rule


def test_normalisation_is_fitted_on_validation_and_applied_unchanged():
    # val eyes 0 / 1, mouth 0 / 2: min-max maps test (0.5, 1.0) to (0.5, 0.5), z-score to
    # (0, 0); test scores never move the normalisation
    v = score_table({"eyes": [0.0, 1.0], "mouth": [0.0, 2.0]}, [0, 1], split="val")
    t = score_table({"eyes": [0.5, 2.0], "mouth": [1.0, 4.0]}, [0, 1])
    mm = fuse(pd.concat([v, t]), "regions", "max", ["eyes", "mouth"], norm="minmax")
    assert mm[mm.split == "test"]["score"].tolist() == [0.5, 2.0]
    z = fuse(pd.concat([v, t]), "regions", "max", ["eyes", "mouth"], norm="zscore")
    assert np.allclose(z[z.split == "test"]["score"], [0.0, 3.0])
    assert set(z["norm"]) == {"zscore"} and set(z["rule"]) == {"max"}
    v = score_table({"eyes": [0.0, 1.0], "mouth": [0.0, 2.0]}, [0, 1], split="val")
    t1 = score_table({"eyes": [0.5, 0.5], "mouth": [1.0, 1.0]}, [0, 1])
    t2 = score_table({"eyes": [0.5, 99.0], "mouth": [1.0, 99.0]}, [0, 1])
    a = fuse(pd.concat([v, t1]), "regions", "mean", ["eyes", "mouth"], norm="minmax")
    b = fuse(pd.concat([v, t2]), "regions", "mean", ["eyes", "mouth"], norm="minmax")
    assert a[(a.split == "test") & (a.video == "v0")]["score"].item() == pytest.approx(0.5)
    assert b[(b.split == "test") & (b.video == "v0")]["score"].item() == pytest.approx(0.5)


def test_fusion_over_detectors_and_both():
    a = score_table({"eyes": [0.2, 0.8]}, [0, 1], detector="A")
    b = score_table({"eyes": [0.4, 0.6]}, [0, 1], detector="B")
    over_det = fuse(pd.concat([a, b]), "detectors", "mean")
    assert over_det["score"].round(6).tolist() == [0.3, 0.7]
    assert over_det["region"].tolist() == ["eyes", "eyes"]
    both = fuse(pd.concat([a, b]), "both", "max", subset=["eyes"])
    assert both["score"].tolist() == [0.4, 0.8]
    assert both["detector"].iloc[0] == both["region"].iloc[0]


def test_user_rule_from_a_file_and_broken_rules(tmp_path):
    rules = tmp_path / "my_rules.py"
    rules.write_text(
        "import numpy as np\n"
        "def geometric_mean(scores):\n"
        "    return np.exp(np.log(scores.clip(1e-6, 1)).mean(axis=1))\n"
        "def broken(scores):\n"
        "    raise ValueError('nope')\n"
        "NOT_A_RULE = 3\n"
    )
    df = score_table({"eyes": [0.25, 0.9], "mouth": [0.64, 0.4]}, [0, 1])
    out = fuse(df, "regions", f"{rules}:geometric_mean", subset=["eyes", "mouth"])
    assert out["score"].round(6).tolist() == [0.4, 0.6]
    assert out["region"].iloc[0] == "geometric_mean(eyes+mouth)"
    with pytest.raises(FusionError, match="'.*broken' failed: ValueError: nope"):
        fuse(df, "regions", f"{rules}:broken", subset=["eyes", "mouth"])
    with pytest.raises(FusionError, match="defines no 'missing'"):
        load_rule(f"{rules}:missing")
    with pytest.raises(FusionError, match="not callable"):
        load_rule(f"{rules}:NOT_A_RULE")
    with pytest.raises(FusionError, match="not found"):
        load_rule(f"{tmp_path / 'nope.py'}:f")
    with pytest.raises(FusionError, match="choose one of"):
        load_rule("nonsense")
    with pytest.raises(FusionError, match="own training database .* --split val"):
        fuse(df, "regions", "logistic", subset=["eyes", "mouth"])


def test_registering_a_rule_in_code():
    @FUSION.register("second_best")
    def second_best(scores):
        return scores.apply(lambda r: sorted(r)[-2], axis=1)

    df = score_table({"eyes": [0.1, 0.9], "nose": [0.3, 0.2], "mouth": [0.5, 0.4]}, [0, 1])
    out = fuse(df, "regions", "second_best", subset=["eyes", "nose", "mouth"])
    assert out["score"].tolist() == [0.3, 0.4]


def test_metrics_against_sklearn_and_a_hand_computed_eer():
    y = [0, 0, 1, 1]
    s = [0.1, 0.6, 0.4, 0.9]
    m = metrics(y, s)
    assert m["auc"] == roc_auc_score(y, s) == 0.75
    assert m["ap"] == average_precision_score(y, s)
    assert m["acc"] == 0.5  # 0.6 -> fake (wrong), 0.4 -> real (wrong)
    assert eer(y, s) == 0.5  # at threshold 0.6: FPR 1/2, miss rate 1/2
    assert eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 0.0
    # 10 real, 10 fake; one fake below every real: FPR=FNR=0.1 at the crossing
    y2 = [0] * 10 + [1] * 10
    s2 = list(np.linspace(0.1, 0.5, 10)) + [0.05] + list(np.linspace(0.6, 0.9, 9))
    assert eer(y2, s2) == pytest.approx(0.1)


def test_video_level_and_bootstrap_table():
    rows = []
    for v, (label, scores) in enumerate(
        [(0, [0.1, 0.3]), (0, [0.2, 0.9]), (1, [0.7, 0.5]), (1, [0.8, 0.6])]
    ):
        for f, s in enumerate(scores):
            rows.append(
                dict(
                    video=f"v{v}",
                    frame=f,
                    label=label,
                    split="test",
                    method="m",
                    test_ddbb="T",
                    train_ddbb="T",
                    detector="D",
                    region="eyes",
                    score=s,
                )
            )
    df = pd.DataFrame(rows)
    vid = video_level(df)
    assert vid.sort_values("video")["score"].round(6).tolist() == [0.2, 0.55, 0.6, 0.7]
    t = evaluate(df, level="video", n_bootstrap=200)
    assert t["auc"].item() == 1.0 and t["videos"].item() == 4
    f = evaluate(df, level="frame", n_bootstrap=200)
    assert f["auc"].item() == roc_auc_score(df["label"], df["score"])
    assert f["auc_lo"].item() <= f["auc"].item() <= f["auc_hi"].item()


def test_fuse_and_evaluate_commands(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 60)
    cols = {
        r: np.clip(labels * 0.3 + rng.uniform(0, 0.7, 60), 0, 1)
        for r in ("eyes", "nose", "mouth", "rest")
    }
    df = pd.concat(
        [
            score_table({r: v[:30] for r, v in cols.items()}, labels[:30], split="val"),
            score_table({r: v[30:] for r, v in cols.items()}, labels[30:]),
        ]
    )
    df.to_parquet(tmp_path / "scores.parquet")
    r = CliRunner().invoke(
        main,
        [
            "fuse",
            "--scores",
            str(tmp_path / "scores.parquet"),
            "--rule",
            "logistic",
            "--norm",
            "zscore",
            "--out",
            str(tmp_path / "fused.parquet"),
        ],
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--scores",
            str(tmp_path / "fused.parquet"),
            "--bootstrap",
            "50",
            "--out",
            str(tmp_path / "t.csv"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "logistic(eyes+mouth+nose+rest)" in r.output
    t = pd.read_csv(tmp_path / "t.csv")
    assert len(t) == 1 and 0.5 < t["auc"].item() <= 1.0
    bad = CliRunner().invoke(
        main,
        [
            "fuse",
            "--scores",
            str(tmp_path / "scores.parquet"),
            "--rule",
            "x.py:f",
            "--out",
            str(tmp_path / "f.parquet"),
        ],
    )
    assert bad.exit_code == 1 and "not found" in bad.output


def test_method_table_scores_each_manipulation_against_the_reals():
    from dffr.experiments.tables import method_table

    real = [0.1, 0.2, 0.3, 0.4]
    rows = [("real", 0, v) for v in real]
    rows += [("eyes-swap", 1, v) for v in (0.8, 0.9, 0.7, 0.6)]  # all above the reals
    rows += [("mouth-swap", 1, v) for v in (0.15, 0.25, 0.35, 0.45)]  # interleaved
    df = pd.DataFrame(rows, columns=["method", "label", "score"]).assign(
        train_ddbb="A", test_ddbb="A", detector="D", region="eyes"
    )
    table = method_table(df)
    assert list(table.columns) == ["eyes-swap", "mouth-swap"]
    assert table.loc[("A", "A", "D", "eyes"), "eyes-swap"] == 100.0
    expected = 100 * roc_auc_score([0] * 4 + [1] * 4, real + [0.15, 0.25, 0.35, 0.45])
    assert table.loc[("A", "A", "D", "eyes"), "mouth-swap"] == round(expected, 1)

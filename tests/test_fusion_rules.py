"""Fusion rules as functions or scikit-learn estimators, with hyper-parameters, in
`dffr fuse`, `dffr experiment` and `dffr robustness` (issue 14)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from dffr.cli import main
from dffr.experiments.spec import Experiment
from dffr.fusion import FUSION, FusionError, fuse, is_fused, load_rule

from .conftest import models_study, score_table

USER_RULES = """
import numpy as np
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.linear_model import LogisticRegression


def power_mean(scores, p=1.0):
    return (scores ** p).mean(axis=1) ** (1 / p)


scaled_logistic = make_pipeline(StandardScaler(), LogisticRegression(C=0.1))


class FirstInput:  # fit / predict_proba, no scikit-learn base class
    def fit(self, X, y):
        self.sign = 1.0 if np.corrcoef(X[:, 0], y)[0, 1] >= 0 else -1.0
        return self

    def predict_proba(self, X):
        p = 0.5 + self.sign * (X[:, 0] - 0.5)
        return np.column_stack([1 - p, p])


class Regressor:
    def fit(self, X, y):
        return self
"""


def _table(n=120, seed=0):
    """Val and test scores of eyes (informative) and mouth (noise) for one detector."""
    rng = np.random.default_rng(seed)
    parts = []
    for split in ("val", "test"):
        labels = rng.integers(0, 2, n)
        eyes = np.clip(labels * 0.6 + rng.normal(0.2, 0.15, n), 0, 1)
        parts.append(score_table({"eyes": eyes, "mouth": rng.uniform(0, 1, n)}, labels, split))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture
def rules(tmp_path):
    path = tmp_path / "my_rules.py"
    path.write_text(USER_RULES)
    return path


def test_estimators_functions_and_their_parameters(rules):
    scores = _table()
    pair = ["eyes", "mouth"]

    def test_auc(rule, norm="none"):
        f = fuse(scores, "regions", rule, pair, norm)
        f = f[f["split"] == "test"]
        return roc_auc_score(f["label"], f["score"]), f

    auc, rows = test_auc(f"{rules}:scaled_logistic")  # a Pipeline from a file
    assert auc > 0.95 and set(rows["region"]) == {"scaled_logistic(eyes+mouth)"}
    assert set(rows["rule"]) == {f"{rules}:scaled_logistic"} and set(rows["over"]) == {"regions"}
    assert set(rows["inputs"]) == {"D/eyes+D/mouth"}
    assert test_auc(f"{rules}:FirstInput")[0] > 0.95  # an object of one's own
    # hyper-parameters change the result: a function's keyword, an estimator's set_params
    _, p1 = test_auc(f"{rules}:power_mean")
    _, p3 = test_auc(f"{rules}:power_mean:p=3")
    assert not np.allclose(p1["score"], p3["score"])
    _, strong = test_auc("logistic:C=1e-4")
    _, weak = test_auc("logistic")
    assert np.ptp(strong["score"]) < np.ptp(weak["score"]) / 10  # heavy regularisation
    assert set(strong["rule"]) == {"logistic:C=1e-4"}
    # the same as scikit-learn by hand, fitted on the val rows only
    wide = scores.pivot_table(index=["split", "video", "label"], columns="region", values="score")
    val, test = wide.xs("val"), wide.xs("test")
    by_hand = LogisticRegression(C=1.0, max_iter=1000).fit(
        val.to_numpy(), val.index.get_level_values("label")
    )
    mine = weak.set_index("video")["score"].loc[test.index.get_level_values("video")]
    assert np.allclose(mine, by_hand.predict_proba(test.to_numpy())[:, 1])
    # a learned rule and a fixed one, behind a normalisation
    assert test_auc("weighted_mean", "zscore")[0] > 0.9
    assert is_fused(rows).all() and not is_fused(scores).any()


def test_rules_say_whether_they_learn_and_bad_ones_are_named(rules):
    assert load_rule("mean").learns is False and load_rule("svm").learns is True
    assert load_rule(f"{rules}:FirstInput").learns and not load_rule(f"{rules}:power_mean").learns
    for spec, message in (
        (f"{rules}:Regressor", "has `fit` but no `predict_proba`"),
        ("logistic:D=3", "Invalid parameter 'D'"),
        (f"{rules}:power_mean:q=2", "takes no parameter q"),
        ("logistic:C", "'C' is not key=value"),
    ):
        with pytest.raises(FusionError, match=message):
            load_rule(spec)
    FUSION.register("test_forest_like")(LogisticRegression(C=0.01))  # registered in code
    assert load_rule("test_forest_like:C=2").estimator.C == 2
    assert FUSION.get("test_forest_like").C == 0.01  # the registered one is never changed


def test_yaml_rules_with_parameters_and_user_estimators(tmp_path, rules):
    spec = {
        "name": "x",
        "caches": {"A": "c"},
        "train": ["A"],
        "test": ["A"],
        "fusion": [{"rule": {"name": "logistic", "C": 0.5}}],
    }
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(spec))
    exp = Experiment.load(path)
    assert exp.fusion[0].rule == "logistic:C=0.5" and exp.needs_val()
    spec["fusion"] = [{"rule": "mean"}, {"rule": f"{rules.name}:FirstInput"}]
    path.write_text(yaml.safe_dump(spec))
    assert Experiment.load(path).needs_val()  # asked of the rule: a user's estimator learns
    spec["fusion"] = [{"rule": f"{rules.name}:power_mean:p=2"}]
    path.write_text(yaml.safe_dump(spec))
    assert not Experiment.load(path).needs_val()
    spec["fusion"] = [{"rule": {"C": 1}}]
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(Exception, match="needs its `name`"):
        Experiment.load(path)


def test_a_user_estimator_in_fuse_experiment_and_robustness(cache, models, tmp_path, rules):
    """The same file's estimator, by the command line in all three."""
    from dffr.scoring.scores import score

    scores = tmp_path / "scores.parquet"
    for split in ("test", "val"):
        score(cache, models, "CelebDF", scores, ("DSP-FWA",), ("eyes", "mouth"), split,
              progress=False, test_ddbb="CelebDF")  # fmt: skip
    rule = f"{rules}:FirstInput"
    r = CliRunner().invoke(
        main,
        ["fuse", "--scores", str(scores), "--rule", rule, "--subset", "eyes,mouth",
         "--out", str(tmp_path / "f.parquet")],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    fused = pd.read_parquet(tmp_path / "f.parquet")
    assert set(fused["region"]) == {"FirstInput(eyes+mouth)"} and set(fused["rule"]) == {rule}

    models_study(tmp_path / "u.yaml", cache, models, [rule], "u")
    out = tmp_path / "exp"
    r = CliRunner().invoke(main, ["--device", "cpu", "experiment", str(tmp_path / "u.yaml"),
                                  "--out", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    intra = pd.read_csv(out / "intra.csv")
    assert "FirstInput(eyes+mouth)" in set(intra["region"])
    assert "val" in set(pd.read_parquet(out / "scores.parquet")["split"])  # fitted on val

    r = CliRunner().invoke(
        main,
        ["--device", "cpu", "robustness", "--scores-from", str(scores), "--cache", str(cache),
         "--models", str(models), "--perturb", "noise", "--levels", "noise=0,10",
         "--fusion", f"regions:{rule}", "--subset", "eyes,mouth", "--out", str(tmp_path / "rb")],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    table = pd.read_csv(tmp_path / "rb" / "robustness.csv")
    mine = table[table["region"] == "FirstInput(eyes+mouth)"]
    assert len(mine) == 2 and mine["fused"].all() and not table[~table["fused"]].empty

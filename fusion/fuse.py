"""`dffr fuse`: combine per-region and per-detector scores into one score per frame.

Scores are laid side by side (one column per region, detector or (detector, region)),
normalised if asked (min-max or z-score, fitted on the validation split), and fused by a
rule (fitted on the validation split when it learns). Fused rows have the layout of
score rows, with the fused inputs named in `detector` / `region`, so tables and
metrics treat them like any other score; `inputs` lists the (detector/region) scores
that went into each, `rule`, `over` and `norm` how they were fused (nothing needs to
parse the `mean(eyes+mouth)` labels).

What learns is fitted on the validation rows of the models' own training database
only (test_ddbb == train_ddbb), whatever else the scores file holds: a scores file may
also hold the validation rows of a database under test, and fitting there would leak.
Frames without a face (score NaN) stay as fused rows with score NaN, to be counted.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from dffr.fusion.rules import FusionError, Rule, checked, load_rule
from dffr.scoring.scores import SCORE_COLUMNS
from dffr.tables import with_face_columns

log = logging.getLogger(__name__)

# a fused row is keyed as a score row, less what fusion combines or replaces
ROW = [
    c for c in SCORE_COLUMNS if c not in ("detector", "region", "score", "tta", "cache", "model")
]
PARTS = ("eyes", "nose", "mouth", "rest")
OVER = ("regions", "detectors", "both")
# what a fused row says of itself: its inputs ("detector/region" + ...), the rule spec,
# what it fused over and the normalisation
FUSED = ["inputs", "rule", "over", "norm"]


# normalisations, fitted on the validation scores like any learned step
SCALERS = {"none": None, "minmax": MinMaxScaler, "zscore": StandardScaler}


def side_by_side(scores: pd.DataFrame, over: str, subset=None) -> tuple[pd.DataFrame, list[str]]:
    """Wide table: index = ROW (+ the kept column), one column per fused input; frames
    without a face have NaN in every column."""
    if over not in OVER:
        raise FusionError(f"--over must be one of {OVER}, not {over!r}")
    df = with_face_columns(scores.copy())
    if over == "regions":
        df = df[df["region"].isin(subset or PARTS)]
        keep, col = ["detector"], "region"
    elif over == "detectors":
        if subset:
            df = df[df["detector"].isin(subset)]
        keep, col = ["region"], "detector"
    else:
        df = df[df["region"].isin(subset or PARTS) | df["detector"].isin(subset or ())]
        df["input"] = df["detector"] + "/" + df["region"]
        keep, col = [], "input"
    if df.empty:
        raise FusionError(f"no scores to fuse over {over} (subset: {subset or 'default'})")
    wide = df.set_index(ROW + keep + [col])["score"].unstack(col)
    faceless = wide.isna().all(axis=1)
    partial = wide.isna().any(axis=1) & ~faceless
    if partial.any():
        log.warning(
            "%d face(s) lack some of the inputs and are left out of the fusion", int(partial.sum())
        )
    return wide[~partial], keep


def fuse(
    scores: pd.DataFrame,
    over: str = "regions",
    rule: str = "mean",
    subset=None,
    norm: str = "none",
    fit_split: str = "val",
) -> pd.DataFrame:
    """Fused score rows for every split present.

    What learns (the rule, the normalisation) is fitted on the `fit_split` rows of the
    same models (same training database, detector or region) scored on that training
    database itself, never on test rows nor on another database's rows."""
    if norm not in SCALERS:
        raise FusionError(f"unknown normalisation {norm!r}: use {', '.join(SCALERS)}")
    wide, keep = side_by_side(scores, over, subset)
    rule_ = load_rule(rule)
    # a rule is fitted per model set: the val scores of the models' own training database
    tables = [t for _, t in wide.groupby(level=["train_ddbb", *keep])]
    out = []
    for both in tables:
        faceless = both.isna().all(axis=1)
        table = both[~faceless]
        idx = table.index
        own = idx.get_level_values("test_ddbb") == idx.get_level_values("train_ddbb")
        fit_rows = table[own & (idx.get_level_values("split") == fit_split)]
        learns = rule_.learns or norm != "none"
        if learns and (fit_rows.empty or fit_rows.index.get_level_values("label").nunique() < 2):
            train_ddbb = idx.get_level_values("train_ddbb")[0] if len(idx) else "?"
            others = sorted(
                set(idx.get_level_values("test_ddbb")[idx.get_level_values("split") == fit_split])
                - {train_ddbb}
            )
            also = (
                f" ({fit_split} rows of {', '.join(others)} are there, but a rule is never "
                f"fitted on another database; if that cache is {train_ddbb}'s own, score it "
                f"with --test-ddbb {train_ddbb})"
                if others
                else ""
            )
            raise FusionError(
                f"rule {rule!r} with normalisation {norm!r} is fitted on the {fit_split!r} "
                f"scores of the models' own training database ({train_ddbb}), and there are "
                f"none with both labels{also}: run `dffr score --cache <{train_ddbb} cache> "
                f"--train-ddbb {train_ddbb} --split {fit_split}` into the same scores file"
            )
        fused = checked(_apply(rule_, SCALERS[norm], table, fit_rows), table, rule)
        name = f"{rule_.name}({'+'.join(map(str, table.columns))})"
        frame = both.index.to_frame(index=False)
        frame["score"] = np.nan
        frame.loc[~faceless.to_numpy(), "score"] = np.asarray(fused, dtype=np.float64)
        frame["inputs"] = "+".join(_inputs(over, table.columns, frame))
        frame["rule"], frame["over"], frame["norm"] = rule, over, norm
        if over == "regions":
            frame["region"] = name
        elif over == "detectors":
            frame["detector"] = name
        else:
            frame["detector"] = frame["region"] = name
        out.append(frame)
    result = pd.concat(out, ignore_index=True)
    return result[ROW + ["detector", "region", "score", *FUSED]]


def _apply(rule: Rule, scaler, table: pd.DataFrame, fit_rows: pd.DataFrame):
    """The rule on `table`: an estimator fitted on `fit_rows` (behind the scaler, in one
    pipeline), or the function on `table` scaled as `fit_rows` were."""
    labels = fit_rows.index.get_level_values("label").to_numpy()
    if rule.learns:
        if scaler:
            rule = Rule(rule.spec, estimator=make_pipeline(scaler(), rule.estimator))
        return rule.apply(table, rule.fitted(fit_rows, labels))
    if scaler:
        fitted = scaler().fit(fit_rows.to_numpy())
        table = pd.DataFrame(fitted.transform(table.to_numpy()), table.index, table.columns)
    return rule.apply(table)


def is_fused(rows: pd.DataFrame) -> pd.Series:
    """Which rows are fused results (they name their rule) rather than one model's."""
    if "rule" not in rows:
        return pd.Series(False, index=rows.index)
    return rows["rule"].fillna("").astype(str) != ""


def _inputs(over: str, columns, frame: pd.DataFrame) -> list[str]:
    """The "detector/region" names of the fused scores."""
    if over == "regions":
        return [f"{frame['detector'].iloc[0]}/{c}" for c in columns]
    if over == "detectors":
        return [f"{c}/{frame['region'].iloc[0]}" for c in columns]
    return [str(c) for c in columns]


def fused_inputs(inputs: str) -> list[tuple[str, str]]:
    """The (detector, region) scores a fused row's `inputs` names."""
    return [tuple(p.split("/", 1)) for p in inputs.split("+")] if inputs else []

"""Score-level fusion rules, one registry; a user's rule is a plain function.

A rule sees a DataFrame with one column per input score (a region, a detector, or a
(detector, region) pair) and one row per frame, and returns a Series of fused scores.
Rules that learn (weights, a classifier) are classes with `fit(scores, labels)` fitted on
the validation split, never on test.

    @FUSION.register("geometric_mean")
    def geometric_mean(scores: pd.DataFrame) -> pd.Series:
        return np.exp(np.log(scores.clip(1e-6, 1)).mean(axis=1))
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.svm import SVC

from dffr.errors import DffrError
from dffr.registry import Registry

FUSION: Registry = Registry("fusion rule")


class FusionError(DffrError):
    """A fusion rule that cannot be found, fitted or applied."""


@FUSION.register("mean")
def mean(scores: pd.DataFrame) -> pd.Series:
    return scores.mean(axis=1)


@FUSION.register("median")
def median(scores: pd.DataFrame) -> pd.Series:
    return scores.median(axis=1)


@FUSION.register("max")
def maximum(scores: pd.DataFrame) -> pd.Series:
    return scores.max(axis=1)


@FUSION.register("min")
def minimum(scores: pd.DataFrame) -> pd.Series:
    return scores.min(axis=1)


@FUSION.register("product")
def product(scores: pd.DataFrame) -> pd.Series:
    return scores.prod(axis=1)


class Fitted:
    """Base of the rules that learn from validation scores."""

    def fit(self, scores: pd.DataFrame, labels: np.ndarray) -> Fitted:
        raise NotImplementedError

    def __call__(self, scores: pd.DataFrame) -> pd.Series:
        raise NotImplementedError


@FUSION.register("weighted_mean")
class WeightedMean(Fitted):
    """Mean weighted by each input's validation AUC above chance (max(AUC - 0.5, 0))."""

    def fit(self, scores, labels):
        w = np.array([max(roc_auc_score(labels, scores[c]) - 0.5, 0.0) for c in scores])
        self.weights = pd.Series(
            w / w.sum() if w.sum() > 0 else np.full(len(w), 1 / len(w)), index=scores.columns
        )
        return self

    def __call__(self, scores):
        return scores[self.weights.index] @ self.weights


class _Classifier(Fitted):
    def fit(self, scores, labels):
        self.columns = list(scores.columns)
        self.model = self.make().fit(scores.to_numpy(), labels)
        return self

    def __call__(self, scores):
        p = self.model.predict_proba(scores[self.columns].to_numpy())[:, 1]
        return pd.Series(p, index=scores.index)


@FUSION.register("logistic")
class Logistic(_Classifier):
    """Logistic regression on the input scores."""

    def make(self):
        return LogisticRegression(C=1.0, max_iter=1000)


@FUSION.register("svm")
class SVM(_Classifier):
    """An RBF support vector machine with calibrated (sigmoid) probabilities."""

    def make(self):
        return CalibratedClassifierCV(SVC(kernel="rbf", random_state=0), ensemble=False)


class FunctionRule(Fitted):
    """A plain function used as a rule (nothing to fit)."""

    def __init__(self, fn, name: str) -> None:
        self.fn, self.name = fn, name

    def fit(self, scores, labels):
        return self

    def __call__(self, scores):
        try:
            return self.fn(scores)
        except Exception as e:
            msg = f"fusion rule {self.name!r} failed: {type(e).__name__}: {e}"
            raise FusionError(msg) from None


def checked(out, scores: pd.DataFrame, name: str) -> pd.Series:
    """A rule's result as one finite score per row of `scores`, in its order.

    A Series is aligned on its index (a rule may sort or reorder), and refused when its
    index is not the rows'; anything else must be one number per row, in order.
    Strings, 2-D results, NaN and infinities are refused, naming the rule."""
    if isinstance(out, pd.DataFrame):
        raise FusionError(f"fusion rule {name!r} returned a table of {out.shape[1]} columns")
    if isinstance(out, pd.Series):
        if len(out) != len(scores) or not out.index.sort_values().equals(
            scores.index.sort_values()
        ):
            raise FusionError(
                f"fusion rule {name!r} returned a Series whose index is not the rows' "
                "(keep the index of the table it is given)"
            )
        values = out.reindex(scores.index).to_numpy()
    else:
        values = np.asarray(out)
        if values.ndim != 1 or len(values) != len(scores):
            raise FusionError(
                f"fusion rule {name!r} returned shape {values.shape}; it must return one "
                f"score per row ({len(scores)})"
            )
    try:
        values = values.astype(np.float64)
    except (TypeError, ValueError):
        raise FusionError(f"fusion rule {name!r} returned non-numbers ({values[:3]}...)") from None
    bad = ~np.isfinite(values)
    if bad.any():
        raise FusionError(
            f"fusion rule {name!r} returned {int(bad.sum())} NaN or infinite score(s) of "
            f"{len(values)}"
        )
    return pd.Series(values, index=scores.index)


def load_rule(spec: str) -> Fitted:
    """A rule by registered name, or `path/to/file.py:function` (a user's own)."""
    if ":" in spec and spec.split(":", 1)[0].endswith(".py"):
        path, attr = spec.rsplit(":", 1)
        if not Path(path).is_file():
            raise FusionError(f"fusion rule file {path} not found")
        module_spec = importlib.util.spec_from_file_location(
            f"dffr_user_rule_{Path(path).stem}", path
        )
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:
            raise FusionError(f"{path}: cannot import ({type(e).__name__}: {e})") from None
        obj = getattr(module, attr, None)
        if obj is None:
            raise FusionError(f"{path} defines no {attr!r}")
    else:
        try:
            obj = FUSION.get(spec)
        except KeyError as e:
            raise FusionError(str(e).strip("'\"") + ", or give path/to/rules.py:function") from None
    if isinstance(obj, type) and issubclass(obj, Fitted):
        return obj()
    if not callable(obj):
        raise FusionError(f"fusion rule {spec!r} is not callable")
    return FunctionRule(obj, spec)

"""Score-level fusion rules, one registry: a rule is a function or a scikit-learn estimator.

A rule sees a DataFrame with one column per input score (a region, a detector, or a
(detector, region) pair) and one row per frame.

- A **function** `f(scores) -> Series` (or one number per row) is a fixed rule.
- An **estimator** (anything with `fit` and `predict_proba`: a classifier, a `Pipeline`
  with a scaler) is a learned rule: a fresh copy is fitted on the validation scores of
  the models' own training database, and P(fake) is `predict_proba(...)[:, 1]`.

Whether a rule learns is asked of the rule itself (does it have `fit`?), never of a list
of names. Hyper-parameters are given with the rule, `logistic:C=0.5,max_iter=200` or in
YAML `rule: {name: logistic, C: 0.5}`: an estimator gets them with `set_params`, a
function as keyword arguments.

    @FUSION.register("geometric_mean")
    def geometric_mean(scores: pd.DataFrame) -> pd.Series:
        return np.exp(np.log(scores.clip(1e-6, 1)).mean(axis=1))

    FUSION.register("forest")(RandomForestClassifier(n_estimators=200, random_state=0))
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.svm import SVC

from dffr.errors import DffrError
from dffr.registry import Registry

FUSION: Registry = Registry("fusion rule", group="dffr.fusion")


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


@FUSION.register("weighted_mean")
class AUCWeightedMean(ClassifierMixin, BaseEstimator):
    """Mean weighted by each input's validation AUC above chance (max(AUC - 0.5, 0));
    equal weights when no input beats chance."""

    def fit(self, X, y):  # noqa: N803  (scikit-learn's names)
        X = np.asarray(X, dtype=np.float64)  # noqa: N806
        w = np.array([max(roc_auc_score(y, X[:, j]) - 0.5, 0.0) for j in range(X.shape[1])])
        self.weights_ = w / w.sum() if w.sum() > 0 else np.full(len(w), 1 / len(w))
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):  # noqa: N803
        p = np.asarray(X, dtype=np.float64) @ self.weights_
        return np.column_stack([1 - p, p])


FUSION.register("logistic")(LogisticRegression(C=1.0, max_iter=1000))
# an RBF SVM with calibrated (sigmoid) probabilities; its own parameters: estimator__C=...
FUSION.register("svm")(CalibratedClassifierCV(SVC(kernel="rbf", random_state=0), ensemble=False))


@dataclass(frozen=True)
class Rule:
    """A rule as loaded: its spec (`name[:k=v,...]`, what fused rows record), and either a
    fixed function or an estimator to fit (a fresh copy for each model set)."""

    spec: str
    function: Callable | None = None
    estimator: object | None = None

    @property
    def name(self) -> str:
        """The rule's short name (a registered name, or a file's attribute), for the
        fused rows' detector / region labels."""
        return _parse(self.spec)[1]

    @property
    def learns(self) -> bool:
        return self.estimator is not None

    def fitted(self, scores: pd.DataFrame, labels: np.ndarray):
        """A fresh copy of the estimator fitted on (scores, labels)."""
        model = _fresh(self.estimator)
        try:
            return model.fit(scores.to_numpy(), labels)
        except Exception as e:
            msg = f"fusion rule {self.spec!r} could not be fitted: {type(e).__name__}: {e}"
            raise FusionError(msg) from None

    def apply(self, scores: pd.DataFrame, model=None):
        """The rule's output on `scores` (to be `checked`): the function's result, or
        P(fake) from the fitted `model`."""
        try:
            if model is None:
                return self.function(scores)
            return pd.Series(model.predict_proba(scores.to_numpy())[:, 1], index=scores.index)
        except FusionError:
            raise
        except Exception as e:
            msg = f"fusion rule {self.spec!r} failed: {type(e).__name__}: {e}"
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


def _fresh(estimator):
    """An unfitted copy: scikit-learn's clone, or a deep copy of an object of one's own
    that only has fit / predict_proba."""
    return clone(estimator) if hasattr(estimator, "get_params") else copy.deepcopy(estimator)


def _in_file(spec: str) -> bool:
    return ":" in spec and spec.split(":", 1)[0].endswith(".py")


def rule_spec(name: str, params: dict | None = None) -> str:
    """The canonical spec of a rule and its hyper-parameters: `name:k=v,...`."""
    if not params:
        return name

    return name + ":" + ",".join(f"{k}={_text(v)}" for k, v in params.items())


def _text(v) -> str:
    if isinstance(v, bool) or v is None:
        return {True: "true", False: "false", None: "null"}[v]
    return str(v)


def _value(text: str):
    """A parameter's value: an int, a float (1e-4 too), true / false / null, or text."""
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None, "none": None}.get(text.lower(), text)


def _parse(spec: str) -> tuple[str, str, dict]:
    """(file or "", attribute or registered name, hyper-parameters) of a spec."""
    parts = spec.split(":")
    where, parts = (parts[0], parts[1:]) if _in_file(spec) else ("", parts)
    name, rest = parts[0], ":".join(parts[1:])
    params = {}
    for pair in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise FusionError(f"fusion rule {spec!r}: {pair!r} is not key=value")
        params[key.strip()] = _value(value)
    return where, name, params


def _from_file(path: str, attr: str):
    if not Path(path).is_file():
        raise FusionError(f"fusion rule file {path} not found")
    module_spec = importlib.util.spec_from_file_location(f"dffr_user_rule_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        raise FusionError(f"{path}: cannot import ({type(e).__name__}: {e})") from None
    obj = getattr(module, attr, None)
    if obj is None:
        raise FusionError(f"{path} defines no {attr!r}")
    return obj


def load_rule(spec: str) -> Rule:
    """A rule by registered name or `path/to/file.py:attribute`, each optionally with
    `:key=value,...` hyper-parameters."""
    where, name, params = _parse(spec)
    if where:
        obj = _from_file(where, name)
    else:
        try:
            obj = FUSION.get(name)
        except KeyError as e:
            raise FusionError(str(e).strip("'\"") + ", or give path/to/rules.py:function") from None
    if isinstance(obj, type):  # an estimator class: an instance with the parameters
        try:
            obj = obj(**params)
        except TypeError as e:
            raise FusionError(f"fusion rule {spec!r}: {e}") from None
        params = {}
    if hasattr(obj, "fit"):
        if not hasattr(obj, "predict_proba"):
            raise FusionError(
                f"fusion rule {spec!r} has `fit` but no `predict_proba`: a learned rule is a "
                "classifier giving P(fake) (wrap a regressor, or calibrate it)"
            )
        try:
            estimator = _fresh(obj)
            if params:
                estimator.set_params(**params)
        except (TypeError, ValueError, AttributeError) as e:
            raise FusionError(f"fusion rule {spec!r}: {e}") from None
        return Rule(spec, estimator=estimator)
    if not callable(obj):
        raise FusionError(f"fusion rule {spec!r} is not callable")
    if params:
        accepted = inspect.signature(obj).parameters
        unknown = [k for k in params if k not in accepted]
        if unknown:
            raise FusionError(f"fusion rule {spec!r} takes no parameter {', '.join(unknown)}")
        fn = obj
        obj = lambda scores: fn(scores, **params)  # noqa: E731
    return Rule(spec, function=obj)

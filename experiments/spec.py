"""The experiment file's schema: every key, type and value checked before any work.

An experiment YAML is validated as a whole when it is loaded, so a typo (`epoch:`,
`fusion: {rul: max}`, `overrides: {DSPFWA: ...}`), a wrong type (`lr: fast`) or a
value out of range (`bootstrap: -1`, `metric: f1`) is an error naming the key (and the
nearest valid one) in seconds, not a traceback after hours of training.

Relative paths (caches, models, a rule file `rules.py:fn`, an `imagenet` file) are
relative to the YAML's own folder, so an experiment runs the same from any working
directory.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from dffr.detectors.base import DETECTORS, PAPER_DETECTORS, DetectorConfig
from dffr.errors import DffrError
from dffr.regions.masks import REGIONS


class SpecError(DffrError):
    """An experiment file that does not follow the schema."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Training(BaseModel):
    """Training settings: DetectorConfig's, typed here, and the detectors' own options
    (`Detector.Options`: trunk, head, ...), checked against the detectors they apply to;
    unset keys keep the detector's defaults."""

    model_config = ConfigDict(extra="allow")

    epochs: PositiveInt | None = None
    batch: PositiveInt | None = None
    input_size: int | None = Field(None, ge=16)
    lr: float | None = Field(None, gt=0)
    patience: PositiveInt | None = None
    bn_recalibration: NonNegativeInt | None = None
    seed: int | None = None
    pretrained: bool | None = None  # false: from random weights (--from-scratch)
    imagenet: str | None = None
    negatives: str | None = None
    augment: list[str] | None = None
    augment_p: float | None = Field(None, ge=0, le=1)
    precision: str | None = None
    checkpoint_minutes: float | None = Field(None, ge=0)

    @field_validator("precision")
    @classmethod
    def _precision(cls, v):
        from dffr.device import PRECISIONS

        if v is not None and v not in PRECISIONS:
            raise ValueError(f"unknown precision {v!r}; choose one of {', '.join(PRECISIONS)}")
        return v

    @field_validator("negatives")
    @classmethod
    def _negatives(cls, v):
        from dffr.detectors.negatives import NEGATIVES

        if v is not None and v != "none" and v not in NEGATIVES:
            raise ValueError(f"unknown negatives {v!r}; choose none or one of {NEGATIVES.names()}")
        return v

    @field_validator("augment")
    @classmethod
    def _augment(cls, v):
        from dffr.transforms.augment import check_augment

        if v is not None:
            try:
                return check_augment(v, 0.5)
            except DffrError as e:
                raise ValueError(str(e)) from None
        return v

    def settings(self) -> dict:
        """The common keys that are set (DetectorConfig's fields)."""
        return self.model_dump(exclude_none=True, exclude=set(self.options()))

    def options(self) -> dict:
        """The detectors' own options given here, by name."""
        return dict(self.model_extra or {})


class Fusion(_Strict):
    over: Literal["regions", "detectors", "both"] = "regions"
    # a rule spec (`logistic`, `logistic:C=0.5`, `rules.py:fn`) or {name: ..., its params}
    rule: str = "mean"
    subset: list[str] | None = None
    norm: str = "none"  # a scaler of dffr.fusion.fuse.SCALERS

    @field_validator("rule", mode="before")
    @classmethod
    def _rule_mapping(cls, v):
        if isinstance(v, dict):
            from dffr.fusion.rules import rule_spec

            params = dict(v)
            name = params.pop("name", None)
            if not isinstance(name, str):
                raise ValueError("a rule given as a mapping needs its `name`")
            return rule_spec(name, params)
        return v

    @field_validator("norm")
    @classmethod
    def _norm(cls, v):
        from dffr.fusion.fuse import SCALERS

        if v not in SCALERS:
            raise ValueError(f"unknown normalisation {v!r}; choose one of {', '.join(SCALERS)}")
        return v


class Cache(BaseModel):
    """A cache: its folder, and (any other key) the database options it must have been
    made with, checked against its settings.json (e.g. FaceForensics' methods)."""

    model_config = ConfigDict(extra="allow")
    path: str

    @property
    def options(self) -> dict:
        return dict(self.model_extra or {})


class Experiment(_Strict):
    name: str
    caches: dict[str, str | Cache]
    train: list[str]
    test: list[str]
    detectors: list[str] = Field(default_factory=lambda: list(PAPER_DETECTORS))
    regions: list[Literal["entire", "eyes", "nose", "mouth", "rest"]] = Field(
        default_factory=lambda: list(REGIONS)
    )
    models: str = "models"
    training: Training = Field(default_factory=Training)
    overrides: dict[str, Training] = Field(default_factory=dict)  # detector -> its own keys
    fusion: list[Fusion] = Field(default_factory=list)
    level: Literal["frame", "video"] = "frame"
    bootstrap: NonNegativeInt = 1000
    tta: list[str] = Field(default_factory=list)  # test-time views, e.g. [hflip, rotate15]
    metric: Literal["auc", "eer", "ap", "acc"] = "auc"
    no_face_score: float = Field(0.5, ge=0, le=1)  # video level: a video without a face

    @field_validator("detectors")
    @classmethod
    def _detectors(cls, v):
        return [_registered(d) for d in v]

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, v):
        return {_registered(d): t for d, t in v.items()}

    @field_validator("tta")
    @classmethod
    def _tta(cls, v):
        from dffr.transforms.tta import parse_tta

        try:
            return list(parse_tta(v))
        except DffrError as e:
            raise ValueError(str(e)) from None

    @model_validator(mode="after")
    def _consistent(self):
        missing = sorted({*self.train, *self.test} - set(self.caches))
        if missing:
            raise ValueError(f"no cache given for {missing} (caches: {sorted(self.caches)})")
        # an option in `training` is for the detectors that have it (refused when none
        # of them does); in `overrides` for that detector, which must have it
        sections = [("training", self.training, self.detectors)]
        sections += [(f"overrides.{d}", t, [d]) for d, t in self.overrides.items()]
        for where, section, dets in sections:
            declared = sorted(set().union(*(DETECTORS.get(d).option_names() for d in dets)))
            for key in section.options():
                if key not in declared:
                    near = difflib.get_close_matches(key, [*Training.model_fields, *declared], 1)
                    hint = (
                        f"did you mean {near[0]!r}?"
                        if near
                        else "options of " + (f"{', '.join(dets)}: {', '.join(declared) or 'none'}")
                    )
                    raise ValueError(f"unknown key '{where}.{key}' ({hint})")
        for det in {*self.detectors, *self.overrides}:
            try:
                DETECTORS.get(det).parse_options(self.settings_for(det)["options"])
            except DffrError as e:
                raise ValueError(str(e)) from None
        return self

    def settings_for(self, detector: str) -> dict:
        """DetectorConfig's keys for one detector: `training`, then its `overrides`; its
        `options`, those of `training` it has, then its overrides'."""
        own = self.overrides.get(detector) or Training()
        declared = DETECTORS.get(detector).option_names()
        shared = {k: v for k, v in self.training.options().items() if k in declared}
        options = {**shared, **own.options()}
        return {**self.training.settings(), **own.settings(), "options": options}

    def config(self, detector: str, region: str, ddbb: str) -> DetectorConfig:
        return DetectorConfig(detector, region=region, ddbb=ddbb, **self.settings_for(detector))

    def model_files(self) -> list[tuple[str, str, str, Path]]:
        """(training database, detector, region, model file) of every model it trains."""
        from dffr.detectors.model_files import model_path

        return [
            (ddbb, det, region, model_path(self.models, det, ddbb, region))
            for ddbb in self.train
            for det in self.detectors
            for region in self.regions
        ]

    def cache_path(self, ddbb: str) -> str:
        c = self.caches[ddbb]
        return c if isinstance(c, str) else c.path

    def cache_options(self, ddbb: str) -> dict:
        c = self.caches[ddbb]
        return {} if isinstance(c, str) else c.options

    def needs_val(self) -> bool:
        """Whether any fusion learns (a rule or a normalisation fitted on val scores),
        as the rules themselves say."""
        from dffr.fusion.rules import load_rule

        return any(f.norm != "none" or load_rule(f.rule).learns for f in self.fusion)

    @classmethod
    def load(cls, path: str | Path) -> Experiment:
        """Read and validate an experiment YAML (SpecError: every problem, by key)."""
        path = Path(path)
        try:
            spec = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise SpecError(f"{path}: cannot read the experiment ({e})") from None
        if not isinstance(spec, dict):
            raise SpecError(f"{path}: an experiment is a mapping of keys (name, caches, ...)")
        try:
            exp = cls.model_validate(spec)
        except ValidationError as e:
            raise SpecError(f"{path}: {describe(e)}") from None
        return exp.relative_to(path.parent)

    def relative_to(self, base: Path) -> Experiment:
        """Paths in the file resolved against its folder."""

        def resolve(p: str) -> str:
            return p if Path(p).is_absolute() else str(base / p)

        caches = {
            k: resolve(v) if isinstance(v, str) else v.model_copy(update={"path": resolve(v.path)})
            for k, v in self.caches.items()
        }
        fusion = [
            f.model_copy(update={"rule": resolve(f.rule)}) if ".py:" in f.rule else f
            for f in self.fusion
        ]

        def own(t: Training) -> Training:  # --imagenet files are the file's too
            return t.model_copy(update={"imagenet": resolve(t.imagenet)}) if t.imagenet else t

        exp = self.model_copy(update={"caches": caches, "models": resolve(self.models)})
        exp.fusion = fusion
        exp.training = own(self.training)
        exp.overrides = {d: own(t) for d, t in self.overrides.items()}
        for f in exp.fusion:  # a missing or broken rule file fails now, not after training
            from dffr.fusion.rules import load_rule

            try:
                load_rule(f.rule)
            except DffrError as e:
                raise SpecError(f"fusion rule {f.rule!r}: {e}") from None
        return exp


def _registered(name: str) -> str:
    try:
        return DETECTORS.canonical(name)
    except KeyError:
        near = difflib.get_close_matches(name, DETECTORS.names(), n=1, cutoff=0.5)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(
            f"unknown detector {name!r}{hint}; choose from {', '.join(DETECTORS.names())}"
        ) from None


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The valid keys of the mapping at `loc` (a pydantic error location)."""
    current: object = model
    for part in loc[:-1]:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = field.annotation if field is not None else None
            continue
        # list[X] / dict[str, X] / X | None: step into X
        args = [a for a in typing.get_args(current) if a is not type(None)]
        current = args[-1] if args else None
    while current is not None and not (
        isinstance(current, type) and issubclass(current, BaseModel)
    ):
        args = [a for a in typing.get_args(current) if a is not type(None)]
        current = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return list(current.model_fields) if current is not None else []


_UNION_TAGS = {"str", "Cache"}  # pydantic names the union member tried in the location


def describe(error: ValidationError) -> str:
    """One line per problem: the key's dotted path, what is wrong, the nearest key."""
    lines = []
    for e in error.errors():
        loc = tuple(p for p in e["loc"] if p not in _UNION_TAGS)
        where = ".".join(map(str, loc))
        if e["type"] == "extra_forbidden":
            valid = _fields_at(Experiment, loc)
            near = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"valid: {', '.join(valid)}"
            lines.append(f"unknown key {where!r} ({hint})")
        elif e["type"] == "missing":
            lines.append(f"missing key {where!r}")
        else:
            got = e.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {msg}{shown}" if where else f"{msg}{shown}")
    return "; ".join(dict.fromkeys(lines))

"""What an experiment will do, checked before hours of GPU time: `dffr experiment --dry-run`.

For each database: the cache and the settings it was made with (checked against the
options the experiment asks for), per split the real and fake videos and faces, per
manipulation, and the frames and videos without a face. For each model: trained
already, to be resumed, or to be trained, and the ImageNet file it starts from
(present, fetchable or missing). The fusion specs as understood. Warnings: a split
without one of the two classes, a class ratio beyond 10:1, identities shared between
training and test. Problems that would stop the run (a missing cache, other cache
settings, ImageNet weights that are neither here nor fetchable) are errors; `run`
checks the same before it trains anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd

from dffr.datasets.cache import INDEX, VIDEOS, read_settings, read_videos
from dffr.datasets.preprocess import Settings
from dffr.detectors.base import DETECTORS, DetectorConfig
from dffr.detectors.imagenet import WeightsFile, fetch_hint, reachable
from dffr.detectors.model_files import checkpoint_path, model_file_problem
from dffr.errors import DffrError
from dffr.experiments.spec import Experiment

RATIO = 10  # a split whose classes differ more than this many times is worth a warning
# a cache's keys in the YAML that are preprocessing settings, not database options
MADE_WITH = tuple(f.name for f in fields(Settings))


@dataclass
class Plan:
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        out = list(self.lines)
        if self.warnings:
            out += ["", "warnings"] + [f"  - {w}" for w in self.warnings]
        if self.errors:
            out += ["", "errors (the run would stop)"] + [f"  - {e}" for e in self.errors]
        return "\n".join(out)


def check_cache(exp: Experiment, ddbb: str) -> list[str]:
    """Problems with one database's cache: absent, not indexed, made otherwise."""
    cache = Path(exp.cache_path(ddbb))
    if not (cache / INDEX).is_file():
        return [
            f"{ddbb}: no cache at {cache} ({INDEX} not found): run `dffr preprocess "
            f"--ddbb <database> --root <its folder> --out {cache}`"
        ]
    if not (cache / VIDEOS).is_file():
        return [
            f"{ddbb}: {cache} was indexed by an older dffr (no {VIDEOS}, which lists the "
            f"frames without a face): re-index it with `dffr merge-cache {cache}`"
        ]
    settings = read_settings(cache) or {}
    asked = exp.cache_options(ddbb)
    problems = []
    for key in [k for k in asked if k in MADE_WITH]:  # how it was preprocessed
        value = asked.pop(key)
        if settings.get(key) is None:
            problems.append(
                f"{ddbb}: {cache} records no {key}, so {key}={value!r} cannot be checked"
            )
        elif _normal(settings[key]) != _normal(value):
            problems.append(
                f"{ddbb}: the experiment asks for {key}={value!r}, {cache} was made with "
                f"{settings[key]!r}: preprocess it again with `--{key.replace('_', '-')} "
                f"{value}`, or change the YAML"
            )
    made = settings.get("options")
    if asked and made is None:
        return [
            f"{ddbb}: {cache} was made before dffr recorded a database's options, so "
            f"{', '.join(f'{k}={v!r}' for k, v in asked.items())} cannot be checked: "
            "preprocess again into a new folder, or drop the options from the YAML"
        ]
    for key, value in asked.items():
        if key not in made:
            problems.append(
                f"{ddbb}: the experiment asks for {key}={value!r}, but {cache} records no "
                f"such option (it has: {', '.join(made) or 'none'})"
            )
        elif _normal(made[key]) != _normal(value):
            problems.append(
                f"{ddbb}: the experiment asks for {key}={value!r}, {cache} was made with "
                f"{made[key]!r}: preprocess it again with those options, or change the YAML"
            )
    return problems


def _normal(v):
    if isinstance(v, str) and "," in v:
        v = v.split(",")
    return sorted(map(str, v)) if isinstance(v, list | tuple) else v


def weights_status(config: DetectorConfig, spec: WeightsFile | None, ask) -> tuple[str, str]:
    """(what the model starts from, the error if it cannot) without downloading."""
    if config.pretrained is False:
        return "random weights (pretrained: false)", ""
    if config.imagenet:
        path = Path(config.imagenet)
        if path.is_file():
            return f"ImageNet from {path}", ""
        return f"MISSING {path}", f"{config.detector}: --imagenet file {path} not found"
    if spec is None:
        return (
            "MISSING",
            f"{config.detector} has no published ImageNet weights: use pretrained: false",
        )
    if spec.path.is_file() and spec.hash_ok():
        return f"ImageNet {spec.name}: present in {spec.folder}, hash ok", ""
    why = ask(spec)
    state = "fails its hash check" if spec.path.is_file() else "not here"
    if not why:
        return f"ImageNet {spec.name}: {state}, fetchable from {spec.origin}", ""
    return (
        f"ImageNet {spec.name}: MISSING ({state}; not fetchable: {why})",
        f"{spec.name} for {config.detector} is not in {spec.folder} and cannot be fetched "
        f"({why}): run `{fetch_hint(config.detector)}` where there is a network and copy "
        "it there, or set pretrained: false",
    )


def _database_lines(exp: Experiment, ddbb: str, plan: Plan) -> None:
    cache = Path(exp.cache_path(ddbb))
    settings = read_settings(cache)
    made = (
        ", ".join(
            f"{k} {settings[k]}"
            for k in ("ddbb", "frames", "size", "scale", "faces", "backend", "face_detector")
            if k in settings
        )
        + "".join(f", {k} {_show(v)}" for k, v in (settings.get("options") or {}).items())
        if settings
        else "made before settings were recorded"
    )
    plan.lines.append(f"  {ddbb}: {cache} ({made})")
    if settings and settings.get("ddbb") not in (None, ddbb):
        plan.warnings.append(
            f"{ddbb}: the cache at {cache} holds database {settings['ddbb']!r}: models "
            f"trained on it are named {ddbb} (intended?)"
        )
    try:
        videos = read_videos(cache)
    except DffrError as e:
        plan.errors.append(str(e))
        return
    faces = pd.read_parquet(cache / INDEX, columns=["video", "frame", "label", "split"])
    roles = []
    if ddbb in exp.train:
        roles += ["train", "val"]
    if ddbb in exp.test:
        roles += ["test"]
    header = f"    {'split':6s} {'videos real / fake':>19s} {'faces real / fake':>18s}"
    plan.lines.append(header + "  no face (frames / videos)  failed  fake videos per method")
    for split in ("train", "val", "test"):
        v = videos[videos["split"] == split]
        f = faces[faces["split"] == split]
        if v.empty and split not in roles:
            continue
        real, fake = int((v["label"] == 0).sum()), int((v["label"] == 1).sum())
        freal, ffake = int((f["label"] == 0).sum()), int((f["label"] == 1).sum())
        no_face_frames = int(v["no_face"].map(len).sum())
        no_face_videos = int(((v["frames"] == 0) & (v["error"] == "")).sum())
        failed = int((v["error"] != "").sum())  # missing, unreadable: see failures.csv
        methods = v[v["label"] == 1]["method"].value_counts().sort_index()
        per_method = ", ".join(f"{m} {n}" for m, n in methods.items()) or "-"
        plan.lines.append(
            f"    {split:6s} {real:>9d} / {fake:<7d} {freal:>8d} / {ffake:<7d}"
            f"  {no_face_frames:>8d} / {no_face_videos:<14d}  {failed:>6d}  {per_method}"
        )
        if split in roles:
            _class_warnings(plan, ddbb, split, real, fake, freal, ffake)
    shared = _shared_identities(videos)
    if shared and ddbb in exp.test and ddbb in exp.train:
        plan.warnings.append(
            f"{ddbb}: {len(shared)} identities appear in both training (train/val) and test "
            f"(e.g. {', '.join(sorted(shared)[:3])}); intra-database figures are not "
            "identity-disjoint"
            + (" (CelebDF: protocol disjoint avoids it)" if "id0" in shared else "")
        )


def _show(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, list | tuple) else str(v)


def _class_warnings(plan: Plan, ddbb, split, real, fake, freal, ffake) -> None:
    if not real and not fake:
        plan.warnings.append(f"{ddbb} {split}: no videos")
    elif not real or not fake:
        missing = "real" if not real else "fake"
        plan.warnings.append(f"{ddbb} {split}: no {missing} videos")
    elif max(real, fake) > RATIO * min(real, fake):
        plan.warnings.append(
            f"{ddbb} {split}: {real} real vs {fake} fake videos (beyond {RATIO}:1)"
        )
    elif freal and ffake and max(freal, ffake) > RATIO * min(freal, ffake):
        plan.warnings.append(
            f"{ddbb} {split}: {freal} real vs {ffake} fake faces (beyond {RATIO}:1)"
        )


def _shared_identities(videos: pd.DataFrame) -> set[str]:
    ids = {
        role: set().union(*map(set, videos[videos["split"].isin(splits)]["identities"]))
        for role, splits in (("dev", ("train", "val")), ("test", ("test",)))
    }
    return ids["dev"] & ids["test"]


def plan(exp: Experiment, fetchable=reachable) -> Plan:
    """The dry run's plan; `fetchable(spec)` says why a file cannot be fetched ("" if it can)."""
    p = Plan()
    p.lines.append(f"experiment {exp.name}")
    p.lines.append("databases")
    for ddbb in dict.fromkeys([*exp.train, *exp.test]):
        problems = check_cache(exp, ddbb)
        p.errors += problems
        if not any("no cache" in e for e in problems):
            _database_lines(exp, ddbb, p)
    models = Path(exp.models)
    p.lines.append(f"models in {models}")
    asked: dict[WeightsFile, str] = {}

    def ask(spec: WeightsFile) -> str:
        if spec not in asked:
            asked[spec] = fetchable(spec)
        return asked[spec]

    todo, files = 0, {}
    groups: dict[tuple[str, str, str, str], list[str]] = {}  # a line per model group
    for ddbb, det, region, path in exp.model_files():
        problem = model_file_problem(det, path)
        if path.is_file() and problem is None:
            groups.setdefault((ddbb, det, "trained", ""), []).append(region)
            continue
        todo += 1
        config = exp.config(det, region, ddbb)
        spec = DETECTORS.get(det).imagenet_weights(config)
        start, error = weights_status(config, spec, ask)
        if spec is not None and config.pretrained and not config.imagenet:
            files[spec.name] = start
            start = f"ImageNet {spec.name}"
        state = "to resume from its checkpoint" if checkpoint_path(path).is_file() else "to train"
        if problem:
            state = f"unreadable ({problem}), {state} again"
        groups.setdefault((ddbb, det, state, start), []).append(region)
        if error and error not in p.errors:
            p.errors.append(error)
    for (ddbb, det, state, start), regions in groups.items():
        line = f"  {ddbb} {det} {', '.join(regions)}: {state}"
        p.lines.append(line + (f", from {start}" if start else ""))
    p.lines.append(f"  {todo} model(s) to train")
    if files:
        p.lines.append("ImageNet weights")
        p.lines += [f"  {status}" for status in files.values()]
    p.lines.append("scoring")
    for train_ddbb in exp.train:
        tests = ", ".join(exp.test) + (f"; val of {train_ddbb} (fusion)" if exp.needs_val() else "")
        p.lines.append(f"  models of {train_ddbb} on the test split of {tests}")
    p.lines.append("fusion")
    from dffr.fusion.rules import load_rule

    for f in exp.fusion:
        learned = load_rule(f.rule).learns
        fitted = " (fitted on the val scores of each model's training database)"
        subset = "+".join(f.subset) if f.subset else "default inputs"
        p.lines.append(
            f"  over {f.over}: {f.rule} of {subset}"
            + ("" if f.norm == "none" else f", {f.norm} normalisation")
            + (fitted if learned or f.norm != "none" else "")
        )
    if not exp.fusion:
        p.lines.append("  none")
    level = f"{exp.level} level" + (
        f", a video without a face scores {exp.no_face_score:g}" if exp.level == "video" else ""
    )
    p.lines.append(
        f"evaluation: {exp.metric.upper()} at {level}, {exp.bootstrap} bootstrap resamples"
    )
    return p

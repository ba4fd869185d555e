"""`dffr robustness`: how the scores hold up under the perturbations real media go through.

A scores file written by `dffr score` says which models (train_ddbb, detector, region)
and which test frames to re-score. Each frame's cached face crop is perturbed
(`dffr.transforms`) before its regions are cut, with its landmarks moved along for
geometric perturbations, so all five regions of a face see the same perturbed crop.
Every model is loaded once. Level 0 is the unperturbed crop: it is scored once, shared
by every perturbation, and checked against the scores file (a warning says when the
models or the cache are not the ones that produced it).

Written to the output folder: `perturbed.parquet` (perturbation, level and the score
columns), `robustness.csv` (AUC, EER, AP, accuracy per (perturbation, level, model or
fused result)), `robustness.md` (AUC tables, one per perturbation) and
`auc_<perturbation>.png` (AUC against level). Fusion rules and normalisers are fitted on
the scores file's unperturbed validation rows, never on perturbed or test ones. A
(perturbation, level, model) already in `perturbed.parquet` is not scored again.
"""

from __future__ import annotations

import functools
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dffr.atomic import replaced
from dffr.datasets.cache import read_index
from dffr.detectors.base import DETECTORS, Detector
from dffr.detectors.model_files import load_models, model_path
from dffr.errors import DffrError
from dffr.experiments.metrics import evaluate
from dffr.experiments.plots import save_figure
from dffr.fusion.fuse import fuse
from dffr.fusion.rules import FusionError
from dffr.regions.masks import REGIONS
from dffr.scoring.scores import FACE_KEY, SCORE_COLUMNS, model_id, predict_frames, read_scores
from dffr.transforms.perturbations import check_level, get_perturbation, perturb, perturb_landmarks

log = logging.getLogger(__name__)

COLUMNS = ["perturbation", "level", *SCORE_COLUMNS]
MODEL = ["train_ddbb", "detector", "region"]
PERTURBED = "perturbed.parquet"


@dataclass
class RobustnessReport:
    scored: list[tuple[str, float]] = field(default_factory=list)
    skipped: list[tuple[str, float]] = field(default_factory=list)  # already in the file
    missing: list[str] = field(default_factory=list)  # models not found
    mismatch: float | None = None  # largest |unperturbed re-score - the scores file's|
    written: dict[str, Path] = field(default_factory=dict)


def sweep_levels(names: Sequence[str], overrides: dict[str, Sequence[float]] | None = None):
    """{perturbation: levels}: each one's default sweep unless `overrides` names it."""
    overrides = {get_perturbation(k).name: v for k, v in (overrides or {}).items()}
    names = [get_perturbation(n).name for n in names]
    stray = sorted(set(overrides) - set(names))
    if stray:
        raise DffrError(f"levels given for {stray}, which are not among the perturbations")
    chosen = {n: overrides.get(n, get_perturbation(n).levels) for n in names}
    return {n: list(dict.fromkeys(check_level(n, v) for v in vs)) for n, vs in chosen.items()}


def _degrade(name: str, level: float, seed: int, crop, landmarks, row):
    """One frame's crop perturbed (noise seeded by the frame, not by its position)."""
    face = f"/{row['track']}" if row["track"] else ""  # face 0 keeps its seed of old
    frame_seed = [seed, zlib.crc32(f"{row['video']}/{row['frame']}{face}".encode())]
    moved = perturb_landmarks(landmarks, name, level, crop.shape)
    return perturb(crop, name, level, frame_seed), moved


def _fused(scores: pd.DataFrame, val: pd.DataFrame, spec: dict, source: Path) -> pd.DataFrame:
    """Fused rows of `scores`, the rule and normaliser fitted on the unperturbed `val`."""
    try:
        fused = fuse(
            pd.concat([val, scores], ignore_index=True),
            spec.get("over", "regions"),
            spec.get("rule", "mean"),
            spec.get("subset"),
            spec.get("norm", "none"),
        )
    except FusionError as e:
        hint = "" if len(val) else f" ({source} holds no val rows)"
        raise DffrError(
            f"fusion {spec}: {e}{hint}. Robustness fits fusion on the unperturbed val scores "
            f"of the scores file: add them with `dffr score --split val --out {source}`"
        ) from None
    return fused[fused["split"].isin(set(scores["split"]))]


def _write(frame: pd.DataFrame, path: Path) -> None:
    with replaced(path) as tmp:
        frame.to_parquet(tmp, index=False)


def robustness(
    scores_from: str | Path,
    cache: str | Path,
    models: str | Path,
    levels: dict[str, Sequence[float]],
    out: str | Path,
    fusion: Sequence[dict] = (),
    split: str = "test",
    test_ddbb: str | None = None,
    device: str | None = None,
    batch: int = 32,
    seed: int = 0,
    video_level: bool = False,
    bootstrap: int = 0,
    progress: bool = True,
    workers: int = 0,
) -> RobustnessReport:
    """Re-score the `split` rows of `scores_from` under each (perturbation, level) of
    `levels` (see `sweep_levels`); write the perturbed scores, tables and plots to `out`."""
    scores_from, cache, out = Path(scores_from), Path(cache), Path(out)
    levels = sweep_levels(list(levels), levels)
    test, val = _scored(scores_from, split, test_ddbb)
    test_ddbb, tta = test["test_ddbb"].iloc[0], test["tta"].iloc[0]
    test, faceless = _faceless(test)
    for spec in fusion:  # an impossible fusion fails here, before any scoring
        _fused(test[SCORE_COLUMNS], val, spec, scores_from)
    frames = test[FACE_KEY].drop_duplicates()
    rows = read_index(cache).merge(frames, on=FACE_KEY)  # the cache's order
    if len(rows) < len(frames):
        raise DffrError(
            f"{len(frames) - len(rows)} of the {len(frames)} frames in {scores_from} are not "
            f"in {cache}: give the cache they were scored from"
        )
    keys = sorted(set(map(tuple, test[MODEL].drop_duplicates().to_numpy())))
    path = out / PERTURBED
    previous = read_scores(path) if path.is_file() else pd.DataFrame(columns=COLUMNS)
    mine = previous[previous["test_ddbb"] == test_ddbb]
    if len(mine) and set(mine["tta"]) != {tta}:
        raise DffrError(
            f"{path} holds scores with other test-time augmentation than {scores_from}: "
            "give another --out"
        )
    done = set(map(tuple, mine[["perturbation", "level", *MODEL]].to_numpy()))
    report = RobustnessReport()
    loaded: dict[tuple, tuple[Detector, str]] | None = None
    reference: dict[tuple, np.ndarray] | None = None
    for name, name_levels in levels.items():
        for level in name_levels:
            pending = [k for k in keys if (name, level, *k) not in done]
            if not pending:
                report.skipped.append((name, level))
                continue
            if loaded is None:
                found, report.missing = load_models(models, keys, device)
                loaded = {k: (model, k[2]) for k, model in found.items()}
            pending = [k for k in pending if k in loaded]
            if not pending:
                continue
            if level == 0:
                if reference is None:
                    reference = predict_frames(
                        cache,
                        rows,
                        loaded,
                        batch=batch,
                        tta=tta,
                        progress=progress,
                        desc="unperturbed",
                        workers=workers,
                    )
                    report.mismatch = _mismatch(reference, rows, test)
                values = {k: reference[k] for k in pending}
            else:
                values = predict_frames(
                    cache,
                    rows,
                    {k: loaded[k] for k in pending},
                    batch=batch,
                    tta=tta,
                    degrade=functools.partial(_degrade, name, level, seed),
                    progress=progress,
                    desc=f"{name} {level:g}",
                    workers=workers,
                )
            new = _rows(rows, values, name, level, test_ddbb, tta, cache, models)
            previous = pd.concat([previous, new], ignore_index=True) if len(previous) else new
            _write(previous.astype({"label": np.int64, "frame": np.int64}), path)
            report.scored.append((name, level))
    report.written = _tables(
        previous,
        faceless,
        levels,
        test_ddbb,
        keys,
        val,
        fusion,
        scores_from,
        out,
        video_level,
        bootstrap,
    )
    report.written["scores"] = path
    return report


def _scored(source: Path, split: str, test_ddbb: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The model rows of a scores file to re-score (one test database), and its val rows."""
    scores = read_scores(source)
    scores = scores[scores["detector"].isin(DETECTORS.names()) & scores["region"].isin(REGIONS)]
    test = scores[scores["split"] == split]
    if test.empty:
        raise DffrError(f"{source}: no {split!r} rows of a (detector, region) model")
    databases = sorted(test["test_ddbb"].unique())
    test_ddbb = test_ddbb or (databases[0] if len(databases) == 1 else None)
    if test_ddbb not in databases:
        raise DffrError(
            f"{source}: choose the cache's test database among {databases} (--test-ddbb)"
        )
    test = test[test["test_ddbb"] == test_ddbb]
    if test["tta"].nunique() > 1:
        raise DffrError(
            f"{source} mixes test-time augmentation settings {sorted(set(test['tta']))}"
        )
    return test, scores[scores["split"] == "val"]


def _faceless(test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows with a face to re-score, rows of frames without one): the latter have
    nothing to perturb and join every level's tables as they are, to be counted."""
    found = test["score"].notna()
    return test[found], test[~found]


def _mismatch(reference: dict, rows: pd.DataFrame, test: pd.DataFrame) -> float:
    """The largest difference between the unperturbed re-scores and the scores file."""
    worst = 0.0
    for (train_ddbb, det, region), values in reference.items():
        mine = rows[FACE_KEY].assign(mine=values)
        theirs = test[
            (test["train_ddbb"] == train_ddbb)
            & (test["detector"] == det)
            & (test["region"] == region)
        ]
        both = mine.merge(theirs, on=FACE_KEY)
        worst = max(worst, float(np.abs(both["mine"] - both["score"]).max()))
    if worst > 1e-5:
        log.warning(
            "unperturbed frames score up to %.3g apart from the scores file: are these the "
            "models and the cache that produced it?",
            worst,
        )
    return worst


def _rows(rows, values: dict, name: str, level: float, test_ddbb: str, tta: str, cache, models):
    """Perturbed scores in the layout of perturbed.parquet."""
    base = rows[[*FACE_KEY, "label", "video_label", "split", "method"]].assign(
        perturbation=name, level=level, test_ddbb=test_ddbb, tta=tta, cache=str(cache.resolve())
    )
    parts = [
        base.assign(
            train_ddbb=train_ddbb,
            detector=det,
            region=region,
            score=v,
            model=model_id(model_path(models, det, train_ddbb, region)),
        )
        for (train_ddbb, det, region), v in values.items()
    ]
    return pd.concat(parts, ignore_index=True)[COLUMNS]


def _tables(
    perturbed, faceless, levels, test_ddbb, keys, val, fusion, source, out, video_level, bootstrap
) -> dict[str, Path]:
    """AUC (and the other metrics) per (perturbation, level, model or fused result)."""
    perturbed = perturbed[perturbed["test_ddbb"] == test_ddbb]
    models = perturbed[MODEL].apply(tuple, axis=1).isin(set(keys))
    results = []
    for name, level in ((n, lv) for n, lvs in levels.items() for lv in lvs):
        g = perturbed[models & (perturbed["perturbation"] == name) & (perturbed["level"] == level)]
        if g.empty:
            continue
        g = pd.concat([g[SCORE_COLUMNS], faceless[SCORE_COLUMNS]], ignore_index=True)
        fused = [_fused(g, val, spec, source) for spec in fusion]
        table = evaluate(
            pd.concat([g, *fused], ignore_index=True),
            level="video" if video_level else "frame",
            n_bootstrap=bootstrap,
        )
        made = {tuple(k) for f in fused for k in f[MODEL].drop_duplicates().to_numpy()}
        table = table.assign(fused=[tuple(k) in made for k in table[MODEL].to_numpy()])
        results.append(table.assign(perturbation=name, level=level))
    written: dict[str, Path] = {}
    if not results:
        return written
    table = pd.concat(results, ignore_index=True)
    table = table[
        ["perturbation", "level", *(c for c in table if c not in ("perturbation", "level"))]
    ]
    out.mkdir(parents=True, exist_ok=True)
    written["csv"] = out / "robustness.csv"
    table.to_csv(written["csv"], index=False)
    sections = []
    for name in levels:
        t = table[table["perturbation"] == name]
        if t.empty:
            continue
        unit = get_perturbation(name).unit
        wide = t.assign(auc=100 * t["auc"]).pivot_table(
            index=MODEL, columns="level", values="auc", aggfunc="first", dropna=False
        )
        wide.columns = [f"{c:g}" for c in wide.columns]
        sections.append(
            f"## {name}: AUC (%) by level = {unit}\n\n"
            f"{wide.reset_index().to_markdown(index=False, floatfmt='.1f')}\n"
        )
        written[name] = level_figure(
            t, out / f"auc_{name}.png", f"{name} (test on {t['test_ddbb'].iloc[0]})", unit
        )
    written["md"] = out / "robustness.md"
    written["md"].write_text("\n".join(sections))
    return written


def level_figure(table: pd.DataFrame, path: Path, title: str, xlabel: str) -> Path:
    """AUC against level: one line per model and per fused result (thicker)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    several = table["train_ddbb"].nunique() > 1
    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    for (train_ddbb, det, region), g in table.groupby(MODEL):
        g = g.sort_values("level")
        name = det if det == region else f"{det} / {region}"
        fused = bool(g["fused"].any())
        ax.plot(
            g["level"],
            100 * g["auc"],
            marker="o",
            lw=2.2 if fused else 1.0,
            label=f"{train_ddbb}: {name}" if several else name,
        )
    ax.axhline(50, ls=":", c="grey", lw=0.8)
    ax.set(xlabel=xlabel, ylabel="AUC (%)", title=title)
    ax.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return save_figure(fig, path)

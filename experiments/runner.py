"""`dffr experiment FILE.yaml`: train, score, fuse and tabulate what is missing.

An experiment names its databases (each a preprocessed cache), which to train on and
which to test on, the detectors, the regions, the training settings and the fusion
rules. Whatever already exists (a model file, a scored combination) is reused, so a
second run only rebuilds the tables. Fusion rules that learn are fitted on the
validation scores of the models' own training database.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from dffr.detectors.base import DETECTORS
from dffr.detectors.model_files import (
    checkpoint_path,
    model_file_problem,
    model_path,
    models_kept,
    read_sidecar,
    sidecar_path,
)
from dffr.errors import DffrError
from dffr.experiments.spec import Experiment
from dffr.fusion.fuse import fused_inputs
from dffr.locks import locked

__all__ = ["Experiment", "preflight", "run"]


def preflight(exp: Experiment) -> None:
    """Everything `run` needs before it trains the first model: the caches (made with
    the options asked for) and the ImageNet file of every model to train, fetched now
    when absent. Raises DffrError listing every problem."""
    from dffr.detectors.imagenet import resolve
    from dffr.experiments.plan import check_cache

    problems = [
        p for ddbb in dict.fromkeys([*exp.train, *exp.test]) for p in check_cache(exp, ddbb)
    ]
    for ddbb, det, region, path in exp.model_files():
        if path.is_file() and model_file_problem(det, path) is None:
            continue
        config = exp.config(det, region, ddbb)
        try:  # what training will do first: find (or fetch) its ImageNet file
            resolve(config, DETECTORS.get(det).imagenet_weights(config), det)
        except DffrError as e:
            problems.append(str(e))
    if problems:
        problems = list(dict.fromkeys(problems))  # one line per file, not per model
        raise DffrError("the experiment cannot run:\n  - " + "\n  - ".join(problems))


def set_aside(weights: Path) -> Path:
    """Rename a model that does not load (and its sidecar) to <name>.unreadable[.json]:
    kept for whoever wants to look, out of the way of the model trained in its place."""
    aside = weights.with_name(f"{weights.name}.unreadable")
    side = sidecar_path(weights)
    weights.replace(aside)  # first: a sidecar alone describes nothing
    if side.is_file():
        side.replace(aside.with_name(f"{aside.name}.json"))
    return aside


def initialisations(models: Path, results: pd.DataFrame, fused: pd.DataFrame) -> pd.DataFrame:
    """`init` (imagenet / random / ...) and `init_files` (file:sha256) per result row,
    from the models' sidecars; a fused result lists what its inputs started from."""

    def of(train_ddbb: str, det: str, region: str) -> tuple[str, str]:
        meta = read_sidecar(model_path(models, det, train_ddbb, region))
        init = meta.get("init", {"kind": "not recorded"})
        files = f"{init['file']}:{init['sha256']}" if init.get("file") else ""
        return init["kind"], files

    inputs = (
        fused.drop_duplicates(["train_ddbb", "detector", "region"])
        .set_index(["train_ddbb", "detector", "region"])["inputs"]
        .to_dict()
        if len(fused)
        else {}
    )
    kinds, files = [], []
    for r in results.itertuples():
        parts = inputs.get((r.train_ddbb, r.detector, r.region))
        pairs = fused_inputs(parts) if parts else [(r.detector, r.region)]
        inits = [of(r.train_ddbb, d, g) for d, g in pairs]
        kinds.append("+".join(sorted({k for k, _ in inits})))
        files.append(" ".join(sorted({f for _, f in inits if f})))
    return results.assign(init=kinds, init_files=files)


def run(
    exp: Experiment, out: str | Path, device: str | None = None, workers: int = 0
) -> dict[str, Path]:
    """Run what is missing; write scores, fused scores, tables and pictures to `out`.
    `workers` threads feed training and scoring (see `dffr.feed`)."""
    from dffr.detectors.training import train
    from dffr.experiments.metrics import evaluate
    from dffr.experiments.plots import methods_figure, roc_figure
    from dffr.experiments.tables import (
        inter_table,
        intra_table,
        method_table,
        no_face_note,
        write_table,
    )
    from dffr.fusion.fuse import fuse
    from dffr.scoring.scores import read_scores, score

    out = Path(out)
    models = Path(exp.models)
    scores_path = out / "scores.parquet"
    with locked(out / ".dffr.lock", f"the experiment folder {out}"):
        preflight(exp)
        for db, det, region, path in exp.model_files():
            problem = model_file_problem(det, path)
            if problem:
                aside = set_aside(path)
                ckpt = checkpoint_path(path)
                warnings.warn(
                    f"{path}: does not load ({problem}); moved to {aside.name} and trained "
                    + (f"again from its checkpoint {ckpt}" if ckpt.is_file() else "again"),
                    stacklevel=2,
                )
            if not path.is_file():
                # resume: a model cut off by a killed run goes on from its last epoch
                train(
                    exp.config(det, region, db),
                    exp.cache_path(db),
                    models,
                    resume=True,
                    device=device,
                    workers=workers,
                )
        with models_kept():  # each model loaded once for all the caches and splits
            for db in exp.train:
                splits = [(db, "val")] if exp.needs_val() else []
                for test_db, split in [(t, "test") for t in exp.test] + splits:
                    score(
                        exp.cache_path(test_db),
                        models,
                        db,
                        scores_path,
                        exp.detectors,
                        exp.regions,
                        split=split,
                        device=device,
                        test_ddbb=test_db,
                        tta=exp.tta,
                        workers=workers,
                    )
        scores = read_scores(scores_path)
        fused = [fuse(scores, f.over, f.rule, f.subset, f.norm) for f in exp.fusion]
        everything = pd.concat([scores, *fused], ignore_index=True)
        everything.to_parquet(out / "fused.parquet", index=False)
        test_rows = everything[everything["split"] == "test"]
        results = evaluate(
            test_rows,
            level=exp.level,
            n_bootstrap=exp.bootstrap,
            no_face_score=exp.no_face_score,
            cache_dir=out / ".metrics-cache",
        )
        all_fused = pd.concat(fused, ignore_index=True) if fused else pd.DataFrame()
        results = initialisations(models, results, all_fused)
        results.to_csv(out / "metrics.csv", index=False)
        written = {"scores": scores_path, "metrics": out / "metrics.csv"}
        note = no_face_note(results)
        if note:
            (out / "no_face.txt").write_text(note + "\n")
            written["no_face"] = out / "no_face.txt"
        intra = intra_table(results, exp.metric)
        if not intra.empty:
            caption = f"{exp.name}: intra-database {exp.metric.upper()} (%)"
            write_table(intra, out / "intra", caption + (f". {note}" if note else ""))
            written["intra"] = out / "intra.md"
        methods = method_table(test_rows, exp.metric)
        if methods.shape[1] > 1:  # more than one manipulation: which region sees which
            caption = f"{exp.name}: {exp.metric.upper()} (%) per manipulation, reals vs its fakes"
            write_table(methods, out / "methods", caption)
            written["methods"] = out / "methods.md"
            for (tr, te), g in methods.groupby(level=["train_ddbb", "test_ddbb"]):
                methods_figure(
                    # the columns of this test database's own methods only
                    g.droplevel(["train_ddbb", "test_ddbb"]).dropna(axis=1, how="all"),
                    out / f"methods_{tr}_to_{te}.png",
                    f"trained on {tr}, tested on {te}: reals vs each manipulation",
                    exp.metric.upper(),
                )
        inter = inter_table(results, exp.metric)
        if not inter.empty:
            caption = f"{exp.name}: inter-database {exp.metric.upper()} (%)"
            write_table(inter, out / "inter", caption + (f". {note}" if note else ""))
            written["inter"] = out / "inter.md"
        for (tr, te), g in test_rows.groupby(["train_ddbb", "test_ddbb"]):
            roc_figure(g, out / f"roc_{tr}_to_{te}.png", f"trained on {tr}, tested on {te}")
        return written

"""`dffr experiment FILE.yaml`: train, score, fuse and tabulate what is missing.

An experiment names its databases (each a preprocessed cache), which to train on and
which to test on, the detectors, the regions, the training settings and the fusion
rules. Whatever already exists (a model file, a scored combination) is reused, so a
second run only rebuilds the tables. Fusion rules that learn are fitted on the
validation scores of the models' own training database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from dffr.detectors.base import PAPER_DETECTORS, DetectorConfig, model_path
from dffr.errors import DffrError
from dffr.regions.masks import REGIONS


@dataclass
class Experiment:
    name: str
    caches: dict[str, str]
    train: list[str]
    test: list[str]
    detectors: list[str] = field(default_factory=lambda: list(PAPER_DETECTORS))
    regions: list[str] = field(default_factory=lambda: list(REGIONS))
    models: str = "models"
    training: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)  # detector -> training keys for it alone
    fusion: list[dict] = field(default_factory=list)
    level: str = "frame"
    bootstrap: int = 1000
    tta: list[str] = field(default_factory=list)  # test-time views, e.g. [hflip, rotate15]
    metric: str = "auc"

    @classmethod
    def load(cls, path: str | Path) -> Experiment:
        path = Path(path)
        try:
            spec = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise DffrError(f"{path}: cannot read the experiment ({e})") from None
        known = set(cls.__dataclass_fields__)
        unknown = set(spec) - known
        if unknown:
            raise DffrError(f"{path}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
        exp = cls(**spec)
        base = path.parent
        exp.caches = {
            k: str((base / v) if not Path(v).is_absolute() else v) for k, v in exp.caches.items()
        }
        missing = [d for d in {*exp.train, *exp.test} if d not in exp.caches]
        if missing:
            raise DffrError(f"{path}: no cache given for {sorted(missing)}")
        return exp

    def needs_val(self) -> bool:
        return any(
            f.get("rule", "mean") in ("weighted_mean", "logistic", "svm")
            or f.get("norm", "none") != "none"
            or ".py:" in f.get("rule", "")
            for f in self.fusion
        )


def run(exp: Experiment, out: str | Path, device: str | None = None) -> dict[str, Path]:
    """Run what is missing; write scores, fused scores, tables and pictures to `out`."""
    from dffr.detectors.training import train
    from dffr.experiments.metrics import evaluate
    from dffr.experiments.plots import methods_figure, roc_figure
    from dffr.experiments.scoring import score
    from dffr.experiments.tables import inter_table, intra_table, method_table, write_table
    from dffr.fusion.fuse import fuse

    out = Path(out)
    models = Path(exp.models)
    scores_path = out / "scores.parquet"
    for db in exp.train:
        for det in exp.detectors:
            for region in exp.regions:
                if model_path(models, det, db, region).is_file():
                    continue
                own = [v for k, v in exp.overrides.items() if k.lower() == det.lower()]
                settings = {**exp.training, **(own[0] if own else {})}
                cfg = DetectorConfig(det, region=region, ddbb=db, **settings)
                # resume: a model cut off by a killed run goes on from its last epoch
                train(cfg, exp.caches[db], models, resume=True, device=device)
    for db in exp.train:
        splits = [(db, "val")] if exp.needs_val() else []
        for test_db, split in [(t, "test") for t in exp.test] + splits:
            score(
                exp.caches[test_db],
                models,
                db,
                scores_path,
                exp.detectors,
                exp.regions,
                split=split,
                device=device,
                test_ddbb=test_db,
                tta=exp.tta,
            )
    scores = pd.read_parquet(scores_path)
    fused = [
        fuse(
            scores,
            f.get("over", "regions"),
            f.get("rule", "mean"),
            f.get("subset"),
            f.get("norm", "none"),
        )
        for f in exp.fusion
    ]
    everything = pd.concat([scores, *fused], ignore_index=True)
    everything.to_parquet(out / "fused.parquet", index=False)
    test_rows = everything[everything["split"] == "test"]
    results = evaluate(test_rows, level=exp.level, n_bootstrap=exp.bootstrap)
    results.to_csv(out / "metrics.csv", index=False)
    written = {"scores": scores_path, "metrics": out / "metrics.csv"}
    intra = intra_table(results, exp.metric)
    if not intra.empty:
        write_table(intra, out / "intra", f"{exp.name}: intra-database {exp.metric.upper()} (%)")
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
        write_table(inter, out / "inter", f"{exp.name}: inter-database {exp.metric.upper()} (%)")
        written["inter"] = out / "inter.md"
    for (tr, te), g in test_rows.groupby(["train_ddbb", "test_ddbb"]):
        roc_figure(g, out / f"roc_{tr}_to_{te}.png", f"trained on {tr}, tested on {te}")
    return written

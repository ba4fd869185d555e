"""Golden tests (#14): scores, fused scores and tables stay what they were while the code
moves around. Every stage is driven through the `dffr` command line only (no internal
module is imported here, so a module may move without this file changing), and what it
writes is compared with reference files in tests/data/golden/:

- `scores.parquet`: a small scores table in the schema `dffr score` writes, made once by
  `make_scores` below (the file is the reference; the test checks the generator still
  makes it). `dffr fuse` (fixed and learned rules, over regions, detectors and both,
  with and without normalisation) and `dffr evaluate` (frame and video level, bootstrap
  intervals with the fixed seed) run on it; their outputs must equal `fused.csv`,
  `metrics.csv`, `evaluate.txt` (the table `dffr evaluate --level video` prints) and
  `schemas.json` (floats to a relative 1e-9, the rest exactly). Fast (about 3 s).
- `experiment_*.csv`: a tiny study through `dffr preprocess` and `dffr experiment` on
  face images made by `make_faces` (DSP-FWA with a ResNet-18 trunk from random weights,
  eyes and mouth, one epoch at 64 px, CPU): its scores (absolute 1e-5: networks differ
  in the last bits between CPU kinds), metrics (1e-6) and intra-database,
  inter-database and per-manipulation tables. Marked slow (about 20 s). Training twice
  with the same seed gave byte-identical weights on the machine the references were
  made on; `experiment_meta.json` records the library versions they were made with,
  which a failure message quotes (a new PyTorch, OpenCV or dlib can move the scores).

By default the tests only read tests/data/golden. After a change that is *meant* to
change results, make the references again and review their diff:

    DFFR_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py

(with `-m "not slow"` for the fast references only).
"""

from __future__ import annotations

import io
import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from dffr.cli import main

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
UPDATE = os.environ.get("DFFR_UPDATE_GOLDEN", "") not in ("", "0")
HOW = "if intended, DFFR_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py"

# the columns `dffr score` writes, with their Parquet types
SCORE_SCHEMA = pa.schema(
    [
        ("video", pa.string()),
        ("frame", pa.int64()),
        ("track", pa.int64()),
        ("label", pa.int64()),
        ("video_label", pa.int64()),
        ("split", pa.string()),
        ("method", pa.string()),
        ("test_ddbb", pa.string()),
        ("train_ddbb", pa.string()),
        ("detector", pa.string()),
        ("region", pa.string()),
        ("score", pa.float64()),
        ("tta", pa.string()),
        ("cache", pa.string()),
        ("model", pa.string()),
    ]
)
DETECTORS = ("DSP-FWA", "Xception")
REGIONS = ("eyes", "nose", "mouth", "rest")
# how well each (detector, region) separates fakes on its own database (logits)
SEPARATION = {
    ("DSP-FWA", "eyes"): 0.9,
    ("DSP-FWA", "nose"): 0.2,
    ("DSP-FWA", "mouth"): 0.6,
    ("DSP-FWA", "rest"): 0.4,
    ("Xception", "eyes"): 0.7,
    ("Xception", "nose"): 0.1,
    ("Xception", "mouth"): 0.8,
    ("Xception", "rest"): 0.5,
}
# the fusions run on the reference scores: `dffr fuse` arguments
FUSIONS = (
    ("--over", "regions", "--rule", "mean", "--subset", "eyes,mouth"),
    ("--over", "regions", "--rule", "logistic:C=0.5", "--norm", "zscore"),
    ("--over", "regions", "--rule", "svm", "--subset", "eyes,nose,mouth"),
    ("--over", "detectors", "--rule", "max", "--norm", "minmax"),
    ("--over", "both", "--rule", "weighted_mean", "--subset", "eyes,mouth"),
)
BOOTSTRAP = "50"  # `dffr evaluate` draws with its fixed seed (0)


def make_scores(seed: int = 14) -> pd.DataFrame:
    """How the reference scores.parquet was made: score rows as `dffr score` writes them,
    of two detectors x four regions trained on database A, scored on the test and the
    val splits of A and of B (a learned fusion must fit on A's val rows only).

    Each database has 6 test videos (2 frames each) and 10 val videos (1 frame), fakes of
    two methods; scores are logistic in a separation (halved on B) times the label sign,
    plus a per-video and a per-face normal draw. Also there: a test frame without a face
    (track -1, score NaN), a test video of B without any face, and a real second face
    (track 1) in a frame of a fake video."""
    rng = np.random.default_rng(seed)
    faces = []  # (test_ddbb, split, video, frame, track, label, video_label, method)
    for db in ("A", "B"):
        for split, n_videos, frames in (("test", 6, 2), ("val", 10, 1)):
            for v in range(n_videos):
                label = v % 2
                method = "real" if not label else ("swap", "reenact")[(v // 2) % 2]
                for f in range(frames):
                    faces.append((db, split, f"{db}/{split}/v{v}.mp4", f, 0, label, label, method))
    faces.append(("A", "test", "A/test/v1.mp4", 2, -1, 1, 1, "swap"))
    faces.append(("A", "test", "A/test/v3.mp4", 1, 1, 0, 1, "reenact"))
    faces += [("B", "test", "B/test/v6.mp4", f, -1, 1, 1, "swap") for f in range(2)]
    keys = ["test_ddbb", "split", "video", "frame", "track", "label", "video_label", "method"]
    faces = pd.DataFrame(faces, columns=keys)
    videos = faces["test_ddbb"] + ":" + faces["video"]
    video_index = pd.factorize(videos)[0]
    tables = []
    for det in DETECTORS:
        for region in REGIONS:
            d = SEPARATION[det, region] * np.where(faces["test_ddbb"] == "A", 1.0, 0.5)
            per_video = rng.normal(0, 0.6, video_index.max() + 1)[video_index]
            logit = d * (2 * faces["label"] - 1) + per_video + rng.normal(0, 1.0, len(faces))
            score = (1 / (1 + np.exp(-logit))).where(faces["track"] >= 0)
            tables.append(
                faces.assign(
                    train_ddbb="A",
                    detector=det,
                    region=region,
                    score=score.astype(np.float64),
                    tta="",
                    cache="/data/cache/" + faces["test_ddbb"],  # stand-ins: a cache's path
                    model=f"{det}-{region}-0123456789"[:16],  # and a model's sha256 prefix
                )
            )
    return pd.concat(tables, ignore_index=True)[SCORE_SCHEMA.names]


def make_faces(root: Path) -> None:
    """Two small folder databases of face images (lossless PNG, numpy-made, so the same
    bytes everywhere): A (train / val / test) from scikit-image's astronaut, B (test) from
    her mirror image; fakes of two kinds, `blur` (3x3 box blur) and `tint` (less red)."""
    from PIL import Image
    from skimage import data

    face = np.ascontiguousarray(data.astronaut()[::2, ::2])  # 256 px

    def shifted(img, dx, dy):
        return np.roll(np.roll(img, dy, axis=0), dx, axis=1)

    def blur(img):
        wide = img.astype(np.int32)
        total = sum(shifted(wide, dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1))
        return (total // 9).astype(np.uint8)

    def tint(img):
        out = img.astype(np.int32)
        out[..., 0] = out[..., 0] * 7 // 8
        return out.astype(np.uint8)

    rng = np.random.default_rng(0)
    layout = {"train": (4, 2), "val": (2, 1), "test": (3, 2)}  # reals, fakes per kind
    for db, source in (("A", face), ("B", np.ascontiguousarray(face[:, ::-1]))):
        for split, (n_real, n_fake) in layout.items():
            if db == "B" and split != "test":
                continue
            kinds = [("real", "r", lambda x: x, n_real)]
            kinds += [
                (f"fake/{name}", name, f, n_fake) for name, f in (("blur", blur), ("tint", tint))
            ]
            for folder, stem, make, n in kinds:
                for i in range(n):
                    dx, dy = rng.integers(-8, 9, 2)
                    path = root / db / split / folder / f"{stem}{i}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(make(shifted(source, dx, dy))).save(path)


# ---------------------------------------------------------------------------- helpers


def dffr(*args: str):
    """`dffr ARGS` in this process; fails the test with its output unless it succeeds."""
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, f"dffr {' '.join(map(str, args))}:\n{r.output}"
    return r


def via_csv(df: pd.DataFrame) -> pd.DataFrame:
    """`df` as it reads back from CSV (so a table and its reference have the same dtypes)."""
    return pd.read_csv(io.StringIO(df.to_csv(index=False)))


def reference(name: str) -> Path:
    path = GOLDEN / name
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
    elif not path.is_file():
        pytest.fail(f"{path} is missing; make it with {HOW}")
    return path


def compare_table(name: str, actual: pd.DataFrame, rtol: float, atol: float, note="") -> None:
    """`actual` against tests/data/golden/`name` (a CSV); floats to rtol / atol, the
    rest exactly, row order and columns included (UPDATE: write it first)."""
    path = reference(name)
    actual = via_csv(actual)
    if UPDATE:
        actual.to_csv(path, index=False)
    expected = pd.read_csv(path)
    try:
        pd.testing.assert_frame_equal(actual, expected, check_exact=False, rtol=rtol, atol=atol)
    except AssertionError as e:
        where = differences(actual, expected, rtol, atol)
        raise AssertionError(
            f"{name} differs from its reference{note}; {HOW}\n{where}\n{e}"
        ) from None


def differences(actual: pd.DataFrame, expected: pd.DataFrame, rtol: float, atol: float) -> str:
    """Where two tables differ, for a failure message: per column, how many rows and the
    first of them, value against reference."""
    if list(actual.columns) != list(expected.columns) or len(actual) != len(expected):
        return f"columns {list(actual.columns)} x {len(actual)} rows, reference " + (
            f"{list(expected.columns)} x {len(expected)} rows"
        )
    lines = []
    for column in actual.columns:
        a, e = actual[column], expected[column]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(e):
            same = np.isclose(a.astype(float), e.astype(float), rtol, atol, equal_nan=True)
        else:
            same = ((a == e) | (a.isna() & e.isna())).to_numpy()
        bad = np.flatnonzero(~same)
        if len(bad):
            i = bad[0]
            got, want = (getattr(v, "item", lambda v=v: v)() for v in (a.iloc[i], e.iloc[i]))
            lines.append(
                f"  {column}: {len(bad)} row(s) differ, first row {i}: {got!r}, reference {want!r}"
            )
    return "\n".join(lines)


def compare_text(name: str, actual: str) -> None:
    path = reference(name)
    if UPDATE:
        path.write_text(actual)
    assert actual == path.read_text(), f"{name} differs from its reference; {HOW}"


def compare_json(name: str, actual) -> None:
    path = reference(name)
    if UPDATE:
        path.write_text(json.dumps(actual, indent=1, sort_keys=True) + "\n")
    assert actual == json.loads(path.read_text()), f"{name} differs from its reference; {HOW}"


def kinds(path: Path) -> dict[str, str]:
    """A Parquet file's columns and the kind of each (string / int64 / double: whether
    pandas writes `string` or `large_string` is pandas', not ours)."""
    schema = pq.read_schema(path)
    return {
        f.name: "string"
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
        else str(f.type)
        for f in schema
    }


def write_scores(df: pd.DataFrame, path: Path) -> None:
    pq.write_table(pa.Table.from_pandas(df, schema=SCORE_SCHEMA, preserve_index=False), path)


@pytest.fixture(scope="module")
def scores() -> Path:
    """The reference scores table (UPDATE: made again by `make_scores` first)."""
    path = reference("scores.parquet")
    if UPDATE:
        write_scores(make_scores(), path)
    return path


# ------------------------------------------------------------- fusion and evaluation


def test_reference_scores_are_the_generators_in_the_score_schema(scores):
    table = pd.read_parquet(scores)
    assert pq.read_schema(scores).remove_metadata().equals(SCORE_SCHEMA)
    pd.testing.assert_frame_equal(table, make_scores(), check_dtype=False, rtol=1e-12)
    assert table["score"].isna().sum() == 3 * len(DETECTORS) * len(REGIONS)
    assert {"A", "B"} == set(table["test_ddbb"]) and set(table["split"]) == {"test", "val"}


def test_fuse_and_evaluate_give_the_reference_tables(scores, tmp_path):
    fused, schemas, metrics = [], set(), []
    inputs = [("scores", scores)]
    for i, args in enumerate(FUSIONS):
        out = tmp_path / f"fused{i}.parquet"
        dffr("fuse", "--scores", scores, *args, "--out", out)
        fused.append(pd.read_parquet(out))  # its rows name their rule, inputs and norm
        schemas.add(json.dumps(kinds(out)))
        inputs.append((" ".join(args), out))
    compare_table("fused.csv", pd.concat(fused, ignore_index=True), rtol=1e-9, atol=1e-12)
    assert len(schemas) == 1, "every fusion writes the same columns"
    compare_json("schemas.json", {"dffr fuse": json.loads(schemas.pop())})
    shown = None
    for name, path in inputs:
        for level in ("frame", "video"):
            csv = tmp_path / f"metrics_{len(metrics)}.csv"
            r = dffr(
                "evaluate",
                "--scores",
                path,
                "--level",
                level,
                "--bootstrap",
                BOOTSTRAP,
                "--out",
                csv,
            )
            if name == "scores" and level == "video":
                shown = r.stdout
            table = pd.read_csv(csv)
            metrics.append(table.assign(input=name))
    everything = pd.concat(metrics, ignore_index=True)
    assert everything["auc_lo"].notna().all()  # bootstrap intervals are there
    compare_table("metrics.csv", everything, rtol=1e-9, atol=1e-12)
    compare_text("evaluate.txt", shown)


# ------------------------------------------------------------- a tiny study, end to end

STUDY = {
    "name": "golden",
    "train": ["A"],
    "test": ["A", "B"],
    "detectors": ["DSP-FWA"],
    "regions": ["eyes", "mouth"],
    "training": {
        "epochs": 1,
        "batch": 4,
        "input_size": 64,
        "pretrained": False,
        "trunk": "resnet18",
        "seed": 0,
    },
    "fusion": [
        {"over": "regions", "rule": "mean", "subset": ["eyes", "mouth"]},
        {"over": "regions", "rule": "logistic", "subset": ["eyes", "mouth"]},
    ],
    "bootstrap": 20,
}
# what the scores of a run depend on besides the code (quoted when they differ)
LIBRARIES = ("torch", "numpy", "opencv-python", "dlib-bin", "scikit-learn", "pandas", "pillow")


def versions() -> dict[str, str]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


@pytest.mark.slow
def test_a_tiny_study_gives_the_reference_scores_and_tables(tmp_path, scores):
    make_faces(tmp_path / "db")
    caches = {}
    for db in ("A", "B"):
        caches[db] = str(tmp_path / f"cache{db}")
        dffr(
            "preprocess",
            "--ddbb",
            "folder",
            "--root",
            tmp_path / "db" / db,
            "--out",
            caches[db],
            "--size",
            "64",
        )
    spec = {**STUDY, "caches": caches, "models": str(tmp_path / "models")}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    dffr("--device", "cpu", "experiment", tmp_path / "study.yaml", "--out", out)

    # the fast test's reference input has the schema scoring writes
    assert kinds(out / "scores.parquet") == kinds(scores)
    meta = reference("experiment_meta.json")
    if UPDATE:
        meta.write_text(json.dumps(versions(), indent=1) + "\n")
    made_with = json.loads(meta.read_text())
    now = versions()
    note = "".join(
        f"\n  {k}: {made_with.get(k)} then, {v} now"
        for k, v in now.items()
        if made_with.get(k) != v
    )
    note = f" (made with other libraries:{note})" if note else ""
    # where the models' and caches' paths, and the models' hashes, are: not compared
    rows = pd.read_parquet(out / "fused.parquet").drop(columns=["cache", "model"])
    assert len(rows) and rows["score"].notna().all()
    compare_table("experiment_fused.csv", rows, rtol=0, atol=1e-5, note=note)
    metrics = pd.read_csv(out / "metrics.csv")
    compare_table("experiment_metrics.csv", metrics, rtol=0, atol=1e-6, note=note)
    for table in ("intra", "inter", "methods"):
        found = pd.read_csv(out / f"{table}.csv")
        compare_table(f"experiment_{table}.csv", found, rtol=0, atol=1e-6, note=note)

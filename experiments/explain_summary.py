"""Where the detectors look, over many faces: Grad-CAM averaged over a cached database.

For each (detector, region) model and each face of a split, Grad-CAM of P(fake) on the
face's region image, and from it
- the share of the heat in the face's eyes / nose / mouth / rest and outside the face
  (the face's own region masks in its crop: the four parts are disjoint and make up
  `entire`), and
- the heat map in a common aligned face frame: the similarity transform (least squares)
  that takes the face's eye centres, nose tip and mouth corners to a fixed template.
Both are averaged per group: real and fake faces, all of them and split by the decision
at P(fake) 0.5 (correct / wrong). A face without any heat (no evidence for fake, often a
confident real) counts in the mean maps as zeros and has no shares (NaN, see `n_heat`).

Writes to OUT: `faces.csv` (one row per face and model), `shares.{csv,md,tex}` (means per
detector, region and group), `mean_maps.npz`, `mean_maps_<region>.png` (groups x
detectors, with the template's region outlines) and `failures.csv`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from dffr.datasets.cache import read_crop, read_index
from dffr.detectors.base import PAPER_DETECTORS
from dffr.detectors.explain import Explainer, ExplainError, explainer
from dffr.detectors.model_files import load_models
from dffr.errors import DffrError
from dffr.experiments.plots import save_figure
from dffr.experiments.tables import write_table
from dffr.regions.crop import apply_affine
from dffr.regions.masks import REGIONS, apply_mask, region_masks

TEMPLATE_SIZE = 128
# the aligned frame, in units of its side: eye centres, nose tip, mouth corners, placed so
# that a face's `entire` region (forehead included) fits in it with a margin
TEMPLATE = np.array([[0.36, 0.38], [0.64, 0.38], [0.50, 0.53], [0.39, 0.64], [0.61, 0.64]])
PARTS = ("eyes", "nose", "mouth", "rest")
SHARES = ("entire", *PARTS, "outside")
FACE_COLUMNS = [
    "video",
    "frame",
    "track",
    "label",
    "detector",
    "region",
    "score",
    "decision",
    *SHARES,
]
GROUPS = tuple((label, d) for label in ("real", "fake") for d in ("all", "correct", "wrong"))


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """Eye centres, nose tip and mouth corners (5, 2) of 68 iBUG landmarks."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return np.array([lm[36:42].mean(axis=0), lm[42:48].mean(axis=0), lm[30], lm[48], lm[54]])


def alignment(landmarks: np.ndarray, size: int = TEMPLATE_SIZE) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, shift) taking the face's five points
    closest, in least squares, to the template's in a `size` x `size` frame."""
    src, dst = five_points(landmarks), TEMPLATE * size
    # x' = a x - b y + tx, y' = b x + a y + ty
    rows = np.zeros((10, 4))
    rows[0::2] = np.c_[src[:, 0], -src[:, 1], np.ones(5), np.zeros(5)]
    rows[1::2] = np.c_[src[:, 1], src[:, 0], np.zeros(5), np.ones(5)]
    (a, b, tx, ty), *_ = np.linalg.lstsq(rows, dst.reshape(-1), rcond=None)
    if not np.isfinite([a, b, tx, ty]).all() or np.hypot(a, b) < 1e-6:
        raise ExplainError("degenerate landmarks: no alignment to the template")
    return np.array([[a, -b, tx], [b, a, ty]])


def heat_shares(heat: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float]:
    """The share of the total heat in `entire`, each part and outside the face; the parts
    sum to `entire`, and `entire` + `outside` to 1. NaN when there is no heat at all."""
    total = float(heat.sum())
    if total <= 0:
        return dict.fromkeys(SHARES, float("nan"))
    out = {r: float(heat[masks[r]].sum()) / total for r in ("entire", *PARTS)}
    out["outside"] = float(heat[~masks["entire"]].sum()) / total
    return out


@dataclass
class SummaryReport:
    faces: int = 0  # faces explained by at least one model
    failures: int = 0
    missing: list[str] = field(default_factory=list)  # models not found
    written: list[Path] = field(default_factory=list)


@dataclass
class _Face:
    row: pd.Series
    masks: dict[str, np.ndarray]
    images: dict[str, np.ndarray]
    to_template: np.ndarray


def _faces(cache: Path, rows: pd.DataFrame, regions: set[str], failures: list) -> list[_Face]:
    """Read each crop once and cut the regions the models need; failures recorded."""
    out = []
    for _, row in rows.iterrows():
        try:
            crop = read_crop(cache / row["face"])
            to_template = alignment(row["landmarks"])
        except DffrError as e:
            failures.append((row["video"], row["frame"], "", "", str(e)))
            continue
        masks = region_masks(row["landmarks"], crop.shape)
        images = {r: apply_mask(crop, masks[r]) for r in regions}
        out.append(_Face(row, masks, images, to_template))
    return out


def _explain_block(
    key: tuple[str, str], ex: Explainer, faces: list[_Face], batch: int, failures: list
) -> list[tuple[_Face, float, np.ndarray]]:
    """(face, P(fake), heat) for a block, batched by image size; failures recorded."""
    det, region = key
    by_shape = defaultdict(list)
    for f in faces:
        by_shape[f.images[region].shape].append(f)
    out = []
    for group in by_shape.values():
        try:
            e = ex.explain(np.stack([f.images[region] for f in group]), "gradcam", batch)
        except DffrError as err:
            failures.extend((f.row["video"], f.row["frame"], det, region, str(err)) for f in group)
            continue
        out += list(zip(group, e.scores, e.heat, strict=True))
    return out


def explain_summary(
    cache: str | Path,
    models: str | Path,
    ddbb: str,
    out: str | Path,
    detectors=PAPER_DETECTORS,
    regions=REGIONS,
    split: str = "test",
    limit: int | None = None,
    device: str | None = None,
    batch: int = 16,
    progress: bool = True,
) -> SummaryReport:
    """Grad-CAM shares and mean maps of the `ddbb` models over a cache's `split` faces
    (a seeded random `limit` of them); writes the files listed in the module docstring."""
    cache, out = Path(cache), Path(out)
    index = read_index(cache, split)
    if index.empty:
        raise DffrError(f"{cache}: no rows in split {split!r} to explain")
    if limit and limit < len(index):
        index = index.sample(n=limit, random_state=0).sort_index()
    report = SummaryReport()
    keys = [(ddbb, det, region) for det in detectors for region in regions]
    found, report.missing = load_models(models, keys, device)
    explainers: dict[tuple[str, str], Explainer] = {
        (det, region): explainer(model) for (_, det, region), model in found.items()
    }
    if not explainers:
        raise DffrError(f"no model of {ddbb} found in {models} for {detectors} x {regions}")
    needed = {r for _, r in explainers}
    size = TEMPLATE_SIZE
    sums: dict[tuple, np.ndarray] = defaultdict(lambda: np.zeros((size, size)))
    counts: dict[tuple, int] = defaultdict(int)
    landmarks_sum, explained = np.zeros((68, 2)), 0
    rows, failures = [], []
    for start in tqdm(
        range(0, len(index), batch), desc=f"explain {split}", unit="batch", disable=not progress
    ):
        faces = _faces(cache, index.iloc[start : start + batch], needed, failures)
        done = set()
        for key, ex in explainers.items():
            for face, p, heat in _explain_block(key, ex, faces, batch, failures):
                label = "fake" if face.row["label"] == 1 else "real"
                decision = "correct" if (p >= 0.5) == (label == "fake") else "wrong"
                aligned = cv2.warpAffine(heat, face.to_template, (size, size))
                for group in ((label, "all"), (label, decision)):
                    sums[(*key, *group)] += aligned
                    counts[(*key, *group)] += 1
                rows.append(
                    {
                        "video": face.row["video"],
                        "frame": int(face.row["frame"]),
                        "track": int(face.row["track"]),
                        "label": int(face.row["label"]),
                        "detector": key[0],
                        "region": key[1],
                        "score": float(p),
                        "decision": decision,
                        **heat_shares(heat, face.masks),
                    }
                )
                if id(face) not in done:
                    done.add(id(face))
                    landmarks_sum += apply_affine(face.to_template, face.row["landmarks"])
                    explained += 1
    report.faces, report.failures = explained, len(failures)
    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows, columns=FACE_COLUMNS)
    report.written.append(out / "faces.csv")
    table.to_csv(report.written[-1], index=False)
    report.written.append(out / "failures.csv")
    pd.DataFrame(failures, columns=["video", "frame", "detector", "region", "reason"]).to_csv(
        report.written[-1], index=False
    )
    if table.empty:
        return report
    test_ddbb = str(index["ddbb"].iloc[0])
    where = f"{ddbb} models on {test_ddbb} {split}"
    shares = share_table(table)
    shares.insert(0, "test_ddbb", test_ddbb)
    shares.insert(0, "train_ddbb", ddbb)
    keys = ["train_ddbb", "test_ddbb", "detector", "region", "label", "decision"]
    report.written += write_table(
        shares.round(3).set_index(keys),
        out / "shares",
        f"Share of Grad-CAM heat per facial part, {where} (mean over the n_heat of n faces "
        "with any heat)",
    )
    means = {k: sums[k] / counts[k] for k in counts}
    report.written.append(out / "mean_maps.npz")
    np.savez_compressed(report.written[-1], **{"|".join(k): v for k, v in means.items()})
    template_landmarks = landmarks_sum / explained
    for region in dict.fromkeys(r for _, r in explainers):
        dets = list(dict.fromkeys(d for d, r in explainers if r == region))
        panels = {
            (d, *g): (means.get((d, region, *g)), counts.get((d, region, *g), 0))
            for d in dets
            for g in GROUPS
        }
        report.written.append(out / f"mean_maps_{region}.png")
        mean_map_figure(
            panels,
            dets,
            template_landmarks,
            f"mean Grad-CAM of P(fake), {region}: {where}",
            report.written[-1],
        )
    return report


def share_table(faces: pd.DataFrame) -> pd.DataFrame:
    """Mean shares per detector, region and group (label x all / correct / wrong)."""
    faces = faces.assign(label=np.where(faces["label"] == 1, "fake", "real"))
    parts = [faces.assign(decision="all"), faces]
    keys = ["detector", "region", "label", "decision"]
    grouped = pd.concat(parts).groupby(keys, sort=False)
    table = grouped[list(SHARES)].mean()
    table.insert(0, "n_heat", grouped["entire"].count())
    table.insert(0, "n", grouped.size())
    table.insert(2, "mean_score", grouped["score"].mean())
    table = table.reset_index()
    rank = [GROUPS.index(g) for g in zip(table["label"], table["decision"], strict=True)]
    table = table.assign(_rank=rank).sort_values([*keys[:2], "_rank"])
    return table.drop(columns="_rank").reset_index(drop=True)


def mean_map_figure(
    maps: dict[tuple, tuple[np.ndarray | None, int]],
    detectors: list[str],
    landmarks: np.ndarray,
    title: str,
    path: Path,
) -> None:
    """A grid, detectors x groups, of mean aligned maps on one colour scale, with the
    region outlines of the faces' mean aligned landmarks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from dffr.regions.overlay import COLOURS

    size = TEMPLATE_SIZE
    masks = region_masks(landmarks, (size, size))
    outlines = {n: np.array(COLOURS[n]) / 255 for n in ("entire", "eyes", "nose", "mouth")}
    outlines["entire"] = np.full(3, 0.75)  # white would vanish from the legend
    top = max((float(m.max()) for m, _ in maps.values() if m is not None), default=1.0) or 1.0
    fig, axes = plt.subplots(
        len(detectors),
        len(GROUPS),
        figsize=(2.2 * len(GROUPS) + 1.2, 2.4 * len(detectors) + 1.0),
        squeeze=False,
        layout="constrained",
    )
    image = None
    for i, det in enumerate(detectors):
        for j, group in enumerate(GROUPS):
            ax = axes[i, j]
            mean, n = maps[(det, *group)]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{group[0]}, {group[1]} (n={n})", fontsize=8)
            if j == 0:
                ax.set_ylabel(det, fontsize=9)
            if mean is None:
                ax.text(0.5, 0.5, "no faces", ha="center", va="center", transform=ax.transAxes)
                continue
            image = ax.imshow(mean, cmap="inferno", vmin=0, vmax=top)
            for name, colour in outlines.items():
                ax.contour(masks[name].astype(float), levels=[0.5], linewidths=0.8, colors=[colour])
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="mean heat")
    lines = [Line2D([], [], color=c, label=n) for n, c in outlines.items()]
    fig.legend(handles=lines, loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path, dpi=110, tight=False)

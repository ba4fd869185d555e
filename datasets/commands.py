"""`dffr preprocess`, `dffr merge-cache` and `dffr regions`."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import click

from dffr.clickutil import RegistryChoice
from dffr.datasets.base import DATASETS, SPLITS, get_dataset
from dffr.datasets.cache import iter_regions, merge_caches
from dffr.datasets.preprocess import DIFF_THRESHOLD, FACE_MODES, Settings, preprocess
from dffr.errors import DffrError
from dffr.regions.commands import backend_option, face_detector_option
from dffr.regions.masks import REGIONS
from dffr.regions.segment import MIN_FACE


def _shard(value: str | None) -> tuple[int, int]:
    if not value:
        return (0, 1)
    try:
        i, n = (int(v) for v in value.split("/"))
    except ValueError:
        raise click.BadParameter("use i/n, e.g. 0/4", param_hint="--shard") from None
    if not (n >= 1 and 0 <= i < n):
        raise click.BadParameter(f"{value}: need 0 <= i < n", param_hint="--shard")
    return (i, n)


def split_counts(name: str, items) -> str:
    """ "FaceForensics videos: train 720 real / 2880 fake, ..." (what each split holds)."""
    counts = {s: [0, 0] for s in SPLITS}
    for it in items:
        counts[it.split][it.label] += 1
    parts = [f"{s} {r} real / {f} fake" for s, (r, f) in counts.items() if r or f]
    return f"{name} videos: " + (", ".join(parts) if parts else "none")


def dataset_options(command):
    """One `--<option>` per option any registered database adapter declares (the fields
    of its `Options`), so a database's option is written once, in its adapter."""
    specs: dict[str, list] = {}
    for name in DATASETS.names():
        for spec in fields(DATASETS.get(name).Options):
            specs.setdefault(spec.name, []).append((name, spec))
    for option, users in sorted(specs.items(), reverse=True):
        kind = click.Path(path_type=Path) if users[0][1].metadata.get("path") else str
        text = "; ".join(f"{name}: {spec.metadata.get('help', '')}" for name, spec in users)
        flag = f"--{option.replace('_', '-')}"  # click passes it back as `option`
        command = click.option(flag, default=None, type=kind, help=text)(command)
    return command


@click.command("preprocess")
@click.option("--ddbb", required=True, type=RegistryChoice(DATASETS))
@click.option("--root", required=True, type=click.Path(path_type=Path), help="database folder")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="cache folder")
@click.option(
    "--frames",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="frames per video, evenly spaced",
)
@click.option(
    "--size", default=200, show_default=True, type=click.IntRange(min=8), help="face crop side, px"
)
@click.option(
    "--scale",
    default=1.3,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="crop enlargement",
)
@click.option(
    "--faces",
    type=click.Choice(FACE_MODES),
    default=None,
    help="track the largest face or every face (default: the database's; DFDC: all)",
)
@click.option(
    "--diff-threshold",
    default=DIFF_THRESHOLD,
    show_default=True,
    type=click.FloatRange(min=0),
    help="every face tracked: a fake's face is fake when it differs from its original "
    "by more than this (mean grey levels)",
)
@backend_option
@face_detector_option
@click.option("--min-face", default=MIN_FACE, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="parallel processes over videos",
)
@click.option("--shard", default=None, help="i/n: process only shard i of n (0-based)")
@click.option("--split", type=click.Choice(SPLITS), default=None, help="only this split")
@dataset_options
def preprocess_cmd(
    ddbb,
    root,
    out,
    frames,
    size,
    scale,
    faces,
    diff_threshold,
    backend,
    face_detector,
    min_face,
    workers,
    shard,
    split,
    **dataset_opts,
):
    """Decode videos, track faces, write aligned crops + landmarks and CACHE/index.parquet."""
    options = {k: v for k, v in dataset_opts.items() if v is not None}
    shard_t = _shard(shard)
    try:
        ds = get_dataset(ddbb, root, **options)
        listed = ds.items()
        items = [it for it in listed if split is None or it.split == split]
        click.echo(split_counts(ds.name, items), err=True)
        settings = Settings(
            frames,
            size,
            scale,
            backend,
            min_face,
            faces=faces,
            face_detector=face_detector,
            diff_threshold=diff_threshold,
        )
        s = preprocess(items, ds.root, out, settings, workers, shard_t, database=ds, listed=listed)
    except DffrError as e:
        raise click.ClickException(str(e)) from None
    excluded = getattr(ds, "excluded", [])
    click.echo(
        f"{ds.name}: {s.videos} video(s) processed, {s.skipped} already cached, "
        f"{s.frames} frame(s) kept, {s.failures} failure(s)"
        + (f", {len(excluded)} video(s) excluded by the split protocol" if excluded else ""),
        err=True,
    )
    if s.dropped or s.redone or s.updated:
        click.echo(
            f"the metadata changed since the cache was made: {s.dropped} cached video(s) no "
            f"longer listed, dropped; {s.redone} relabelled, processed again; {s.updated} "
            "moved to another split or method",
            err=True,
        )
    if s.index_rows is None:
        click.echo(
            f"shard {shard}: done; run `dffr merge-cache {out}` once all shards are", err=True
        )
    else:
        click.echo(
            f"{out / 'index.parquet'}: {s.index_rows} row(s); failures in {out / 'failures.csv'}",
            err=True,
        )


@click.command("merge-cache")
@click.argument("caches", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="merged cache (default: the first CACHE, indexed in place)",
)
def merge_cache_cmd(caches, out):
    """Join shard caches (or re-index one cache) into index.parquet + failures.csv."""
    target = out or caches[0]
    try:
        rows, fails = merge_caches(target, list(caches))
    except DffrError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{target / 'index.parquet'}: {rows} row(s), {fails} failure(s)", err=True)


@click.command("regions")
@click.option("--cache", required=True, type=click.Path(path_type=Path))
@click.option("--region", required=True, type=click.Choice(REGIONS))
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--split", type=click.Choice(SPLITS), default=None)
@click.option("--limit", type=int, default=None, help="at most this many faces")
def regions_cmd(cache, region, out, split, limit):
    """Write the region images of cached faces, cut on the fly from crops + landmarks."""
    from dffr.images import write_image

    n = 0
    try:
        for row, image in iter_regions(cache, region, split):
            if limit is not None and n >= limit:
                break
            stem = Path(row["video"]).with_suffix("").as_posix().replace("/", "__")
            write_image(out / f"{stem}_{row['frame']:06d}_{region}.png", image)
            n += 1
    except DffrError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"wrote {n} {region} image(s) to {out}", err=True)

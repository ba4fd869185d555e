"""`dffr detect --report`: one self-contained HTML file (images embedded) per run: each
input's faces, their five regions, the scores, the verdict with its threshold, Grad-CAM
over the face for each detector, and for a video P(fake) over its sampled frames."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from dffr.detect import Detection, FaceResult, Models


def _png(rgb: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _figure_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _img(src: str, caption: str, cls: str = "") -> str:
    return (
        f'<figure class="{cls}"><img src="{src}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _heat(models: Models, face: FaceResult) -> list[str]:
    """Grad-CAM over the face for each detector: its `entire` model, else its first."""
    from matplotlib import colormaps

    from dffr.detectors.explain import ExplainError, explain

    out, done = [], set()
    keys = sorted(models.models, key=lambda k: (k.split("/")[0], k.split("/")[1] != "entire"))
    for key in keys:
        det, region = key.split("/")
        if det in done:
            continue
        done.add(det)
        model, _ = models.models[key]
        image = face.regions[region]
        try:
            heat = explain(model, image[None])
        except ExplainError as e:
            out.append(f"<p>{html.escape(key)}: no Grad-CAM ({html.escape(str(e))})</p>")
            continue
        h = heat.heat[0]
        colour = colormaps["jet"](h)[..., :3] * 255
        alpha = np.clip(0.7 * h, 0, 1)[..., None]
        over = image * (1 - alpha) + colour * alpha
        out.append(_img(_png(over), f"Grad-CAM {key}", "heat"))
    return out


def _timeline(face: FaceResult) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6))
    for key, values in face.per_frame.items():
        style = {"lw": 2.5, "color": "black"} if key == "fused" else {"lw": 1, "alpha": 0.6}
        ax.plot(face.frames, values, marker=".", label=key, **style)
    ax.axhline(face.threshold, ls="--", color="red", lw=1, label="threshold")
    ax.set_ylim(0, 1)
    ax.set_xlabel("frame")
    ax.set_ylabel("P(fake)")
    ax.legend(fontsize=6, ncol=3, loc="upper left")
    return _img(_figure_png(fig), "P(fake) over the sampled frames", "timeline")


def _face_html(models: Models, d: Detection, face: FaceResult) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td class='score'>{v:.4f}</td></tr>"
        for k, v in face.scores.items()
    )
    parts = [
        f'<section class="face" data-track="{face.track}">',
        f'<h3>face {face.track}: <span class="verdict {face.verdict.lower()}">{face.verdict}'
        f'</span> (fused P(fake) <span class="fused">{face.fused:.4f}</span>, threshold '
        f"{face.threshold:.4f}: {html.escape(face.threshold_source)})</h3>",
        '<div class="images">',
        _img(_png(face.face), "face"),
        *(_img(_png(img), region, "region") for region, img in face.regions.items()),
        "</div>",
        f"<table><tr><th>model</th><th>P(fake)</th></tr>{rows}</table>",
        '<div class="images">',
        *_heat(models, face),
        "</div>",
    ]
    if d.kind == "video":
        parts.append(_timeline(face))
    parts.append("</section>")
    return "\n".join(parts)


STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:70em}
figure{display:inline-block;margin:.3em;text-align:center;font-size:.8em}
figure img{width:128px;height:128px;image-rendering:pixelated}
figure.timeline img{width:auto;height:auto}
.verdict.fake{color:#b00}.verdict.real{color:#070}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em}
.error{color:#b00}"""


def report_html(models: Models, detections: list[Detection]) -> str:
    body = []
    for d in detections:
        body.append(f'<article class="input"><h2>{html.escape(d.path)} ({d.kind})</h2>')
        if d.error:
            body.append(f'<p class="error">{html.escape(d.error)}</p>')
        body += [_face_html(models, d, f) for f in d.faces]
        body.append("</article>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>dffr detect</title>"
        f"<style>{STYLE}</style></head><body><h1>dffr detect: models of "
        f"{html.escape(models.ddbb)}, fusion {html.escape(models.fusion)}</h1>"
        + "\n".join(body)
        + "</body></html>"
    )


def write_report(path: Path, models: Models, detections: list[Detection]) -> Path:
    from dffr.atomic import replaced

    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced(path) as tmp:
        Path(tmp).write_text(report_html(models, detections))
    return path

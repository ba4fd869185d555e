"""`dffr serve`: a local web page to drop an image or a video on and see what
`dffr detect --report` shows, with progress while a video is processed.

FastAPI with one plain HTML page, not Gradio: the page is the report's own HTML
(`detect_report`), so the page and `--report` cannot drift apart; FastAPI adds a few
small packages where Gradio brings a front-end toolchain and its own upload handling.
The models are loaded once, when the server starts, and serve every request. Uploads
are streamed to a temporary folder with a size limit and deleted once processed; one
detection runs at a time (the accelerator is shared), later ones wait their turn.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, HTTPException, UploadFile
from fastapi.responses import HTMLResponse

from dffr.detect import Models
from dffr.detect_report import STYLE, report_html

CHUNK = 1 << 20
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>dffr</title>
<style>{style}
#drop{{border:2px dashed #888;padding:2em;text-align:center;margin:1em 0}}
#status{{margin:.5em 0}}</style></head><body>
<h1>dffr: is this face fake?</h1>
<p>Models trained on <b>{ddbb}</b>, fused by <b>{fusion}</b>; threshold: {threshold}.</p>
<div id="drop"><input type="file" id="file" accept="image/*,video/*">
<button id="go">Detect</button></div>
<progress id="bar" max="1" value="0" hidden></progress> <span id="status"></span>
<div id="result"></div>
<script>
const drop = document.getElementById('drop'), input = document.getElementById('file');
drop.ondragover = e => e.preventDefault();
drop.ondrop = e => {{ e.preventDefault(); input.files = e.dataTransfer.files; }};
document.getElementById('go').onclick = async () => {{
  const status = document.getElementById('status'), bar = document.getElementById('bar');
  const result = document.getElementById('result');
  if (!input.files.length) {{ status.textContent = 'choose a file first'; return; }}
  result.innerHTML = ''; status.textContent = 'uploading'; bar.hidden = false; bar.value = 0;
  const form = new FormData(); form.append('file', input.files[0]);
  const r = await fetch('detect', {{method: 'POST', body: form}});
  const job = await r.json();
  if (!r.ok) {{ status.textContent = job.detail; status.className = 'error'; return; }}
  while (true) {{
    const s = await (await fetch('jobs/' + job.id)).json();
    bar.value = s.progress;
    if (s.state === 'done') {{
      bar.hidden = true; status.className = s.error ? 'error' : '';
      status.textContent = s.error || ('done in ' + s.seconds.toFixed(1) + ' s');
      result.innerHTML = s.html; return;
    }}
    status.textContent = 'processing ' + Math.round(100 * s.progress) + '%';
    await new Promise(ok => setTimeout(ok, 200));
  }}
}};
</script></body></html>"""


@dataclass
class Job:
    name: str
    progress: float = 0.0
    state: str = "waiting"  # waiting | running | done
    error: str = ""
    html: str = ""
    seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)


def make_app(models: Models, max_upload_mb: float = 200, frames: int = 20):
    """The FastAPI application around loaded models."""

    app = FastAPI(title="dffr")
    jobs: dict[str, Job] = {}
    runner = ThreadPoolExecutor(1, thread_name_prefix="dffr-detect")
    lock = threading.Lock()
    limit = int(max_upload_mb * CHUNK)

    def work(job: Job, folder: Path, path: Path) -> None:
        job.state = "running"
        try:

            def progress(done: int, total: int) -> None:
                job.progress = done / total

            d = models(path, frames, progress=progress)
            d.path = job.name  # the upload's own name, not its temporary place
            job.error = d.error
            if d.error and "not an image" in d.error:
                job.error = f"{job.name}: not an image or a video this page can read ({d.error})"
            page = report_html(models, [d])
            job.html = page.split("<body>", 1)[1].rsplit("</body>", 1)[0]
        except Exception as e:  # the page says what happened; the server goes on
            job.error = f"{job.name}: {type(e).__name__}: {e}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            job.progress, job.state = 1.0, "done"
            job.seconds = time.perf_counter() - job.started

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.format(
            style=STYLE,
            ddbb=models.ddbb,
            fusion=models.fusion,
            threshold=f"{models.threshold:.4f} ({models.threshold_source})",
        )

    @app.post("/detect")
    async def upload(file: UploadFile) -> dict:
        name = Path(file.filename or "upload").name
        folder = Path(tempfile.mkdtemp(prefix="dffr-serve-"))
        path = folder / name
        size = 0
        with path.open("wb") as out:
            while chunk := await file.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    out.close()
                    shutil.rmtree(folder, ignore_errors=True)
                    raise HTTPException(
                        413, f"{name}: larger than the {max_upload_mb:g} MB this server takes"
                    )
                out.write(chunk)
        job_id = uuid.uuid4().hex
        with lock:
            jobs[job_id] = job = Job(name)
        runner.submit(work, job, folder, path)
        return {"id": job_id}

    @app.get("/jobs/{job_id}")
    def status(job_id: str) -> dict:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, "no such job")
        return {
            "state": job.state,
            "progress": job.progress,
            "error": job.error,
            "html": job.html if job.state == "done" else "",
            "seconds": job.seconds,
        }

    return app

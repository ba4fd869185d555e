"""`dffr serve` in a real browser: headless Chromium (Debian's, driven by Selenium)
uploads a real face photo and finds the five regions and the same scores as `dffr
detect --json`; a text file named .png gets a clear message; an upload beyond the limit
is refused; temporary files are removed; the second request is faster than the first."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from dffr.cli import main
from dffr.images import write_image

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(models):
    import uvicorn

    from dffr.detect import Models
    from dffr.serve import make_app

    port = _free_port()
    app = make_app(Models(models, "CelebDF"), max_upload_mb=1, frames=3)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip("no browser: Debian's chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tempfile.mkdtemp(prefix='dffr-chromium-')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_window_size(1200, 1600)
    yield driver
    driver.quit()


def _upload(browser, url: str, path: Path, timeout: float = 120):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    browser.find_element(By.ID, "file").send_keys(str(path))
    t = time.perf_counter()
    browser.find_element(By.ID, "go").click()
    WebDriverWait(browser, timeout).until(
        lambda b: (
            "done" in b.find_element(By.ID, "status").text
            or "error" in (b.find_element(By.ID, "status").get_attribute("class") or "")
        )
    )
    return time.perf_counter() - t


def test_a_face_photo_shows_its_regions_and_the_scores_of_dffr_detect(
    server, browser, models, astronaut, tmp_path, report, monkeypatch
):
    from selenium.webdriver.common.by import By

    import dffr.detectors.model_files as model_files

    loads = []
    real_load = model_files.load_detector
    monkeypatch.setattr(
        model_files, "load_detector", lambda *a, **k: loads.append(a) or real_load(*a, **k)
    )

    photo = tmp_path / "astronaut.png"
    write_image(photo, astronaut)
    before = set(Path(tempfile.gettempdir()).glob("dffr-serve-*"))
    first = _upload(browser, server, photo)
    faces = browser.find_elements(By.CSS_SELECTOR, "#result section.face")
    assert len(faces) == 1, browser.find_element(By.ID, "status").text
    assert len(faces[0].find_elements(By.CSS_SELECTOR, "figure.region img")) == 5
    shown = {
        row.find_elements(By.TAG_NAME, "td")[0].text: row.find_elements(By.TAG_NAME, "td")[1].text
        for row in faces[0].find_elements(By.TAG_NAME, "tr")[1:]
    }
    r = CliRunner().invoke(
        main, ["detect", str(photo), "--models", str(models), "--ddbb", "CelebDF", "--json"]
    )
    line = next(x for x in r.output.splitlines() if x.startswith("{"))
    expected = json.loads(line)["faces"][0]["scores"]
    assert shown == {k: f"{v:.4f}" for k, v in expected.items()}
    # the README's picture of the page: DFFR_SERVE_SCREENSHOT=docs/serve_page.png
    shot = Path(os.environ.get("DFFR_SERVE_SCREENSHOT") or tmp_path / "page.png")
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    second = _upload(browser, server, photo)
    report("dffr serve, one photo", f"first request {first:.1f} s, second {second:.1f} s")
    assert set(Path(tempfile.gettempdir()).glob("dffr-serve-*")) == before  # removed
    assert len(loads) == 2  # by the `dffr detect` above; the server loaded its own once


def test_a_text_file_named_png_gets_a_clear_message(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    fake = tmp_path / "holiday.png"
    fake.write_text("these are not pixels")
    _upload(browser, server, fake)
    status = browser.find_element(By.ID, "status")
    assert "error" in status.get_attribute("class")
    assert "holiday.png: not an image or a video this page can read" in status.text


def test_an_upload_beyond_the_limit_is_refused(server, tmp_path):
    import urllib.error
    import urllib.request

    body = b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n\r\n'
    body += b"0" * (2 << 20) + b"\r\n--x--\r\n"
    req = urllib.request.Request(
        server + "detect", body, {"Content-Type": "multipart/form-data; boundary=x"}
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 413
    assert "larger than the 1 MB this server takes" in e.value.read().decode()


def _post(server: str, name: str, data: bytes) -> tuple[dict, list[float]]:
    """Upload through the page's API and wait: (the finished job, the progress seen)."""
    import urllib.request

    body = f'--x\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n\r\n'
    req = urllib.request.Request(
        server + "detect",
        body.encode() + data + b"\r\n--x--\r\n",
        {"Content-Type": "multipart/form-data; boundary=x"},
    )
    job = json.loads(urllib.request.urlopen(req).read())["id"]
    seen = []
    for _ in range(600):
        state = json.loads(urllib.request.urlopen(f"{server}jobs/{job}").read())
        seen.append(state["progress"])
        if state["state"] == "done":
            break
        time.sleep(0.05)
    return state, seen


def test_an_image_without_a_face_gets_a_clear_message(server):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (90, 120, 200)).save(buf, format="PNG")
    state, _ = _post(server, "sky.png", buf.getvalue())
    assert state["state"] == "done" and "no face found in the 1 sampled frame(s)" in state["error"]


def test_a_video_upload_reports_progress_and_its_timeline(server, face_video):
    state, seen = _post(server, "clip.mp4", face_video.read_bytes())
    assert state["state"] == "done" and state["error"] == "" and seen[-1] == 1.0
    assert seen == sorted(seen)
    assert (
        "clip.mp4 (video)" in state["html"] and "P(fake) over the sampled frames" in state["html"]
    )

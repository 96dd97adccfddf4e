"""The web page in headless Chromium: upload a study, read the report, see bars and heatmaps.

Drives chromedriver over its W3C WebDriver HTTP API with httpx (tests/serve/browser.py). Skips
where Chromium or chromedriver is not installed (Debian: apt-get install chromium
chromium-driver). Set CXREPORT_SCREENSHOT_DIR to keep the screenshot.
"""

import base64
import os
import shutil
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from tests.serve.browser import CHROMIUM, DRIVER, click, page_session, upload, wait_reports  # noqa: E402

pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="chromium and chromedriver not installed")


def test_page_upload_report_bars_heatmaps(tiny_run, xrays, tmp_path):
    with page_session(tiny_run) as (wd, port):
        wd.cmd("POST", "/url", {"url": f"http://127.0.0.1:{port}/"})
        files = [xrays["cardio"], xrays["effusion"]]
        wd.cmd("POST", f"/element/{wd.find('#files')}/value", {"text": "\n".join(str(p) for p in files)})
        assert wd.js("return document.querySelectorAll('#file-list select.view').length") == 2
        wd.cmd("POST", f"/element/{wd.find('#submit')}/click", {})
        deadline = time.monotonic() + 60
        while wd.js("return document.body.dataset.state || ''") != "done":
            status = wd.js("return document.getElementById('status').textContent")
            assert "Error" not in status, status
            assert time.monotonic() < deadline, f"no report after 60 s; status: {status!r}"
            time.sleep(0.2)
        page_report = wd.cmd("GET", f"/element/{wd.find('#report')}/text")
        bars = wd.js("return document.querySelectorAll('#findings .bar').length")
        heatmaps = wd.js("return Array.from(document.querySelectorAll('#heatmap-list img'))"
                         ".filter(i => i.complete && i.naturalWidth === 256 + 44).length")  # film + colour bar
        model_name = wd.js("return document.getElementById('model-name').textContent")
        png = base64.b64decode(wd.cmd("GET", "/screenshot"))
        shot = tmp_path / "page.png"
        shot.write_bytes(png)
        keep = os.environ.get("CXREPORT_SCREENSHOT_DIR")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(keep) / "serve_page.png")
        # A file that is not an image: the page shows the server's message instead of a report.
        bad = tmp_path / "notes.png"
        bad.write_text("not an image")
        wd.cmd("POST", "/url", {"url": f"http://127.0.0.1:{port}/"})  # a fresh page: file inputs append
        wd.cmd("POST", f"/element/{wd.find('#files')}/value", {"text": str(bad)})
        wd.cmd("POST", f"/element/{wd.find('#submit')}/click", {})
        deadline = time.monotonic() + 30
        while "Error" not in (error := wd.js("return document.getElementById('status').textContent")):
            assert time.monotonic() < deadline, error
            time.sleep(0.2)
        api = httpx.post(f"http://127.0.0.1:{port}/v1/reports", timeout=60,
                         files=[("images", (p.name, p.read_bytes(), "image/png")) for p in files]).json()
    assert page_report == api["report"] and page_report.strip()
    judged = sum(f["assessed"] for f in api["findings"].values())  # no bar for a finding it does not assess
    assert bars == judged >= 2 and heatmaps >= 2 and model_name == "Model: run."
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert error.startswith("Error 400:") and "not a readable image" in error


def test_page_edit_a_finding_and_the_report_follows(tiny_run, xrays):
    with page_session(tiny_run) as (wd, port):
        wd.cmd("POST", "/url", {"url": f"http://127.0.0.1:{port}/"})
        wd.cmd("POST", f"/element/{wd.find('#files')}/value", {"text": str(xrays["cardio"])})
        wd.cmd("POST", f"/element/{wd.find('#submit')}/click", {})
        wait_reports(wd, 1)
        before = wd.cmd("GET", f"/element/{wd.find('#report')}/text")
        assert wd.js("return document.querySelectorAll('#findings select.state').length") == 14
        # The radiologist says: pneumothorax present, no cardiomegaly.
        for finding, state in (("Pneumothorax", "positive"), ("Cardiomegaly", "negative")):
            n = wd.js("return Number(document.body.dataset.reports)")
            option = wd.find(f'select.state[data-finding="{finding}"] option[value="{state}"]')
            wd.cmd("POST", f"/element/{option}/click", {})
            wait_reports(wd, n + 1)
        after = wd.cmd("GET", f"/element/{wd.find('#report')}/text")
        marked = wd.js("return Array.from(document.querySelectorAll('#findings .name.user'))"
                       ".map(e => e.textContent)")
        plan_note = wd.js("return document.getElementById('heatmap-plan').dataset.plan")
        chosen = wd.js("return document.querySelector('select.state[data-finding=\"Pneumothorax\"]').value")
        api = httpx.post(f"http://127.0.0.1:{port}/v1/reports", timeout=60,
                         files=[("images", (xrays["cardio"].name, xrays["cardio"].read_bytes(), "image/png"))],
                         data={"findings": '{"Pneumothorax": "positive", "Cardiomegaly": "negative"}'}).json()
    assert after != before and "pneumothorax" in after.lower() and after == api["report"]
    # The model's own call stays beside the user's, and the heatmaps say they follow the edited plan.
    own = {k: api["findings"][k]["model_state"].replace("_", " ") for k in ("Cardiomegaly", "Pneumothorax")}
    assert chosen == "positive" and plan_note == "edited"
    assert sorted(marked) == [f"Cardiomegaly set by you · model: {own['Cardiomegaly']}",
                              f"● Pneumothorax set by you · model: {own['Pneumothorax']}"]


def test_page_reads_a_refused_image_when_asked(gated, tmp_path):
    """A refusal names the upload and says how to read it anyway; the checkbox does, with warnings."""
    import matplotlib
    import numpy as np
    from PIL import Image

    photo = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("L")
    grey = tmp_path / "hopper_grey.png"
    Image.fromarray(np.asarray(photo)).save(grey)
    with page_session(Path(gated.info.path)) as (wd, port):
        upload(wd, port, [grey])
        click(wd, "#submit")
        deadline = time.monotonic() + 60
        while "Error" not in (error := wd.js("return document.getElementById('status').textContent")):
            assert time.monotonic() < deadline, error
            time.sleep(0.2)
        click(wd, "details summary")
        click(wd, "#skip-gate")
        click(wd, "#submit")
        wait_reports(wd, 1)
        warnings = wd.js("return document.getElementById('warnings').textContent")
        report = wd.js("return document.getElementById('report').textContent")
    assert error.startswith("Error 422: images[0] ('hopper_grey.png'): does not look like a chest radiograph")
    assert "read even if the input check refuses it" in error
    assert report and "the input check was skipped" in warnings and "would have been refused" in warnings


# Every host name but the loopback fails to resolve: a page that needs a CDN stays blank.
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]


def test_docs_render_offline(tiny_run, tmp_path):
    with page_session(tiny_run, OFFLINE) as (wd, port):
        wd.cmd("POST", "/url", {"url": f"http://127.0.0.1:{port}/docs"})
        deadline = time.monotonic() + 30
        while (ops := wd.js("return document.querySelectorAll('.opblock').length")) < 3:
            assert time.monotonic() < deadline, "Swagger UI did not render /docs within 30 s"
            time.sleep(0.2)
        title = wd.js("return document.querySelector('.swagger-ui .info .title').textContent")
        schemas = wd.js("return document.querySelector('section.models').innerText")
        keep = os.environ.get("CXREPORT_SCREENSHOT_DIR")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            Path(keep, "docs_offline.png").write_bytes(base64.b64decode(wd.cmd("GET", "/screenshot")))
    assert ops >= 3 and "cxreport" in title
    assert all(name in schemas for name in ("Report", "Models", "Health")), schemas

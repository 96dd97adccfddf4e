"""The web page in headless Chromium: upload a study, read the report, see bars and heatmaps.

Drives chromedriver over its W3C WebDriver HTTP API with httpx (no Selenium needed). Skips where
Chromium or chromedriver is not installed (Debian: apt-get install chromium chromium-driver).
Set CXREPORT_SCREENSHOT_DIR to keep the screenshot.
"""

import base64
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from tests.serve.server_process import free_port, start_server, stop_server  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1500"]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"

pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="chromium and chromedriver not installed")


class WebDriver:
    """The few WebDriver calls this test needs."""

    def __init__(self, port: int, profile: str, extra_args=()):
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        caps = {"browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM, "args": FLAGS + [f"--user-data-dir={profile}", *extra_args]}}
        self.sid = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})["sessionId"]

    def _call(self, method, path, body=None):
        resp = self.http.request(method, path, json=body)
        data = resp.json()
        if resp.status_code != 200:
            raise AssertionError(f"webdriver {method} {path}: {data}")
        return data["value"]

    def cmd(self, method, path, body=None):
        return self._call(method, f"/session/{self.sid}{path}", body)

    def find(self, css):
        return self.cmd("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def js(self, script, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def quit(self):
        try:
            self.cmd("DELETE", "")
        finally:
            self.http.close()


def wait_for_driver(port: int, proc) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("chromedriver exited")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/status", timeout=1).json()["value"]["ready"]:
                return
        except (httpx.HTTPError, ValueError, KeyError):
            time.sleep(0.2)
    raise AssertionError("chromedriver did not start")


@contextmanager
def page_session(model, extra_args=()):
    """A served model and a headless Chromium driven over WebDriver; both stopped afterwards."""
    port, driver_port = free_port(), free_port()
    server = start_server(model, port)
    driver_proc = subprocess.Popen([DRIVER, f"--port={driver_port}"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
    profile = tempfile.mkdtemp(prefix="cxr-chromium-")
    wd = None
    try:
        wait_for_driver(driver_port, driver_proc)
        wd = WebDriver(driver_port, profile, extra_args)
        yield wd, port
    finally:
        if wd is not None:
            wd.quit()
        driver_proc.terminate()
        driver_proc.wait(timeout=20)
        stop_server(server)
        shutil.rmtree(profile, ignore_errors=True)


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
    assert bars == 14 and heatmaps >= 2 and model_name == "Model: run."
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert error.startswith("Error 400:") and "not a readable image" in error


def _wait_reports(wd, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (wd.js("return document.body.dataset.state || ''") == "done"
               and wd.js("return Number(document.body.dataset.reports || 0)") >= n):
        status = wd.js("return document.getElementById('status').textContent")
        assert "Error" not in status, status
        assert time.monotonic() < deadline, f"no report {n} after {timeout} s; status: {status!r}"
        time.sleep(0.2)


def test_page_edit_a_finding_and_the_report_follows(tiny_run, xrays):
    with page_session(tiny_run) as (wd, port):
        wd.cmd("POST", "/url", {"url": f"http://127.0.0.1:{port}/"})
        wd.cmd("POST", f"/element/{wd.find('#files')}/value", {"text": str(xrays["cardio"])})
        wd.cmd("POST", f"/element/{wd.find('#submit')}/click", {})
        _wait_reports(wd, 1)
        before = wd.cmd("GET", f"/element/{wd.find('#report')}/text")
        assert wd.js("return document.querySelectorAll('#findings select.state').length") == 14
        # The radiologist says: pneumothorax present, no cardiomegaly.
        for finding, state in (("Pneumothorax", "positive"), ("Cardiomegaly", "negative")):
            n = wd.js("return Number(document.body.dataset.reports)")
            option = wd.find(f'select.state[data-finding="{finding}"] option[value="{state}"]')
            wd.cmd("POST", f"/element/{option}/click", {})
            _wait_reports(wd, n + 1)
        after = wd.cmd("GET", f"/element/{wd.find('#report')}/text")
        marked = wd.js("return Array.from(document.querySelectorAll('#findings .name.user'))"
                       ".map(e => e.textContent)")
        chosen = wd.js("return document.querySelector('select.state[data-finding=\"Pneumothorax\"]').value")
        api = httpx.post(f"http://127.0.0.1:{port}/v1/reports", timeout=60,
                         files=[("images", (xrays["cardio"].name, xrays["cardio"].read_bytes(), "image/png"))],
                         data={"findings": '{"Pneumothorax": "positive", "Cardiomegaly": "negative"}'}).json()
    assert after != before and "pneumothorax" in after.lower() and after == api["report"]
    assert chosen == "positive" and sorted(marked) == ["Cardiomegaly (set by you)", "● Pneumothorax (set by you)"]


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

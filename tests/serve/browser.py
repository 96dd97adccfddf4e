"""Headless Chromium driven over chromedriver's W3C WebDriver HTTP API with httpx (no Selenium),
beside a `cxreport serve` process: the page tests' shared part. ``CHROMIUM and DRIVER`` say
whether both are installed (Debian: apt-get install chromium chromium-driver)."""

import base64
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.serve.server_process import free_port, start_server, stop_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1500"]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class WebDriver:
    """The few WebDriver calls the page tests need."""

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


def wait_reports(wd, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (wd.js("return document.body.dataset.state || ''") == "done"
               and wd.js("return Number(document.body.dataset.reports || 0)") >= n):
        status = wd.js("return document.getElementById('status').textContent")
        assert "Error" not in status, status
        assert time.monotonic() < deadline, f"no report {n} after {timeout} s; status: {status!r}"
        time.sleep(0.2)


def upload(wd, port: int, files, *, fresh: bool = True) -> None:
    """Open the page (a fresh one: file inputs append) and choose ``files``."""
    if fresh:
        wd.cmd("POST", "/url", {"url": f"http://127.0.0.1:{port}/"})
    wd.cmd("POST", f"/element/{wd.find('#files')}/value", {"text": "\n".join(str(p) for p in files)})


def click(wd, css: str) -> None:
    wd.cmd("POST", f"/element/{wd.find(css)}/click", {})


def set_state(wd, finding: str, state: str) -> None:
    """Choose a finding's state in its selector; the page sends the edited plan at once."""
    n = wd.js("return Number(document.body.dataset.reports || 0)")
    click(wd, f'select.state[data-finding="{finding}"] option[value="{state}"]')
    wait_reports(wd, n + 1)


def report_text(wd) -> str:
    """The report exactly as the page holds it (textContent: no whitespace normalised)."""
    return wd.js("return document.getElementById('report').textContent")


def screenshot(wd, path: Path, whole: bool = True) -> bytes:
    """A PNG of the page; ``whole``: the window grows first until the whole page fits."""
    for _ in range(3 if whole else 0):  # a taller window loses its scroll bar and reflows: measure again
        missing = wd.js("return document.body.scrollHeight + 8 - window.innerHeight")
        if abs(missing) < 16:
            break
        rect = wd.cmd("GET", "/window/rect")
        wd.cmd("POST", "/window/rect", {"width": rect["width"], "height": rect["height"] + int(missing)})
    png = base64.b64decode(wd.cmd("GET", "/screenshot"))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(png)
    return png

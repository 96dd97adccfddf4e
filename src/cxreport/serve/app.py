"""The report service: ``create_app(pipeline, ServeConfig()) -> FastAPI``.

    POST /v1/reports   multipart: images (1..max_views files), views (optional, one per image),
                       beam, max_len, threshold, heatmaps, regions, findings (states the user set),
                       skip_gate -> the structured report JSON (docs/report_schema.md)
    GET  /v1/models    the loaded model       GET /healthz    liveness
    GET  /             the web page           GET /docs       OpenAPI (Swagger UI, served locally)

Safety: the body size is checked from Content-Length and again while streaming, images go through
the same safe loader as training (pixel limit before decoding, truncation = error), every bad
request gets a 4xx JSON ``{"error": ...}``. A full queue answers 503 before the body is read.
Images are decoded in a bounded thread pool, then studies from concurrent requests are run in
micro-batches (serve/batcher.py) in one model thread, so the event loop keeps serving. Logs
carry sizes, status and timings, never image bytes, file names or report text.
"""

from __future__ import annotations

import base64
import hmac
import logging
import os
import re
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from cxreport import __version__
from cxreport.data.images import MAX_PIXELS
from cxreport.errors import InputError, require
from cxreport.models.config import MAX_BEAM
from cxreport.serve.batcher import MicroBatcher
from cxreport.serve.schemas import Health, Models, Report
from cxreport.inference.gate import NotARadiograph
from cxreport.labels import parse_findings

log = logging.getLogger("cxreport.serve")
STATIC = Path(__file__).resolve().parent / "static"
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'")


@dataclass
class ServeConfig:
    api_key: str | None = None  # required on /v1/ when set
    max_upload_mb: float = 20.0  # whole request body
    max_pixels: int = MAX_PIXELS  # per image, checked from the header before decoding
    workers: int = 1  # requests decoded at once (see cxreport.inference.threads for the default policy)
    max_queue: int = 64  # requests in flight before new ones get 503
    max_batch: int = 16  # studies per forward pass; 1 = no batching
    batch_window_ms: float = 10.0  # how long the first study of a batch waits for company

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def read_api_key(env_var: str | None) -> str | None:
    if not env_var:
        return None
    key = os.environ.get(env_var, "")
    if not key.strip():
        raise InputError(f"--api-key-env {env_var}: that environment variable is not set or empty "
                         f"(export {env_var}=<a long random key> first)")
    return key.strip()


def _presented_key(headers) -> str | None:
    key = headers.get("x-api-key")
    auth = headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    return key or None


def _key_ok(expected: str | None, got: str | None) -> bool:
    if expected is None:
        return True
    return got is not None and hmac.compare_digest(got.encode("utf-8"), expected.encode("utf-8"))


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


# Requests that queue for the model; only these count against --max-queue.
QUEUED = {("POST", "/v1/reports")}


class GuardMiddleware:
    """Pure ASGI, before any body is read: API key on /v1/, Content-Length limit, the queue limit
    (503 without reading the body), and a running byte count for bodies that lie about (or omit)
    their length."""

    def __init__(self, app, cfg: ServeConfig, state: dict):
        self.app, self.cfg, self.state = app, cfg, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if scope["path"].startswith("/v1/") and not _key_ok(self.cfg.api_key, _presented_key(headers)):
            log.info("%s %s 401 (no or wrong API key)", scope["method"], scope["path"])
            resp = _error(401, "missing or wrong API key: send it as header 'X-API-Key: KEY' or "
                               "'Authorization: Bearer KEY'", {"WWW-Authenticate": "Bearer"})
            return await resp(scope, receive, send)
        limit = self.cfg.max_bytes
        too_big = (f"request body exceeds the upload limit of {self.cfg.max_upload_mb:g} MB "
                   "(server option --max-upload-mb)")
        try:
            declared = int(headers.get("content-length", "0") or 0)
        except ValueError:
            return await _error(400, "invalid Content-Length header")(scope, receive, send)
        if declared > limit:
            log.info("%s %s 413 (declared %d bytes)", scope["method"], scope["path"], declared)
            return await _error(413, too_big)(scope, receive, send)
        queued = (scope["method"], scope["path"]) in QUEUED
        if queued and self.state["in_flight"] >= self.cfg.max_queue:
            log.warning("%s %s 503 (%d in flight)", scope["method"], scope["path"], self.state["in_flight"])
            resp = _error(503, f"server busy ({self.cfg.max_queue} requests in flight); retry shortly",
                          {"Retry-After": "1"})
            return await resp(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    # FastAPI re-raises HTTPException from body parsing; the handler answers 413.
                    raise HTTPException(413, too_big)
            return msg

        if not queued:
            return await self.app(scope, counted, send)
        self.state["in_flight"] += 1
        try:
            await self.app(scope, counted, send)
        finally:
            self.state["in_flight"] -= 1


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        field = loc[0] if loc else "body"
        if field == "images" and err.get("type") == "missing":
            parts.append("no images: send one or more X-ray files (PNG, JPEG or DICOM) as multipart/form-data "
                         "field 'images'")
        else:
            parts.append(f"field '{'.'.join(loc) or field}': {err.get('msg', 'invalid')}")
    return "; ".join(dict.fromkeys(parts)) or "invalid request"


_UNSAFE = re.compile(r"[^\w .()+-]")


def _upload_label(i: int, filename: str | None) -> str:
    name = _UNSAFE.sub("_", (filename or "").strip())[:60]
    return f"images[{i}] ({name!r})" if name else f"images[{i}]"


def create_app(pipeline, cfg: ServeConfig | None = None) -> FastAPI:
    """The service around one loaded ``cxreport.inference.Pipeline``."""
    cfg = cfg or ServeConfig()
    pipeline.max_pixels = cfg.max_pixels
    batcher = MicroBatcher(pipeline, max_batch=cfg.max_batch, window_ms=cfg.batch_window_ms)

    @asynccontextmanager
    async def lifespan(app):
        yield
        await batcher.close()

    app = FastAPI(title="cxreport", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Chest X-ray report generation. Research software: not for clinical use.")
    state = {"in_flight": 0, "limiter": None}
    app.state.batcher = batcher
    app.add_middleware(GuardMiddleware, cfg=cfg, state=state)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _offline_docs(app)
    # Documents the key in /docs (Authorize button); the middleware enforces it before the body is read.
    api_key_doc = APIKeyHeader(name="X-API-Key", auto_error=False)

    _add_error_handlers(app)
    _add_info_routes(app, pipeline, api_key_doc)
    _add_report_route(app, pipeline, batcher, cfg, state, api_key_doc)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error leaves as the same small JSON body, never a stack trace."""

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        log.info("%s %s 422 (invalid form)", request.method, request.url.path)
        return _error(422, _validation_message(exc))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        log.error("%s %s 500 (%s)", request.method, request.url.path, type(exc).__name__)
        return _error(500, "internal error; the server log has the details")


def _add_info_routes(app: FastAPI, pipeline, api_key_doc) -> None:
    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_CSP,
                                                            "X-Content-Type-Options": "nosniff"})

    @app.get("/healthz", summary="liveness: the model is loaded", responses={200: {"model": Health}})
    async def healthz():
        return {"status": "ok", "model": pipeline.name, "version": __version__}

    @app.get("/v1/models", summary="the loaded model", dependencies=[Depends(api_key_doc)],
             responses={200: {"model": Models}})
    async def models():
        return {"models": [pipeline.describe()], "default": pipeline.name}


def _add_report_route(app: FastAPI, pipeline, batcher, cfg: ServeConfig, state: dict, api_key_doc) -> None:
    import anyio

    @app.post("/v1/reports", summary="a report for one study (1..N views)", dependencies=[Depends(api_key_doc)],
              responses={200: {"model": Report, "description": "the report, findings and (optionally) heatmaps"},
                         400: {"description": "unreadable, empty, truncated or oversized image"},
                         401: {"description": "API key missing or wrong"},
                         413: {"description": "request body over the upload limit"},
                         422: {"description": "form fields missing or invalid, or an image that is not a chest radiograph"},
                         503: {"description": "too many requests in flight; retry"}})
    async def reports(
        images: list[UploadFile] = File(..., description="the study's X-rays: PNG, JPEG or DICOM"),
        views: list[str] | None = Form(None, description="frontal | lateral | unknown per image, in order "
                                                         "(default: first frontal, second lateral)"),
        beam: int | None = Form(None, ge=1, le=MAX_BEAM, description="beam search width (1 = greedy; default: the "
                                                                      "model's own setting)"),
        max_len: int | None = Form(None, ge=1, le=512, description="longest report in tokens"),
        threshold: float | None = Form(None, gt=0, lt=1, description="probability for a positive finding"),
        heatmaps: bool = Form(False, description="return Grad-CAM overlays (PNG, base64) per positive finding"),
        regions: bool = Form(False, description="also return the report split into lung / heart / mediastinal / "
                                                "bone / others (rules region annotator)"),
        findings: str | None = Form(None, description="finding states set by the user, and the report written "
                                                      "from that plan: a JSON object {\"Pleural Effusion\": "
                                                      "\"positive\"} or 'Pleural Effusion=positive,Pneumonia="
                                                      "negative' (positive, negative, uncertain, not_assessed)"),
        skip_gate: bool = Form(False, description="read images the input check would refuse anyway; the result's "
                                                  "warnings say so and input_check is \"skipped\""),
        coverage_line: bool = Form(True, description="end the report with a line naming the findings the model "
                                                     "did not assess (they are listed in not_assessed either way)"),
    ):
        if state["limiter"] is None:
            state["limiter"] = anyio.CapacityLimiter(max(1, cfg.workers))
        t0 = time.perf_counter()
        datas = [await f.read() for f in images]
        labels = [_upload_label(i, f.filename) for i, f in enumerate(images)]
        views = [v for v in views] if views else None
        if views is not None and len(views) == 1 and len(images) > 1 and not views[0].strip():
            views = None  # an empty optional field sent by a plain HTML form
        try:
            plan = parse_findings(findings, pipeline.labels, where="field 'findings'", allow_file=False)
            prepared = await anyio.to_thread.run_sync(partial(pipeline.prepare, datas, views, names=labels,
                                                              skip_gate=skip_gate), limiter=state["limiter"])
            prepared.findings = plan
            result = (await batcher.submit(prepared, beam=beam, max_len=max_len, threshold=threshold,
                                           heatmaps=heatmaps, regions=regions, coverage_line=coverage_line)).to_dict()
        except NotARadiograph as exc:
            log.info("POST /v1/reports 422 (not a chest radiograph, %d image(s))", len(datas))
            raise HTTPException(422, str(exc)) from None
        except InputError as exc:
            log.info("POST /v1/reports 400 (%s, %d image(s), %d bytes)", type(exc).__name__, len(datas),
                     sum(map(len, datas)))
            raise HTTPException(400, str(exc)) from None
        if "heatmaps" in result:
            result["heatmaps"] = await anyio.to_thread.run_sync(_encode_heatmaps, result["heatmaps"],
                                                                limiter=state["limiter"])
        log.info("POST /v1/reports 200 (%d image(s), %d bytes, %.0f ms)", len(datas), sum(map(len, datas)),
                 (time.perf_counter() - t0) * 1000)
        return result


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the copy fastapi-offline ships (PyPI), so /docs works without internet."""
    from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html

    assets = Path(require("fastapi_offline", "serve", "the offline API docs at /docs").__file__).parent / "static"
    app.mount("/docs-static", StaticFiles(directory=assets), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request):
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(openapi_url=f"{root}{app.openapi_url}", title="cxreport API",
                                   swagger_js_url=f"{root}/docs-static/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}/docs-static/swagger-ui.css",
                                   swagger_favicon_url=f"{root}/docs-static/favicon.png",
                                   oauth2_redirect_url=app.swagger_ui_oauth2_redirect_url)

    @app.get(app.swagger_ui_oauth2_redirect_url, include_in_schema=False)
    async def oauth2_redirect():
        return get_swagger_ui_oauth2_redirect_html()


def _encode_heatmaps(maps: list[dict]) -> list[dict]:
    from cxreport.inference.heatmaps import to_png

    return [{k: v for k, v in h.items() if k != "overlay"}
            | {"png_base64": base64.b64encode(to_png(h["overlay"])).decode("ascii")} for h in maps]

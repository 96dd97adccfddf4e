"""The report service: ``create_app(pipeline, ServeConfig()) -> FastAPI``.

    POST /v1/reports   multipart: images (1..max_views files), views (optional, one per image),
                       beam, max_len, threshold, heatmaps, findings (states the user set) -> the
                       structured report JSON
    GET  /v1/models    the loaded model       GET /healthz    liveness
    GET  /             the web page           GET /docs       OpenAPI (Swagger UI)

Safety: the body size is checked from Content-Length and again while streaming, images go through
the same safe loader as training (pixel limit before decoding, truncation = error), every bad
request gets a 4xx JSON ``{"error": ...}``. Model work runs in a bounded thread pool so the event
loop keeps serving; a full queue answers 503. Logs carry sizes, status and timings, never image
bytes, file names or report text.
"""

from __future__ import annotations

import base64
import hmac
import logging
import os
import re
import time
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
from cxreport.errors import InputError
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
    workers: int = 2  # requests decoded at once (the model itself runs one study at a time)
    max_queue: int = 64  # requests in flight before new ones get 503

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


class GuardMiddleware:
    """Pure ASGI, before any body is read: API key on /v1/, Content-Length limit, and a running
    byte count for bodies that lie about (or omit) their length."""

    def __init__(self, app, cfg: ServeConfig):
        self.app, self.cfg = app, cfg

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

        await self.app(scope, counted, send)


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
    import anyio

    cfg = cfg or ServeConfig()
    pipeline.max_pixels = cfg.max_pixels
    app = FastAPI(title="cxreport", version=__version__,
                  description="Chest X-ray report generation. Research software: not for clinical use.")
    app.add_middleware(GuardMiddleware, cfg=cfg)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    state = {"in_flight": 0, "limiter": None}
    # Documents the key in /docs (Authorize button); the middleware enforces it before the body is read.
    api_key_doc = APIKeyHeader(name="X-API-Key", auto_error=False)

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

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_CSP,
                                                            "X-Content-Type-Options": "nosniff"})

    @app.get("/healthz", summary="liveness: the model is loaded")
    async def healthz():
        return {"status": "ok", "model": pipeline.name, "version": __version__}

    @app.get("/v1/models", summary="the loaded model", dependencies=[Depends(api_key_doc)])
    async def models():
        return {"models": [pipeline.describe()], "default": pipeline.name}

    @app.post("/v1/reports", summary="a report for one study (1..N views)", dependencies=[Depends(api_key_doc)],
              responses={400: {"description": "unreadable, empty, truncated or oversized image"},
                         401: {"description": "API key missing or wrong"},
                         413: {"description": "request body over the upload limit"},
                         422: {"description": "form fields missing or invalid"},
                         503: {"description": "too many requests in flight; retry"}})
    async def reports(
        images: list[UploadFile] = File(..., description="the study's X-rays: PNG, JPEG or DICOM"),
        views: list[str] | None = Form(None, description="frontal | lateral | unknown per image, in order "
                                                         "(default: first frontal, second lateral)"),
        beam: int | None = Form(None, ge=1, le=8, description="beam search width (1 = greedy; default: the "
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
    ):
        if state["in_flight"] >= cfg.max_queue:
            log.warning("POST /v1/reports 503 (%d in flight)", state["in_flight"])
            raise HTTPException(503, f"server busy ({cfg.max_queue} requests in flight); retry shortly",
                                headers={"Retry-After": "1"})
        if state["limiter"] is None:
            state["limiter"] = anyio.CapacityLimiter(max(1, cfg.workers))
        state["in_flight"] += 1
        t0 = time.perf_counter()
        try:
            datas = [await f.read() for f in images]
            labels = [_upload_label(i, f.filename) for i, f in enumerate(images)]
            views = [v for v in views] if views else None
            if views is not None and len(views) == 1 and len(images) > 1 and not views[0].strip():
                views = None  # an empty optional field sent by a plain HTML form
            try:
                plan = parse_findings(findings, pipeline.labels, where="field 'findings'", allow_file=False)
                work = partial(_run, pipeline, datas, views, labels,
                               dict(beam=beam, max_len=max_len, threshold=threshold, heatmaps=heatmaps,
                                    regions=regions, findings=[plan]))
                result = await anyio.to_thread.run_sync(work, limiter=state["limiter"])
            except InputError as exc:
                log.info("POST /v1/reports 400 (%s, %d image(s), %d bytes)", type(exc).__name__, len(datas),
                         sum(map(len, datas)))
                raise HTTPException(400, str(exc)) from None
        finally:
            state["in_flight"] -= 1
        log.info("POST /v1/reports 200 (%d image(s), %d bytes, %.0f ms)", len(datas), sum(map(len, datas)),
                 (time.perf_counter() - t0) * 1000)
        return result

    return app


def _run(pipeline, datas: list[bytes], views, labels: list[str], opts: dict) -> dict:
    """Worker thread: decode + letterbox outside the model lock, then the model under it."""
    prepared = pipeline.prepare(datas, views, names=labels)
    result = pipeline.run([prepared], **opts)[0]
    for v, label in zip(result["views"], labels):
        v["source"] = label
    if "heatmaps" in result:
        from cxreport.inference.heatmaps import to_png

        result["heatmaps"] = [{k: v for k, v in h.items() if k != "overlay"}
                              | {"png_base64": base64.b64encode(to_png(h["overlay"])).decode("ascii")}
                              for h in result["heatmaps"]]
    return result

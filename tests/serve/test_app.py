"""The HTTP service through FastAPI's TestClient: endpoints, bad uploads, API key, quiet logs."""

import base64
import io
import logging
import struct
import zlib

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
from fastapi.testclient import TestClient  # noqa: E402

from cxreport.serve.app import ServeConfig, create_app, read_api_key  # noqa: E402


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but carries no pixels (a decompression-bomb probe)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + \
        chunk(b"IEND", b"")


@pytest.fixture
def client(pipeline):
    with TestClient(create_app(pipeline, ServeConfig(max_upload_mb=1, max_pixels=4_000_000))) as c:
        yield c


def _files(*items):
    return [("images", (name, data, "application/octet-stream")) for name, data in items]


def test_endpoints(client, pipeline, xrays):
    assert client.get("/healthz").json() == {"status": "ok", "model": "run", "version": "0.1.0"}
    model = client.get("/v1/models").json()["models"][0]
    assert model["labels"] == pipeline.labels and model["max_views"] == 2 and model["name"] == "run"
    page = client.get("/")
    assert page.status_code == 200 and "<form" in page.text and "default-src 'self'" in page.headers[
        "content-security-policy"]
    assert "cdn" not in page.text.lower()
    assert client.get("/static/app.js").status_code == 200 and client.get("/static/style.css").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/v1/reports" in spec["paths"]


def test_docs_work_offline_and_declare_the_200_responses(client, xrays):
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs-static/swagger-ui-bundle.js" in docs.text
    # Every script, style and icon the page loads comes from this server.
    assert "cdn" not in docs.text.lower() and "https://" not in docs.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"):
        assert client.get(f"/docs-static/{asset}").status_code == 200
    spec = client.get("/openapi.json").json()
    ok = {path: spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
          for path, method in (("/v1/reports", "post"), ("/v1/models", "get"), ("/healthz", "get"))}
    assert ok == {"/v1/reports": {"$ref": "#/components/schemas/Report"},
                  "/v1/models": {"$ref": "#/components/schemas/Models"},
                  "/healthz": {"$ref": "#/components/schemas/Health"}}
    assert {"report", "findings", "views", "model"} <= set(spec["components"]["schemas"]["Report"]["required"])
    # The declared schema describes what the service really returns.
    from cxreport.serve.schemas import Health, Models, Report

    resp = client.post("/v1/reports", files=_files(("a.png", xrays["cardio"].read_bytes())),
                       data={"heatmaps": "true"})
    Report.model_validate(resp.json(), strict=True)
    Models.model_validate(client.get("/v1/models").json())
    Health.model_validate(client.get("/healthz").json())


def test_one_beam_limit_for_api_and_pipeline(client, pipeline, xrays):
    from cxreport.errors import InputError
    from cxreport.models.config import MAX_BEAM

    png = xrays["cardio"].read_bytes()
    assert client.post("/v1/reports", files=_files(("a.png", png)), data={"beam": str(MAX_BEAM)}).status_code == 200
    too_wide = client.post("/v1/reports", files=_files(("a.png", png)), data={"beam": str(MAX_BEAM + 1)})
    assert too_wide.status_code == 422 and "field 'beam'" in too_wide.json()["error"]
    with pytest.raises(InputError, match=f"1 \\(greedy\\) .. {MAX_BEAM}"):
        pipeline.generate([xrays["cardio"]], beam=MAX_BEAM + 1)


def test_report_one_and_two_views_with_heatmaps(client, pipeline, xrays):
    one = client.post("/v1/reports", files=_files(("a.png", xrays["cardio"].read_bytes())))
    assert one.status_code == 200
    r = one.json()
    assert r["report"] == pipeline.generate([xrays["cardio"]])["report"]
    assert set(r["findings"]) == set(pipeline.labels) and r["views"][0]["view"] == "frontal"
    assert "heatmaps" not in r

    two = client.post("/v1/reports", files=_files(("l.jpg", xrays["both"].read_bytes()),
                                                  ("f.png", xrays["effusion"].read_bytes())),
                      data={"views": ["lateral", "frontal"], "heatmaps": "true", "beam": "2", "threshold": "0.4"})
    assert two.status_code == 200, two.text
    r = two.json()
    assert [v["view"] for v in r["views"]] == ["lateral", "frontal"] and r["threshold"] == 0.4
    assert r["heatmaps"]
    img = Image.open(io.BytesIO(base64.b64decode(r["heatmaps"][0]["png_base64"])))
    assert img.size == (256 + 44, 256) and img.mode == "RGB"  # film + colour bar


def test_report_with_regions(client, xrays):
    """Issue 17, problem 9: ``regions=true`` adds the report split into regions."""
    from cxreport.text.coverage import without_coverage
    from cxreport.text.regions import split_regions

    r = client.post("/v1/reports", files=_files(("a.png", xrays["cardio"].read_bytes())), data={"regions": "true"}).json()
    assert r["regions"] == split_regions(without_coverage(r["report"]))  # the coverage line is about the model


def test_bad_uploads_get_4xx_with_a_message(client, xrays):
    png = xrays["cardio"].read_bytes()
    cases = {
        "not an image": (dict(files=_files(("a.png", b"hello, I am text" * 10))), 400, "not a readable image"),
        "truncated PNG": (dict(files=_files(("cut.png", png[: len(png) // 2]))), 400, "corrupt or truncated"),
        "30000x30000 header": (dict(files=_files(("bomb.png", png_header_only(30000, 30000)))), 400, "bomb"),
        "over --max-pixels": (dict(files=_files(("big.png", png_header_only(3000, 3000)))), 400, "exceeds the limit"),
        "empty file": (dict(files=_files(("e.png", b""))), 400, "is empty"),
        "empty body": (dict(content=b""), 422, "no images"),
        "wrong field name": (dict(files=[("file", ("a.png", png, "image/png"))]), 422, "field 'images'"),
        "JSON body": (dict(json={"images": "a.png"}), 422, "no images"),
        "bad view": (dict(files=_files(("a.png", png)), data={"views": "oblique"}), 400, "view 'oblique'"),
        "bad beam": (dict(files=_files(("a.png", png)), data={"beam": "99"}), 422, "field 'beam'"),
        "over --max-upload-mb": (dict(files=_files(("a.png", b"\0" * (2 << 20)))), 413, "upload limit of 1 MB"),
    }
    for name, (kwargs, status, message) in cases.items():
        resp = client.post("/v1/reports", **kwargs)
        assert resp.status_code == status, (name, resp.text)
        assert message in resp.json()["error"], (name, resp.json())


def test_streamed_body_without_length_is_cut_off(client):
    def chunks():
        for _ in range(40):
            yield b"x" * 65536  # 2.5 MB, no Content-Length

    boundary = "b0undary"
    resp = client.post("/v1/reports", content=chunks(),
                       headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert resp.status_code == 413 and "upload limit" in resp.json()["error"]


def test_api_key(pipeline, xrays, monkeypatch):
    monkeypatch.setenv("CXR_KEY", "s3cret-key")
    app = create_app(pipeline, ServeConfig(api_key=read_api_key("CXR_KEY")))
    files = _files(("a.png", xrays["cardio"].read_bytes()))
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200 and c.get("/").status_code == 200
        for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-key"}):
            resp = c.post("/v1/reports", files=files, headers=headers)
            assert resp.status_code == 401 and "API key" in resp.json()["error"]
        assert c.get("/v1/models").status_code == 401
        assert c.post("/v1/reports", files=files, headers={"X-API-Key": "s3cret-key"}).status_code == 200
        assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
    monkeypatch.delenv("CXR_KEY")
    from cxreport.errors import InputError

    with pytest.raises(InputError, match="CXR_KEY"):
        read_api_key("CXR_KEY")
    assert read_api_key(None) is None


def test_busy_server_answers_503(pipeline, xrays):
    with TestClient(create_app(pipeline, ServeConfig(max_queue=0))) as c:
        resp = c.post("/v1/reports", files=_files(("a.png", xrays["cardio"].read_bytes())))
        assert resp.status_code == 503 and resp.headers["retry-after"] == "1" and "busy" in resp.json()["error"]


def test_logs_hold_no_report_text_file_names_or_pixels(client, pipeline, xrays, caplog):
    png = xrays["cardio"].read_bytes()
    with caplog.at_level(logging.DEBUG):
        ok = client.post("/v1/reports", files=_files(("Doe_John_1957.png", png)), data={"heatmaps": "true"})
        client.post("/v1/reports", files=_files(("Roe_Jane.png", png[:300])))
    report = ok.json()["report"]
    text = caplog.text
    assert "POST /v1/reports 200" in text and "POST /v1/reports 400" in text
    assert report not in text and "Doe_John" not in text and "Roe_Jane" not in text
    assert ok.json()["heatmaps"][0]["png_base64"][:40] not in text
    for record in caplog.records:
        assert "heart" not in record.getMessage().lower()


def test_dicom_upload_and_blank_views_from_a_plain_form(client, xrays, tmp_path):
    pytest.importorskip("pydicom")
    from tests.fixtures.dicom import write_dicom

    gray = __import__("numpy").asarray(Image.open(xrays["cardio"]))
    buf = io.BytesIO()
    write_dicom(buf, gray, modality=None)
    resp = client.post("/v1/reports", files=_files(("study.dcm", buf.getvalue()), ("l.jpg", xrays["both"].read_bytes())),
                       data={"views": ["", ""]})
    assert resp.status_code == 200, resp.text
    assert [v["view"] for v in resp.json()["views"]] == ["frontal", "lateral"]
    assert resp.json()["views"][0]["height"] == gray.shape[0]


def test_findings_override_rewrites_the_report(client, pipeline, xrays):
    from cxreport.text.faithful import check

    files = _files(("a.png", xrays["cardio"].read_bytes()))
    plain = client.post("/v1/reports", files=files).json()
    edited = client.post("/v1/reports", files=files,
                         data={"findings": '{"Pneumothorax": "positive", "Cardiomegaly": "negative"}'})
    assert edited.status_code == 200
    r = edited.json()
    assert r["findings"]["Pneumothorax"]["set_by"] == "user" and r["findings"]["Edema"]["set_by"] == "model"
    assert r["report"] != plain["report"] and "pneumothorax" in r["report"].lower()
    assert check(r["report"], {k: f["state"] for k, f in r["findings"].items()})["agrees"]
    assert r == {**r, "report": pipeline.generate([xrays["cardio"]], findings="Pneumothorax=positive,"
                                                  "Cardiomegaly=negative")["report"]}
    bad = client.post("/v1/reports", files=files, data={"findings": "Pneumothorax=sure"})
    assert bad.status_code == 400 and "field 'findings'" in bad.json()["error"]
    path = client.post("/v1/reports", files=files, data={"findings": "/etc/plan.json"})
    assert path.status_code == 400  # never read as a server-side file

"""The input gate end to end on the tiny model: non-radiographs are refused (CLI/API error, HTTP 422,
batch per-study error), rotated films are turned upright with a warning, views come from the
caller, DICOM tags or the image check, 3+ images pick one frontal and one lateral, and a study of
laterals only gets no findings from a frontal-only head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.fixtures.gate_films import films as _films
from tests.fixtures.gate_films import lateral as _lateral
from tests.fixtures.gate_films import non_radiographs as _non_radiographs
from tests.fixtures.gate_films import png as _png


def test_non_radiographs_are_refused_with_a_reason(gated, tmp_path):
    from cxreport.inference.gate import NotARadiograph

    bad = _non_radiographs(tmp_path)
    reasons = {"photo": "colour picture", "pattern": "colour picture", "noise": "noise", "black": "blank",
               "grey": "blank"}
    for kind, path in bad.items():
        with pytest.raises(NotARadiograph, match=reasons[kind]) as err:
            gated.generate([path])
        assert Path(path).name in str(err.value) and "chest radiographs only" in str(err.value)
    assert "noise" in reasons["noise"]
    out = gated.generate_batch([[bad["photo"]], [_png(tmp_path / "film.png", _films(1)[0])]], on_error="record")
    assert "colour picture" in out[0]["error"] and "report" in out[1]


def test_learned_score_refuses_a_grey_photo_the_pixel_checks_let_through(gated, tmp_path):
    import matplotlib

    from cxreport.data.images import letterbox
    from cxreport.inference.gate import NotARadiograph

    photo = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("L")
    grey = _png(tmp_path / "hopper_grey.png", np.asarray(photo))
    gated.gate.check_pixels(letterbox(np.asarray(photo), 256), "hopper_grey.png")  # passes the cheap checks
    with pytest.raises(NotARadiograph, match="hopper_grey.png: does not look like a chest radiograph"):
        gated.generate([grey])
    ok = gated.generate([_png(tmp_path / "film.png", _films(1)[0])])
    assert ok["views"][0]["ood_distance"] <= gated.gate.cfg.ood_threshold
    text = Image.new("L", (256, 256), 235)
    d = ImageDraw.Draw(text)
    for y in range(8, 250, 14):
        d.text((6, y), "Patient report: chest radiograph, findings normal.", fill=20)
    with pytest.raises(NotARadiograph, match="text or line art"):
        gated.generate([_png(tmp_path / "doc.png", np.asarray(text))])


def test_rotated_film_is_turned_upright_with_a_warning(gated, tmp_path):
    film = _films(3)[2]
    upright = gated.generate([_png(tmp_path / "up.png", film)])
    for k in (1, 2, 3):
        r = gated.generate([_png(tmp_path / f"rot{k}.png", np.rot90(film, k))])
        assert r["views"][0]["turned_upright_degrees"] == 90 * k
        assert any("turned upright" in w for w in r["warnings"])
        for name, f in r["findings"].items():
            assert f["probability"] == pytest.approx(upright["findings"][name]["probability"], abs=1e-3)
    assert upright["warnings"] == [] and upright["views"][0]["turned_upright_degrees"] == 0


def test_views_from_caller_dicom_and_image_check(gated, tmp_path):
    film, lat = _films(1)[0], _lateral()
    a, b = _png(tmp_path / "a_lateral.png", lat), _png(tmp_path / "b_frontal.png", film)
    r = gated.generate([a, b])  # untagged, lateral first: the image check sorts them out
    assert [(v["view"], v["view_from"]) for v in r["views"]] == [("lateral", "image check"), ("frontal", "image check")]
    given = gated.generate([a, b], views=["lateral", "frontal"])
    assert [v["view_from"] for v in given["views"]] == ["given", "given"]
    three = gated.generate([b, a, _png(tmp_path / "c.png", _films(2)[1])])
    assert [v["used"] for v in three["views"]] == [True, True, False]
    assert any("3 images: read b_frontal.png (frontal) and a_lateral.png (lateral)" in w for w in three["warnings"])
    gated.model.cfg.views.head_views = "frontal"  # as the bundled head: trained on frontal films only
    try:
        lateral_only = gated.generate([a])
    finally:
        gated.model.cfg.views.head_views = "all"
    assert {f["state"] for f in lateral_only["findings"].values()} == {"not_assessed"}
    assert all(f["probability"] is None for f in lateral_only["findings"].values())


def test_dicom_view_position_decides_the_view(gated, tmp_path):
    pytest.importorskip("pydicom")
    from tests.fixtures.dicom import write_dicom

    # a (mis)tagged film: the tag wins over the image check
    write_dicom(tmp_path / "f.dcm", _films(1)[0].astype(np.uint8), view_position="LL")
    r = gated.generate([tmp_path / "f.dcm"])
    assert (r["views"][0]["view"], r["views"][0]["view_from"]) == ("lateral", "dicom")


def test_http_422_for_a_photo(gated):
    pytest.importorskip("fastapi")
    import matplotlib
    from fastapi.testclient import TestClient

    from cxreport.serve.app import ServeConfig, create_app

    photo = (Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").read_bytes()
    client = TestClient(create_app(gated, ServeConfig()))
    resp = client.post("/v1/reports", files=[("images", ("hopper.jpg", photo, "image/jpeg"))])
    assert resp.status_code == 422 and "colour picture" in resp.json()["error"]


def test_ood_groups_take_the_nearest_group_each_with_its_own_limit(tmp_path):
    """Two groups of training features far apart: a point near either is in, a point between them
    is out, and each group's limit scales its own distances; the groups survive save/load."""
    from cxreport.inference.gate import Gate, GateConfig, GateParams, fit_ood

    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (400, 16)).astype(np.float32)
    b = rng.normal(0, 1, (400, 16)).astype(np.float32) * 0.5 + 20
    fa, fb = fit_ood(a, 4), fit_ood(b, 4)
    stack = [np.stack([x, y]) for x, y in zip(fa, fb)]
    params = GateParams(GateConfig(ood_threshold=1.0, ood_groups=["adult", "pediatric"]), np.zeros((256, 4)),
                        np.zeros(4), *stack, ood_scale=np.array([2.0, 4.0]))
    gate = Gate(params)
    da, db = gate.ood_distance(a[:50]), gate.ood_distance(b[:50])
    assert np.median(da) < 1 and np.median(db) < 1
    assert gate.ood_distance(np.full((1, 16), 10.0))[0] > 10
    single = Gate(GateParams(GateConfig(), np.zeros((256, 4)), np.zeros(4), *fa))
    assert np.allclose(single.ood_distance(a[:5]) / 2.0, gate.ood_distance(a[:5]), rtol=1e-4)
    params.save(tmp_path)
    again = GateParams.load(tmp_path)
    assert again.config.ood_groups == ["adult", "pediatric"]
    assert np.allclose(Gate(again).ood_distance(b[:50]), db)


def test_a_gate_written_before_groups_still_loads(tmp_path):
    """gate.json with ood_resid_var inside and 1-D arrays (one group) loads as one group, limit 1."""
    import json

    from safetensors.numpy import save_file

    from cxreport.inference.gate import Gate, GateParams, fit_ood

    x = np.random.default_rng(0).normal(0, 1, (100, 8)).astype(np.float32)
    mean, basis, var, resid = fit_ood(x, 3)
    save_file({"orient_w": np.zeros((256, 4), np.float32), "orient_b": np.zeros(4, np.float32), "ood_mean": mean,
               "ood_basis": basis, "ood_var": var}, str(tmp_path / "gate.safetensors"))
    (tmp_path / "gate.json").write_text(json.dumps({"ood_threshold": 2.0, "ood_resid_var": resid}))
    params = GateParams.load(tmp_path)
    assert params.ood_mean.shape == (1, 8) and params.ood_scale.tolist() == [1.0]
    assert Gate(params).ood_distance(x[:10]).shape == (10,)


def test_l2_ood_features_are_unit_vectors_and_unknown_modes_fail():
    from cxreport.inference.gate import ood_input

    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    assert np.allclose(ood_input(x, "l2")[0], [0.6, 0.8]) and np.isfinite(ood_input(x, "l2")).all()
    assert ood_input(x, "raw") is not None
    with pytest.raises(ValueError, match="raw or l2"):
        ood_input(x, "cosine")


def test_a_film_known_to_be_lateral_is_never_turned(gated, tmp_path, monkeypatch):
    """The orientation check learned from frontal films: a lateral (given or second by position)
    keeps the orientation it came in, while the frontal beside it is still turned upright."""
    film = _films(3)[2]
    front = _png(tmp_path / "front.png", np.rot90(film, 2))
    side = _png(tmp_path / "side.png", _lateral())
    monkeypatch.setattr(gated.gate, "orientation", lambda gray: (2, 0.99))  # "upside down", for both
    r = gated.generate([front, side], views=["frontal", "lateral"])
    assert [v["turned_upright_degrees"] for v in r["views"]] == [180, 0]
    monkeypatch.setattr(gated.gate.cfg, "view_check", False)  # as bundled: views by position
    r = gated.generate([front, side])
    assert [(v["view_from"], v["turned_upright_degrees"]) for v in r["views"]] == [("position", 180), ("position", 0)]

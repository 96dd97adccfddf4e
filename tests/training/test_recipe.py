"""The bundled model's recipe as commands, end to end on tiny drawn films: fit-head (populations,
floors), fit-gate, bundle, score-head, then a site's own model with `cxreport adapt`; every model
folder written loads and writes reports, and nothing is written into the package's weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxreport.cli import main
from tests.fixtures.synthetic_cxr import draw

pytestmark = pytest.mark.slow


def _nih_style(root: Path, n: int, seed: int) -> Path:
    """An NIH ChestX-ray14-layout folder of drawn adult films (Cardiomegaly = wide heart,
    Effusion = fluid level), one film per patient."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    findings = "Atelectasis,Cardiomegaly,Effusion,Infiltration,Mass,Nodule,Pneumonia,Pneumothorax,Consolidation," \
               "Edema,Emphysema,Fibrosis,Pleural_Thickening,Hernia"
    labels, meta = [f"image,patient_id,view,{findings}"], ["image,chexnet_split"]
    for i in range(n):
        c, e = int(rng.integers(0, 2)), int(rng.integers(0, 2))
        name = f"{i:05d}_000.png"
        Image.fromarray(draw(c, e, 64, rng)).save(root / "images" / name)
        row = {"Cardiomegaly": c, "Effusion": e}
        labels.append(f"{name},{i},PA," + ",".join(str(row.get(f, 0)) for f in findings.split(",")))
        meta.append(f"{name},{'test' if i % 5 == 0 else 'val' if i % 5 == 1 else 'train'}")
    (root / "labels.csv").write_text("\n".join(labels) + "\n")
    (root / "metadata.csv").write_text("\n".join(meta) + "\n")
    return root


def _kermany_style(root: Path, n: int, seed: int, dark: float) -> Path:
    """A Kermany-layout folder of drawn films of another look (darker, pneumonia = a bright lung patch)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    labels, meta = ["image,patient_id,view,NORMAL,PNEUMONIA,BACTERIA,VIRUS"], ["image,kaggle_split"]
    for i in range(n):
        pneu = int(rng.integers(0, 2))
        img = draw(0, 0, 64, rng).astype(np.float32) * dark
        if pneu:
            img[22:40, 10:26] = 210
        name = f"{'test' if i % 5 == 0 else 'train'}_{i}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "images" / name)
        labels.append(f"{name},P{i},AP,{1 - pneu},{pneu},{pneu},0")
        meta.append(f"{name},{'test' if i % 5 == 0 else 'train'}")
    (root / "labels.csv").write_text("\n".join(labels) + "\n")
    (root / "metadata.csv").write_text("\n".join(meta) + "\n")
    return root


def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, tiny_run):
    root = tmp_path_factory.mktemp("recipe")
    adult = _nih_style(root / "adult", 150, 0)
    kids = _kermany_style(root / "kids", 150, 1, 0.55)
    for src, folder in (("nih-cxr14", adult), ("kermany", kids)):
        assert main(["data", "prepare", "--source", src, "--root", str(folder), "--out", str(root / "cache" / src),
                     "--workers", "1"]) == 0
    head_cfg = _write(root / "head.json", {
        "out_dir": str(root / "head"), "base": str(tiny_run / "best"), "features": str(root / "features"),
        "sources": [{"cache": str(root / "cache/nih-cxr14"), "domain": "nih", "population": "adult"},
                    {"cache": str(root / "cache/kermany"), "domain": "kermany", "population": "pediatric",
                     "labels": ["Pneumonia", "No Finding"]}],
        "model_overrides": {"projector": {"name": "pool"}, "findings": {"head": "pooled"}},
        "fit": {"epochs": 10, "batch_size": 32, "lr": 0.01, "folds": 3}, "epoch_grid": [2, 10], "min_positives": 10,
        "floors": {"min_stated": 2}})
    assert main(["fit-head", "--config", str(head_cfg), "--quiet"]) == 0
    gate_cfg = _write(root / "gate.json", {
        "features": str(root / "features"),
        "sources": [{"name": "nih", "cache": str(root / "cache/nih-cxr14"), "group": "adult"},
                    {"name": "kermany", "cache": str(root / "cache/kermany"), "group": "pediatric"}],
        "gate": {"ood_components": 8, "ood_features": "l2"}, "orientation_films_per_source": 60, "ood_folds": 3,
        "ood_margin": 2.0})
    assert main(["fit-gate", "--config", str(gate_cfg), "--model", str(root / "head/best"), "--quiet"]) == 0
    assert main(["bundle", "--decoder", str(tiny_run / "best"), "--head", str(root / "head/best"),
                 "--out", str(root / "bundle"), "--config-note", "head=head.json"]) == 0
    return root


def test_recipe_writes_a_model_with_populations_that_loads_and_reports(recipe):
    from cxreport import load_model

    cfg = json.loads((recipe / "bundle/config.json").read_text())
    pops = cfg["model"]["findings"]["populations"]
    assert set(pops) == {"adult", "pediatric"}
    # The pediatric films label only Pneumonia and No Finding: nothing else is assessed there.
    assert {n for n, c in pops["pediatric"]["train_positives"].items() if c >= 10} <= {"Pneumonia", "No Finding"}
    assert "/" not in json.dumps(cfg["metrics"].get("commit") or "")
    m = load_model(recipe / "bundle")
    adult = m.generate([str(recipe / "adult/images/00002_000.png")])
    kid = m.generate([str(recipe / "kids/images/train_2.png")])
    assert adult["population"] == "adult" and kid["population"] == "pediatric"
    assert adult["report"].strip() and kid["report"].strip()
    assert kid["findings"]["Cardiomegaly"]["state"] == "not_assessed"


def test_score_head_reads_test_splits_only_when_asked(recipe, capsys):
    args = ["score-head", "--model", str(recipe / "bundle"), "--cache", str(recipe / "cache/nih-cxr14"),
            "--features", str(recipe / "features"), "--quiet"]
    assert main(args + ["--split", "test"]) == 2  # test needs --allow-test
    assert main(args + ["--split", "test", "--allow-test", "--out", str(recipe / "scores")]) == 0
    table = json.loads((recipe / "scores/scores_test.json").read_text())["model"]
    nih = next(iter(table.values()))
    assert nih["films"] == 30 and "normal_reports" in nih
    assert "| finding | AUROC |" in capsys.readouterr().out


def test_recipe_never_writes_into_the_package_weights(recipe):
    from cxreport.inference.pipeline import PACKAGE_WEIGHTS

    target = PACKAGE_WEIGHTS / "default"
    rc = main(["bundle", "--decoder", str(recipe / "bundle"), "--head", str(recipe / "head/best"), "--out", str(target)])
    assert rc == 2  # refused without --into-package


def test_adapt_adds_a_site_population_and_keeps_the_base_populations(recipe):
    from cxreport import load_model

    site = _kermany_style(recipe / "site", 120, 7, 0.8)
    out = recipe / "adapted"
    assert main(["adapt", str(recipe / "bundle"), "--source", "kermany", "--root", str(site), "--out", str(out),
                 "--population", "site", "--max-films", "80", "--min-positives", "10", "--set", "fit.folds=3",
                 "--set", "floors.min_stated=2", "--quiet"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["findings"]["populations"]["site"]["own_head"] is True
    assert cfg["metrics"]["adapted"]["films"] <= 80
    assert "## Adapted: population `site`" in (out / "MODEL_CARD.md").read_text()
    base, adapted = load_model(recipe / "bundle"), load_model(out)
    film = str(recipe / "adult/images/00002_000.png")
    a, b = base.generate([film]), adapted.generate([film])
    if b["population"] == "adult":  # the base population reads exactly as the base reads it
        assert a["findings"] == b["findings"] and a["report"] == b["report"]
    kid = adapted.generate([str(next((site / "images").glob("test_*.png")))])
    assert kid["population"] == "site" and kid["report"].strip()

"""`cxreport adapt`: a site's own model from any cxreport model and the site's labelled films.

The site's films become a new population of the model: a gate group of their own (the base's
groups are kept, so the films the base reads are still read), and a finding head, calibration,
uncertain band and precision floors of their own, fitted on the base's frozen encoder features
with the default head's rules (patient-wise cross-validation picks the epochs; the head starts
from the base's when the base has a probe head, so 0 epochs - the base head, recalibrated - is a
candidate too). Films the gate places in the base's populations are read exactly as the base
reads them. Findings the site has fewer than ``min_positives`` labelled positives for are not
assessed on its films. Test splits are never read.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxreport.errors import InputError
from cxreport.models.config import DEFAULT_MIN_POSITIVES
from cxreport.training.floors import FloorConfig
from cxreport.training.head_fit import HeadFitConfig


@dataclass
class AdaptConfig:
    base: str = "default"
    out: str = ""
    source: str = ""  # a data source name (`cxreport data sources`) ...
    root: str = ""  # ... and the site's dataset folder
    cache: str = ""  # or a prepared cache instead of source + root
    options: dict = field(default_factory=dict)  # the source's options
    population: str = "site"  # the new population's (and gate group's) name
    max_films: int = 0  # at most this many films (whole patients, seeded draw); 0: all train+val films
    seed: int = 0
    work: str = ""  # prepared cache and features (default: OUT.work)
    min_positives: int = DEFAULT_MIN_POSITIVES
    # {finding: prevalence} the site's probabilities are calibrated to and its floors set at; a
    # finding left out uses its share among the site's films (right for consecutive films, not for
    # a case-control selection such as Kermany's 74% pneumonia).
    prevalence: dict = field(default_factory=dict)
    fit: HeadFitConfig = field(default_factory=HeadFitConfig)
    # Cross-validation picks the epochs; a few films make few steps an epoch, so the grid reaches far
    # (with a grid ending at 10, every draw of 50..300 Kermany films chose 10, its out-of-fold AUROC
    # still rising).
    epoch_grid: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 5, 10, 20, 40, 80])
    floors: FloorConfig = field(default_factory=FloorConfig)
    gate_quantile: float = 0.999


def validate(cfg: AdaptConfig) -> None:
    if not cfg.out:
        raise InputError("adapt: --out is required (the adapted model's folder)")
    if bool(cfg.cache) == bool(cfg.source and cfg.root):
        raise InputError("adapt: give either --source and --root (the site's data) or --cache (a prepared cache)")
    if cfg.cache and not (Path(cfg.cache) / "meta.json").is_file():
        raise InputError(f"adapt: {cfg.cache} is not a prepared cache; run `cxreport data prepare` or pass --source/--root")
    if not cfg.population.replace("_", "").replace("-", "").isalnum():
        raise InputError(f"adapt: --population {cfg.population!r}: use letters, digits, - and _")


def draw_studies(studies: list, n: int, seed: int) -> list:
    """Train+val studies with an image, at most ``n`` of them, whole patients at a time (seeded)."""
    pool = [s for s in studies if s.split in ("train", "val") and s.image_paths]
    if n <= 0 or n >= len(pool):
        return pool
    by_patient: dict = {}
    for s in pool:
        by_patient.setdefault(s.patient_id or s.study_id, []).append(s)
    rng = np.random.default_rng(seed)
    keep: list = []
    for p in rng.permutation(sorted(by_patient)):
        if len(keep) + len(by_patient[p]) <= n:
            keep += by_patient[p]
        if len(keep) == n:
            break
    return sorted(keep, key=lambda s: s.study_id)


def site_cache(cfg: AdaptConfig, work: Path) -> str:
    if cfg.cache:
        return cfg.cache
    from cxreport.data.cache import prepare_cache

    out = work / "cache"
    prepare_cache(cfg.source, cfg.root, out, workers=2, force=True,
                  select=lambda studies: draw_studies(studies, cfg.max_films, cfg.seed), **cfg.options)
    return str(out)


def _probe_factory(base, mcfg, enc_dim):
    """A fresh probe, or the base's own image side when it is a probe (warm start)."""
    from cxreport.models.probe import PooledProbe

    warm = base.cfg.projector.name == "pool" and base.cfg.findings.head == "pooled"
    state = {k: v for k, v in base.state_dict().items() if k.startswith(("projector.", "view_embed.", "finding_head."))}

    def make():
        probe = PooledProbe(mcfg, enc_dim)
        if warm:
            probe.load_state_dict(state)
        return probe

    return make, warm


def _site_films(cfg: AdaptConfig, base, work: Path, progress: bool):
    """(cache, pooled features of all its films, the drawn train/val frontal films as ``Films``)."""
    from cxreport.data.cache import Cache
    from cxreport.training.feature_cache import feature_path, pooled_features
    from cxreport.training.films import Films, draw_patients, frontal_rows

    cache = Cache(site_cache(cfg, work))
    feats = pooled_features(base.encoder, cache, feature_path(work / "features", cache, base),
                            base.cfg.preprocess.image_size, progress=progress)
    idx, y, pats = frontal_rows(cache, ("train", "val"), None, list(base.labels))
    films = Films(feats[idx], y, np.zeros(len(idx), dtype=int), pats, idx)
    if cfg.max_films and len(films) > cfg.max_films:  # a prepared cache given whole: draw from it
        films = draw_patients(films, cfg.max_films, cfg.seed)
    if not len(films):
        raise InputError(f"adapt: {cache.path} has no train/val frontal films with labels")
    return cache, feats, films


def _fit_site_head(cfg: AdaptConfig, base, films, progress: bool):
    """The site's probe and its ``findings.populations`` entry, epochs chosen by patient-wise CV;
    returns (probe, entry, {epochs: CV macro AUROC}, chosen epochs, warm start?, out-of-fold logits, the
    model config the probe was built for)."""
    from cxreport.training.head_fit import fit_head, macro_auroc, out_of_fold
    from cxreport.training.head_recipe import fit_populations, positives_by, shell_model

    labels = list(base.labels)
    every = np.ones(len(films), bool)
    pos, neg = positives_by(films, labels, every), positives_by(films, labels, every, 0)
    cols = [j for j, n in enumerate(labels) if min(pos[n], neg[n]) >= max(cfg.min_positives, 1)]
    if not cols:
        raise InputError(f"adapt: no finding has {cfg.min_positives} labelled positive and negative films among the "
                         f"{len(films)} drawn; bring more labelled films (or lower --min-positives, not below what "
                         "you can trust)")
    print(f"adapt: {len(films)} films of {len(set(films.patients))} patients; assessed on them: "
          f"{', '.join(labels[j] for j in cols)}", flush=True)
    mcfg = shell_model(base, {}).cfg
    make_probe, warm = _probe_factory(base, mcfg, base.encoder.out_dim)
    grid = tuple(sorted(set(e for e in cfg.epoch_grid if warm or e > 0)))
    fit = HeadFitConfig(**{**cfg.fit.__dict__, "epochs": max(grid)})
    names = [cfg.population]
    oof = out_of_fold(make_probe, films.x, films.y, films.dom, films.patients, fit, names, grid, progress=progress)
    cv = {e: macro_auroc(z, films.y, cols) for e, z in oof.items()}
    best = max(grid, key=lambda e: (np.nan_to_num(cv[e], nan=-1), -e))
    entry = fit_populations(oof[best], films, np.array(names * len(films)), labels, 1, cfg.min_positives,
                            cfg.floors, {cfg.population: cfg.prevalence})[cfg.population]
    fit.epochs = best
    probe, _ = fit_head(make_probe, films.x, films.y, films.dom, fit, names)
    entry["own_head"] = True
    return probe, entry, cv, best, warm, oof[best], mcfg


def _site_gate(cfg: AdaptConfig, base_gate, cache, feats):
    """The base's gate with the site's group added (fitted on all its train/val films)."""
    from cxreport.inference.gate import GateConfig
    from cxreport.training.films import gate_films
    from cxreport.training.gate_fit import fit_group, with_groups

    gidx, _, gpats = gate_films(cache, ("train", "val"), False)
    gc = base_gate.config if base_gate is not None else GateConfig(ood_features="l2")
    # A PCA model needs several films per axis: a small site gets fewer axes than the base's groups.
    small = dataclasses.replace(gc, ood_components=min(gc.ood_components, max(2, len(gidx) // 4)))
    group = fit_group(feats[gidx], gpats, small, cfg.gate_quantile)
    if base_gate is None:
        print("adapt: the base has no input gate; the adapted model's gate knows only the site's films", flush=True)
    return with_groups(base_gate, {cfg.population: group}, gc), group


def run_adapt(cfg: AdaptConfig, progress: bool = True) -> dict:
    """Fit and write the adapted model folder; returns the report (also in its config.json)."""
    from cxreport.checkpoint import load_checkpoint, save_checkpoint, write_lean_graphs
    from cxreport.inference.gate import GateParams
    from cxreport.inference.pipeline import resolve_model_path
    from cxreport.models.report_model import build_model
    from cxreport.training.bundle import guard_output, portable

    t0 = time.perf_counter()
    validate(cfg)
    out = guard_output(cfg.out, False)
    base_path = resolve_model_path(cfg.base)
    base, tok, bcfg = load_checkpoint(base_path)
    cache, feats, films = _site_films(cfg, base, Path(cfg.work or f"{out}.work"), progress)
    probe, entry, cv, best, warm, oof, mcfg = _fit_site_head(cfg, base, films, progress)
    labels = list(base.labels)
    fc = mcfg.findings
    fc.populations = {**{k: v for k, v in fc.populations.items() if k != cfg.population}, cfg.population: entry}
    model = build_model(mcfg, pretrained=False)
    state = {k: v for k, v in base.state_dict().items() if not k.startswith(f"population_heads.{cfg.population}.")}
    state.update({f"population_heads.{cfg.population}.{k}": v for k, v in probe.state_dict().items()})
    model.load_state_dict(state, strict=True)
    gate, group = _site_gate(cfg, GateParams.load(base_path), cache, feats)
    assessed = [n for n in labels if n in entry["calibration"]]
    report = portable({"base": str(cfg.base), "base_sha256": _sha(base_path), "population": cfg.population,
                       "source": cfg.source or "cache", "films": len(films), "patients": len(set(films.patients)),
                       "max_films": cfg.max_films, "seed": cfg.seed, "epochs": best, "warm_start": warm,
                       "cv_macro_auroc": {str(e): v for e, v in cv.items()}, "train_positives": entry["train_positives"],
                       "assessed": assessed, "not_assessed": [n for n in labels if n not in assessed],
                       "prevalence": dict(entry["prior"]),
                       "out_of_fold": entry["out_of_fold"], "out_of_fold_auroc": entry["out_of_fold_auroc"],
                       "out_of_fold_ece": _oof_ece(oof, films.y, entry, labels),
                       "gate_group": {"films": int(group[5]), "limit": round(float(group[4]), 4)}})
    metrics = {"adapted": report, "base_metrics": bcfg.get("metrics")}
    saved = save_checkpoint(out, model, tokenizer=tok, step=int(bcfg.get("step") or 0), metrics=portable(metrics),
                            half=True)
    gate.save(saved)
    write_lean_graphs(saved)  # a site's model runs without PyTorch too (lean/, ~0.1 MB)
    card = (base_path / "MODEL_CARD.md").read_text(encoding="utf-8") if (base_path / "MODEL_CARD.md").is_file() else ""
    (saved / "MODEL_CARD.md").write_text(card + adapted_card(report), encoding="utf-8")
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({k: report[k] for k in ("population", "films", "epochs", "assessed", "out_of_fold_auroc",
                                              "out_of_fold_ece", "gate_group", "seconds")}, indent=1))
    return report


def _sha(path: Path) -> str:
    from cxreport.inference.pipeline import weights_sha256

    return weights_sha256(path)


def _oof_ece(z, y, entry, labels) -> dict:
    from cxreport.metrics.calibration import expected_calibration_error
    from cxreport.training.head_fit import logit

    out = {}
    for j, n in enumerate(labels):
        c = entry["calibration"].get(n)
        keep = ~np.isnan(y[:, j])
        if c is None or not keep.any():
            continue
        p = 1 / (1 + np.exp(-(c["scale"] * z[keep, j] + c["offset"] + logit(entry["prior"][n]))))
        out[n] = round(expected_calibration_error(p, y[keep, j]), 4)
    return out


def adapted_card(r: dict) -> str:
    """The model card's "adapted" section."""
    rows = ["", "", f"## Adapted: population `{r['population']}` ({r['films']} films, {r['patients']} patients)", "",
            f"Adapted with `cxreport adapt` from `{r['base']}` (weights sha256 `{r['base_sha256'][:16]}...`): the "
            f"site's films are a population of their own, with their own input-gate group ({r['gate_group']['films']} "
            f"films), finding head ({r['epochs']} epochs, chosen by patient-wise cross-validation"
            f"{', started from the base head' if r['warm_start'] else ''}), calibration, uncertain band and precision "
            "floors. Films the gate places in the base's populations are read as the base reads them.", "",
            "| finding | training positives | out-of-fold AUROC | out-of-fold ECE | precision floor | stated positive (out of fold) | their precision at the site's prevalence |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for n in r["assessed"]:
        f = r["out_of_fold"].get(n, {})
        auc, ece = r["out_of_fold_auroc"].get(n), r["out_of_fold_ece"].get(n)
        rows.append(f"| {n} | {r['train_positives'][n]} | {'n/a' if auc is None else f'{auc:.3f}'} | "
                    f"{'n/a' if ece is None else f'{ece:.3f}'} | {f.get('floor', 'n/a')} | {f.get('stated', 'n/a')} | "
                    f"{f.get('precision_at_prevalence') if f.get('precision_at_prevalence') is not None else 'never stated'} |")
    rows += ["", f"Not assessed on these films (fewer than the minimum of labelled positives): "
             f"{', '.join(r['not_assessed']) or 'none'}.", ""]
    return "\n".join(rows)

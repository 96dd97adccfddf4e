"""`cxreport fit-head`: the finding head, its calibration, uncertain band and precision floors,
fitted on frozen encoder features of labelled films (the recipe of the bundled model).

Train+val films of every source are pooled; patient-wise K-fold cross-validation over them picks
the number of epochs (out-of-fold macro AUROC of the assessed findings on ``select_domain``'s
films). Each population of films (a source's ``population``: the input gate's group, e.g. adult
NIH films and pediatric Kermany films) then gets its own calibration, uncertain thresholds and
precision-floor thresholds from its films' out-of-fold predictions (``training.floors``), and
assesses only the findings it has ``min_positives`` labelled positives for. The final head is
fitted on all of train+val. Test splits are never read here (``cxreport score-head`` reads them,
once).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxreport.errors import InputError
from cxreport.models.config import DEFAULT_MIN_POSITIVES
from cxreport.training.floors import FloorConfig, auroc_or_none, fit_population
from cxreport.training.head_fit import HeadFitConfig, domain_priors, logit, macro_auroc


@dataclass
class HeadSource:
    cache: str
    domain: str  # its name in the figures
    population: str = ""  # the gate group its films belong to (default: ``domain``)
    labels: list | None = None  # the findings this source labels (others are masked), None: all


@dataclass
class HeadRecipeConfig:
    out_dir: str = "runs/finding-head"
    base: str = "default"  # the model whose encoder (frozen) and text side the head joins
    features: str = "cache/features"
    sources: list[HeadSource] = field(default_factory=list)
    model_overrides: dict = field(default_factory=dict)
    fit: HeadFitConfig = field(default_factory=HeadFitConfig)
    epoch_grid: list[int] = field(default_factory=lambda: [1, 2, 3, 5, 10])
    select_domain: str = ""  # default: the first source's
    min_positives: int = DEFAULT_MIN_POSITIVES
    # {population: {"prevalence": {finding: p}}}: the prevalence its probabilities are calibrated
    # to and its floors are set at; findings left out use the population's own train+val films.
    populations: dict = field(default_factory=dict)
    floors: FloorConfig = field(default_factory=FloorConfig)
    notes: dict = field(default_factory=dict)


def validate(cfg: HeadRecipeConfig) -> None:
    """Cheap checks before any feature is computed."""
    if not cfg.sources:
        raise InputError("fit-head config: sources is empty; list at least one prepared cache")
    for s in cfg.sources:
        if not (Path(s.cache) / "meta.json").is_file():
            raise InputError(f"fit-head config: {s.cache} is not a prepared cache; run `cxreport data prepare` first")
    domains = [s.domain for s in cfg.sources]
    if cfg.select_domain and cfg.select_domain not in domains:
        raise InputError(f"fit-head config: select_domain {cfg.select_domain!r} is not one of {domains}")
    if not cfg.epoch_grid or min(cfg.epoch_grid) < 0:
        raise InputError("fit-head config: epoch_grid needs epochs >= 0")


def population_of(src: HeadSource) -> str:
    return src.population or src.domain


def shell_model(base, overrides: dict):
    """A model with ``base``'s config under ``overrides`` and ``base``'s encoder weights."""
    from cxreport.config import from_dict, to_dict
    from cxreport.models.config import ModelConfig
    from cxreport.models.registry import _deep_merge
    from cxreport.models.report_model import build_model

    mcfg = from_dict(ModelConfig, _deep_merge(to_dict(base.cfg), overrides))
    shell = build_model(mcfg, pretrained=False)
    shell.load_state_dict({k: v for k, v in base.state_dict().items() if k.startswith("encoder.")}, strict=False)
    return shell


def positives_by(films, labels, mask, value: int = 1) -> dict:
    """Labelled films per finding with ``value`` (1: positives, 0: negatives) among ``mask``."""
    return {n: int(np.nansum(films.y[mask, j] == value)) for j, n in enumerate(labels)}


def fit_populations(oof_z, films, pops: np.ndarray, labels, n_domains: int, min_positives: int,
                    floors: FloorConfig, prevalences: dict | None = None) -> dict:
    """{population: findings.populations entry} from out-of-fold logits; ``prevalences``
    ({population: {finding: p}}) replaces what a population's own films measure."""
    priors = domain_priors(films.y, films.dom, n_domains)
    offset = logit(priors[films.dom])
    out = {}
    for pop in dict.fromkeys(pops.tolist()):
        m = pops == pop
        pos, neg = positives_by(films, labels, m), positives_by(films, labels, m, 0)
        # as every trained model: enough labelled films of both kinds (models.finding_states.assessed)
        ok = {n: min(pos[n], neg[n]) >= max(min_positives, 1) for n in labels}
        measured = {n: float(np.nanmean(films.y[m, j])) for j, n in enumerate(labels) if ok[n]}
        given = (prevalences or {}).get(pop, {})
        prevalence = {**measured, **{k: v for k, v in given.items() if ok.get(k)}}
        entry = fit_population(oof_z[m], films.y[m], offset[m], labels, ok, prevalence, floors)
        entry["train_positives"], entry["train_negatives"] = pos, neg
        entry["films"] = int(m.sum())
        entry["out_of_fold_auroc"] = {n: auroc_or_none(oof_z[m, j], films.y[m, j]) for j, n in enumerate(labels) if ok[n]}
        out[pop] = entry
    return out


def run_head_recipe(cfg: HeadRecipeConfig, progress: bool = True) -> dict:
    """Fit, calibrate and save ``OUT/best`` (a full checkpoint: the base with the new image
    side), ``OUT/cv_report.json`` and ``OUT/oof.npz``; returns the report."""
    from cxreport.checkpoint import load_checkpoint, save_checkpoint
    from cxreport.config import to_dict
    from cxreport.fsio import atomic_write_json
    from cxreport.inference.pipeline import resolve_model_path
    from cxreport.models.probe import PooledProbe
    from cxreport.models.report_model import build_model
    from cxreport.training.films import labelled_films
    from cxreport.training.head_fit import fit_head, out_of_fold

    validate(cfg)
    out = Path(cfg.out_dir)
    base_path = resolve_model_path(cfg.base)
    base, tok, _ = load_checkpoint(base_path)
    shell = shell_model(base, cfg.model_overrides)
    mcfg, labels = shell.cfg, list(shell.labels)
    films = labelled_films(cfg.sources, shell, cfg.features, ("train", "val"), labels, progress)
    names = [s.domain for s in cfg.sources]
    pops = np.array([population_of(cfg.sources[d]) for d in films.dom])
    sel = names.index(cfg.select_domain or names[0])
    every = np.ones(len(films), bool)
    positives, negatives = positives_by(films, labels, every), positives_by(films, labels, every, 0)
    assessed = {n: min(positives[n], negatives[n]) >= max(cfg.min_positives, 1) for n in labels}
    cols = [j for j, n in enumerate(labels) if assessed[n]]
    print(f"fit-head: {len(films)} films ({', '.join(f'{n} {int((films.dom == d).sum())}' for d, n in enumerate(names))}); "
          f"assessed: {', '.join(n for n in labels if assessed[n]) or 'none'}", flush=True)

    def make_probe():
        return PooledProbe(mcfg, shell.encoder.out_dim)

    grid = tuple(sorted(set(cfg.epoch_grid)))
    fit = HeadFitConfig(**{**to_dict(cfg.fit), "epochs": max(grid)})
    oof = out_of_fold(make_probe, films.x, films.y, films.dom, films.patients, fit, names, grid, progress=progress)
    cv = {e: {"select_macro_auroc": macro_auroc(z[films.dom == sel], films.y[films.dom == sel], cols),
              **{f"{names[d]}_macro_auroc": macro_auroc(z[films.dom == d], films.y[films.dom == d], cols)
                 for d in range(len(names))}} for e, z in oof.items()}
    best = max(grid, key=lambda e: (np.nan_to_num(cv[e]["select_macro_auroc"], nan=-1), -e))
    populations = fit_populations(oof[best], films, pops, labels, len(names), cfg.min_positives, cfg.floors,
                                  {p: e.get("prevalence", {}) for p, e in cfg.populations.items()})
    fit.epochs = best
    probe, _ = fit_head(make_probe, films.x, films.y, films.dom, fit, names)

    default = population_of(cfg.sources[sel])
    fc = mcfg.findings
    d = populations[default]
    fc.calibration, fc.uncertain_thresholds, fc.prior = d["calibration"], d["uncertain_thresholds"], d["prior"]
    fc.thresholds = {n: d["thresholds"].get(n, 1.01) for n in labels}
    fc.train_positives, fc.train_negatives = d["train_positives"], d["train_negatives"]
    fc.min_positives = int(cfg.min_positives)
    fc.populations = populations
    model = build_model(mcfg, pretrained=False)
    state = {k: v for k, v in base.state_dict().items() if not k.startswith(IMAGE_SIDE)}
    state.update(probe.state_dict())
    model.load_state_dict(state, strict=True)
    report = {"config": to_dict(cfg), "base": str(cfg.base), "films": {n: int((films.dom == i).sum()) for i, n in enumerate(names)},
              "train_positives": positives, "assessed": [n for n in labels if assessed[n]],
              "cv": {str(e): v for e, v in cv.items()}, "epochs": best, "default_population": default,
              "populations": {p: {k: v for k, v in e.items() if k not in ("train_positives", "train_negatives")}
                              for p, e in populations.items()}}
    save_checkpoint(out / "best", model, tokenizer=tok, step=best, metrics={"finding_head": _strict(report)})
    atomic_write_json(out / "cv_report.json", _strict(report))
    np.savez(out / "oof.npz", z=oof[best], y=films.y, dom=films.dom, pops=pops)
    print(json.dumps({"epochs": best, "cv": report["cv"],
                      "populations": {p: e["out_of_fold"] for p, e in populations.items()}}, indent=1))
    return report


IMAGE_SIDE = ("projector.", "view_embed.", "finding_head.", "population_heads.")


def _strict(obj):
    """NaN -> None, so the report is strict JSON."""
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return None
    return obj

"""`cxreport fit-gate`: the input gate's learned parts, fitted beside a checkpoint, and measured.

Out-of-distribution score: PCA-Mahalanobis of pooled encoder features (scaled to unit length), one
model per group of sources (``group``: adult NIH + IU films, pediatric Kermany films), fitted on the
group's train+val films. Each group's limit is a quantile (``ood_quantile``) of its films'
OUT-OF-FOLD distances (patient-wise folds: a film is scored by a model that never saw its
patient), so the limit is set on as many held-out films as there are films. The group a film is
nearest to is its population (``findings.populations``). Orientation: self-supervised on rotated
training films; inverted greys: ``training.gate_polarity``. View: mirror-symmetry threshold from
validation frontal films and the training laterals (IU); kept only when it tells those laterals
from frontal films.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxreport.data.cache import Cache
from cxreport.errors import InputError
from cxreport.inference.gate import Gate, GateConfig, GateParams, fit_ood, fit_orientation, mirror_symmetry, ood_input
from cxreport.training.films import gate_films


@dataclass
class GateSource:
    name: str
    cache: str
    group: str = ""  # default: the source's name


@dataclass
class GateRecipeConfig:
    features: str = "cache/features"
    sources: list[GateSource] = field(default_factory=list)
    gate: dict = field(default_factory=dict)  # GateConfig fields (thumb, ood_components, ood_features, ...)
    orientation_films_per_source: int = 1500
    polarity_films_per_source: int = 1500  # 0: no inverted-greys check
    polarity_sources: list = field(default_factory=list)  # the sources it is fitted on (default: all)
    ood_quantile: float = 0.999
    ood_margin: float = 1.0
    ood_folds: int = 5
    view_frontal_quantile: float = 0.005
    notes: dict = field(default_factory=dict)


def validate(cfg: GateRecipeConfig) -> GateConfig:
    if not cfg.sources:
        raise InputError("fit-gate config: sources is empty")
    for s in cfg.sources:
        if not (Path(s.cache) / "meta.json").is_file():
            raise InputError(f"fit-gate config: {s.cache} is not a prepared cache; run `cxreport data prepare` first")
    if not 0.5 < cfg.ood_quantile <= 1.0:
        raise InputError(f"fit-gate config: ood_quantile {cfg.ood_quantile}: choose 0.5 .. 1")
    try:
        return GateConfig(**cfg.gate)
    except TypeError as exc:
        raise InputError(f"fit-gate config: gate: {exc}") from None


def fit_group(x: np.ndarray, patients: list[str], gc: GateConfig, quantile: float, margin: float = 1.0,
              folds: int = 5) -> tuple:
    """(mean, basis, var, resid, limit, films) of one group's OOD model from its films' pooled
    features ``x``: the limit is the ``quantile`` of patient-wise out-of-fold distances."""
    from cxreport.training.head_fit import patient_folds

    x = ood_input(x, gc.ood_features)
    fold = patient_folds(patients, folds)
    oof = np.zeros(len(x), dtype=np.float32)
    for f in np.unique(fold):
        held = fold == f
        one = GateParams(config=dataclasses.replace(gc, ood_features="raw"), orient_w=np.zeros(1), orient_b=np.zeros(1),
                         **dict(zip(("ood_mean", "ood_basis", "ood_var", "ood_resid_var"),
                                    fit_ood(x[~held], gc.ood_components))))
        oof[held] = Gate(one).ood_distance(x[held])
    limit = float(np.quantile(oof, quantile) * margin)
    return (*fit_ood(x, gc.ood_components), limit, len(x))


def with_groups(params: GateParams | None, groups: dict, gc: GateConfig) -> GateParams:
    """``params`` (or a new gate, orientation untrained) with ``groups`` ({name: fit_group(...)})
    added; a group of the same name is replaced."""
    old = []
    if params is not None:
        names = list(params.config.ood_groups) or [f"group{i}" for i in range(len(params.ood_mean))]
        old = [(n, (params.ood_mean[i], params.ood_basis[i], params.ood_var[i], params.ood_resid_var[i],
                    params.ood_scale[i])) for i, n in enumerate(names) if n not in groups]
    rows = old + [(n, g[:5]) for n, g in groups.items()]
    # Groups are stacked with as many axes as the largest; a group with fewer gets zero axes,
    # which add nothing to its distance (the residual off its own axes is unchanged).
    k = max(r[1][1].shape[0] for r in rows)
    cfg = dataclasses.replace(params.config if params is not None else gc, ood_groups=[n for n, _ in rows],
                              ood_threshold=1.0)
    pad = lambda a, fill: np.concatenate([a, np.full((k - len(a),) + a.shape[1:], fill, a.dtype)])  # noqa: E731
    return GateParams(config=cfg, orient_w=params.orient_w if params is not None else np.zeros((gc.thumb ** 2, 4)),
                      orient_b=params.orient_b if params is not None else np.zeros(4),
                      invert_w=params.invert_w if params is not None else None,
                      invert_b=params.invert_b if params is not None else None,
                      ood_mean=np.stack([r[1][0] for r in rows]), ood_basis=np.stack([pad(r[1][1], 0.0) for r in rows]),
                      ood_var=np.stack([pad(r[1][2], 1.0) for r in rows]), ood_resid_var=np.array([r[1][3] for r in rows]),
                      ood_scale=np.array([r[1][4] for r in rows]))


def fit_gate(cfg: GateRecipeConfig, model_dir, progress: bool = True) -> GateParams:
    """Fit every group, the orientation check and the view check; save the gate into ``model_dir``."""
    from tqdm import tqdm

    from cxreport.checkpoint import load_checkpoint
    from cxreport.training.feature_cache import feature_path, pooled_features

    gc = validate(cfg)
    model, _, _ = load_checkpoint(model_dir)
    caches = {s.name: Cache(s.cache) for s in cfg.sources}
    feats = {n: pooled_features(model.encoder, c, feature_path(cfg.features, c, model), model.cfg.preprocess.image_size,
                                progress=progress) for n, c in caches.items()}
    members: dict[str, list[str]] = {}
    for s in cfg.sources:
        members.setdefault(s.group or s.name, []).append(s.name)
    groups = {}
    for g, names in tqdm(members.items(), desc="gate groups", unit="group", disable=not progress):
        parts = [gate_films(caches[n], ("train", "val"), False) for n in names]
        x = np.concatenate([feats[n][p[0]] for n, p in zip(names, parts)])
        groups[g] = fit_group(x, sum((p[2] for p in parts), []), gc, cfg.ood_quantile, cfg.ood_margin, cfg.ood_folds)
    rng = np.random.default_rng(0)
    upright = []
    for c in caches.values():
        idx = gate_films(c, ("train", "val"))[0]
        take = rng.choice(idx, min(len(idx), cfg.orientation_films_per_source), replace=False)
        upright.append(np.asarray(c.images[np.sort(take)]))
    w, b = fit_orientation(np.concatenate(upright), gc.thumb)
    params = with_groups(None, groups, gc)
    params.orient_w, params.orient_b = w, b
    gc = params.config
    sym_front = np.array([mirror_symmetry(np.asarray(c.images[i])) for c in caches.values()
                          for i in gate_films(c, ("val",))[0]])
    lat = [(c, i) for c in caches.values() for i, v in zip(*gate_films(c, ("train", "val"), False)[:2]) if v == "lateral"]
    sym_lat = np.array([mirror_symmetry(np.asarray(c.images[i])) for c, i in lat])
    gc.symmetry_threshold = float(np.quantile(sym_front, cfg.view_frontal_quantile)) if len(sym_front) else 0.0
    # Keep the image check only if it tells the laterals we have from frontal films.
    gc.view_check = bool(len(sym_lat) and (sym_lat < gc.symmetry_threshold).mean() >= 0.9)
    gc.metrics = {"ood_groups": {g: {"films": v[5], "limit": round(v[4], 4)} for g, v in groups.items()},
                  "symmetry_laterals": sorted(round(float(s), 3) for s in sym_lat)}
    if cfg.polarity_films_per_source > 0:
        from cxreport.training.gate_polarity import fit_polarity_check

        gc.metrics["polarity_val"] = fit_polarity_check(caches, cfg.polarity_sources, cfg.polarity_films_per_source,
                                                        gc, params)
    params.save(model_dir)
    return params


def fit_polarity_only(cfg: GateRecipeConfig, model_dir) -> GateParams:
    """Add (or refit) only the inverted-greys check of the gate beside ``model_dir``."""
    from cxreport.training.gate_polarity import fit_polarity_check

    params = GateParams.load(model_dir)
    if params is None:
        raise InputError(f"{model_dir}: no gate.json/gate.safetensors to add the check to; run fit-gate first")
    caches = {s.name: Cache(s.cache) for s in cfg.sources}
    params.config.metrics["polarity_val"] = fit_polarity_check(caches, cfg.polarity_sources,
                                                               cfg.polarity_films_per_source or 1500, params.config,
                                                               params)
    params.save(model_dir)
    return params

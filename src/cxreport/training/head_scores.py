"""`cxreport score-head`: what a model's finding plans claim on a labelled split, and how often the
claims are right, read from cached encoder features exactly as the pipeline reads a film (the gate
places it in a population, that population's head and calibration give its probabilities and
states). Test splits are scored once, after every choice was made on validation films.

Per finding: AUROC and ECE of the probabilities; films stated positive, their precision, the
prevalence and the floor ``max(0.5, 2 x prevalence)`` (at most 0.9) the issue of record sets on
test films; positive and uncertain rates on films with and without the finding. Per split: normal
reports (No Finding positive) and their precision, films with a positive statement, films with a
hedge (an uncertain finding).
"""

from __future__ import annotations

import numpy as np

from cxreport.metrics.calibration import ece_table
from cxreport.training.floors import auroc_or_none


def film_plans(model, gate, feats: np.ndarray):
    """(probabilities N x L, states per film, population per film) of frontal films from their
    pooled features."""
    import torch

    from cxreport.models.finding_states import calibrated_probs, finding_states

    labels, fc = list(model.labels), model.cfg.findings
    pops = gate.nearest_group(feats)[1] if gate is not None else [None] * len(feats)
    z = model.pooled_logits(torch.tensor(feats, dtype=torch.float32), pops).numpy()
    probs = calibrated_probs(z, fc, labels, pops)
    states = [finding_states(dict(zip(labels, p.tolist())), fc, labels, None, pop) for p, pop in zip(probs, pops)]
    return probs, states, pops


def test_floor(prevalence: float) -> float:
    return min(0.9, max(0.5, 2 * prevalence))


def claims_table(probs, states, y, labels) -> dict:
    """The figures above for one split (``y``: N x L labels, NaN unknown)."""
    st = np.array([[s[n] for n in labels] for s in states])
    per = {}
    ece = ece_table(probs, y, labels)
    for j, n in enumerate(labels):
        keep = ~np.isnan(y[:, j])
        assessed = st[:, j] != "not_assessed"
        if not (keep & assessed).any():
            continue
        yk, sk = y[keep, j], st[keep, j]
        pos = sk == "positive"
        prev = float(yk.mean())
        prec = float(yk[pos].mean()) if pos.any() else None
        floor = 0.75 if n == "No Finding" else test_floor(prev)
        per[n] = {"films": int(keep.sum()), "prevalence": round(prev, 4), "auroc": auroc_or_none(probs[keep, j], yk),
                  "ece": round(float(ece[n]), 4) if n in ece else None, "stated_positive": int(pos.sum()),
                  "precision": None if prec is None else round(prec, 4), "floor": round(floor, 4),
                  "meets_floor": prec is None or prec >= floor,
                  "positive_rate_with": _rate(sk[yk == 1], "positive"), "positive_rate_without": _rate(sk[yk == 0], "positive"),
                  "uncertain_rate_with": _rate(sk[yk == 1], "uncertain"),
                  "uncertain_rate_without": _rate(sk[yk == 0], "uncertain")}
    others = [j for j, n in enumerate(labels) if n != "No Finding"]
    nf = labels.index("No Finding") if "No Finding" in labels else None
    normal = st[:, nf] == "positive" if nf is not None else np.zeros(len(st), bool)
    ynf = y[:, nf] if nf is not None else np.full(len(st), np.nan)
    known = normal & ~np.isnan(ynf)
    return {"films": len(st), "per_finding": per,
            "normal_reports": int(normal.sum()),
            "normal_precision": round(float(ynf[known].mean()), 4) if known.any() else None,
            "films_with_positive": int((st[:, others] == "positive").any(1).sum()),
            "films_with_hedge": int((st[:, others] == "uncertain").any(1).sum()),
            "not_assessed": sorted({labels[j] for j in range(len(labels)) if (st[:, j] == "not_assessed").all()},
                                   key=labels.index)}


def _rate(states: np.ndarray, which: str) -> float | None:
    return round(float((states == which).mean()), 4) if len(states) else None


def score_split(model, gate, cache_path: str, split: str, features_dir: str, progress: bool = True) -> dict:
    """``claims_table`` of a cache split's frontal films, with the populations they were placed in."""
    from cxreport.data.cache import Cache
    from cxreport.training.feature_cache import feature_path, pooled_features
    from cxreport.training.films import frontal_rows

    cache = Cache(cache_path)
    feats = pooled_features(model.encoder, cache, feature_path(features_dir, cache, model),
                            model.cfg.preprocess.image_size, progress=progress)
    idx, y, _ = frontal_rows(cache, (split,), None, list(model.labels))
    probs, states, pops = film_plans(model, gate, feats[idx])
    table = claims_table(probs, states, y, list(model.labels))
    table["populations"] = {str(p): pops.count(p) for p in dict.fromkeys(pops)}
    return table


def out_of_fold_tables(run_dir) -> dict:
    """``claims_table`` per population of a fit-head run's out-of-fold predictions (``OUT/oof.npz``):
    the validation films the floors were set on, each read by a head that never saw its patient."""
    from pathlib import Path

    from cxreport.checkpoint import read_config
    from cxreport.config import from_dict
    from cxreport.models.config import FindingsConfig
    from cxreport.models.finding_states import calibrated_probs, finding_states

    run = Path(run_dir)
    fc = from_dict(FindingsConfig, read_config(run / "best")["model"]["findings"])
    labels = list(fc.labels)
    data = np.load(run / "oof.npz", allow_pickle=False)
    pops = [str(p) for p in data["pops"]]
    probs = calibrated_probs(data["z"], fc, labels, pops)
    states = [finding_states(dict(zip(labels, p.tolist())), fc, labels, None, pop) for p, pop in zip(probs, pops)]
    out = {}
    for pop in dict.fromkeys(pops):
        m = [i for i, q in enumerate(pops) if q == pop]
        out[pop] = claims_table(probs[m], [states[i] for i in m], data["y"][m], labels)
        out[pop]["populations"] = {pop: len(m)}
    return out


def markdown(name: str, table: dict) -> str:
    """One split's table as the model card prints it."""
    rows = [f"**{name}** ({table['films']} films; placed: "
            + ", ".join(f"{k} {v}" for k, v in table["populations"].items()) + ")", "",
            "| finding | AUROC | ECE | prevalence | stated positive | precision | floor | positive rate with / without | uncertain with / without |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    for n, r in table["per_finding"].items():
        rows.append(f"| {n} | {fmt(r['auroc'])} | {fmt(r['ece'])} | {r['prevalence']:.3f} | {r['stated_positive']} | "
                    f"{fmt(r['precision'])} | {r['floor']:.2f} | {fmt(r['positive_rate_with'])} / "
                    f"{fmt(r['positive_rate_without'])} | {fmt(r['uncertain_rate_with'])} / {fmt(r['uncertain_rate_without'])} |")
    rows += ["", f"Normal reports: {table['normal_reports']} (precision {fmt(table['normal_precision'])}); films with a "
             f"positive statement: {table['films_with_positive']}; with a hedge: {table['films_with_hedge']}; never "
             f"assessed: {', '.join(table['not_assessed']) or 'none'}."]
    return "\n".join(rows) + "\n"

"""Test figures of a finding head fitted by train_finding_head.py (run once, at the end).

NIH test: AUROC per finding, ECE before (the base model; the new head uncalibrated at its training
prior) and after (calibrated, deployment prior), reliability plot, call rate vs prevalence.
Kermany test: Pneumonia AUROC and call rates on normal and pneumonia films.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxreport.data.cache import Cache
from cxreport.data.dataset import StudyDataset
from cxreport.fsio import atomic_write_json
from cxreport.metrics.calibration import ece_table, reliability_bins
from cxreport.metrics.classification import auroc_table
from cxreport.inference.predict import predict_findings
from cxreport.models.finding_states import calibration_terms, finding_states
from cxreport.training.feature_cache import feature_path, pooled_features
from cxreport.training.head_fit import logit, predict_logits


def _test_set(cfg, src, model, labels):
    from train_finding_head import frontal_rows

    cache = Cache(src["cache"])
    feats = pooled_features(model.encoder, cache, feature_path(cfg["features"], cache, model),
                            model.cfg.preprocess.image_size)
    idx, y, _ = frontal_rows(cache, ("test",), src.get("labels"), labels)
    return cache, feats[idx], y


def _rates(model, probs, y, labels, assessed):
    plans = [finding_states(dict(zip(labels, p.tolist())), model.cfg.findings, labels) for p in probs]
    out = {}
    for j, n in enumerate(labels):
        if not assessed[n]:
            continue
        keep = ~np.isnan(y[:, j])
        st = np.array([plans[i][n] for i in range(len(plans))])[keep]
        out[n] = {"prevalence": round(float(y[keep, j].mean()), 4), "positive_rate": round(float((st == "positive").mean()), 4),
                  "uncertain_rate": round(float((st == "uncertain").mean()), 4), "n": int(keep.sum())}
    return out, plans


def _plot(path, curves, labels):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(labels), figsize=(3.2 * len(labels), 3.4), squeeze=False)
    for ax, name in zip(axes[0], labels):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        for tag, (p, y) in curves.items():
            rows = reliability_bins(p[name], y[name])
            ax.plot([r["mean_prob"] for r in rows], [r["rate"] for r in rows], marker="o", ms=3, label=tag)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("predicted probability", fontsize=8)
    axes[0][0].set_ylabel("observed rate", fontsize=8)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def score_test(cfg, model, probe, base, names, labels, assessed, priors, out: Path, compare=None,
               compare_label: str = "base model"):
    """``compare``: the model whose test figures are the "before" (default: ``base``)."""
    fc = model.cfg.findings
    scale, bias = (t.numpy() for t in calibration_terms(fc, labels))
    result = {}
    nih = cfg["sources"][names.index("nih")]
    cache, x, y = _test_set(cfg, nih, model, labels)
    z = predict_logits(probe, x)
    after = 1 / (1 + np.exp(-(z * scale + bias)))
    raw = 1 / (1 + np.exp(-(z + logit(priors[names.index("nih")]))))
    old, old_y, _ = predict_findings(compare or base, StudyDataset(cache, "test", require="image"))
    cols = [n for n in labels if assessed[n]]
    keep_cols = [labels.index(n) for n in cols]
    auc = auroc_table(after, y, labels)
    auc_old = auroc_table(old, old_y, labels)
    ece = {"base_model": ece_table(old, old_y, labels), "new_uncalibrated_train_prior": ece_table(raw, y, labels),
           "new_calibrated": ece_table(after, y, labels)}
    rates, _ = _rates(model, after, y, labels, assessed)
    result["nih_test"] = {
        "n": len(y), "auroc": {n: round(v["auroc"], 4) for n, v in auc["per_label"].items()},
        "macro_auroc_assessed": round(float(np.mean([auc["per_label"][n]["auroc"] for n in cols])), 4),
        "macro_auroc_all_labelled": round(auc["macro_auroc"], 4),
        "base_model_auroc": {n: round(v["auroc"], 4) for n, v in auc_old["per_label"].items()},
        "base_model_macro_auroc_assessed": round(float(np.mean([auc_old["per_label"][n]["auroc"] for n in cols])), 4),
        "ece": {k: {n: round(v[n], 4) for n in cols if n in v} for k, v in ece.items()},
        "call_rates": rates}
    result["nih_test"]["compared_with"] = compare_label
    curves = {compare_label: ({n: old[:, j] for j, n in enumerate(labels)}, {n: old_y[:, j] for j, n in enumerate(labels)}),
              "new, uncalibrated": ({n: raw[:, j] for j, n in enumerate(labels)}, {n: y[:, j] for j, n in enumerate(labels)}),
              "new, calibrated": ({n: after[:, j] for j, n in enumerate(labels)}, {n: y[:, j] for j, n in enumerate(labels)})}
    _plot(out / "reliability_nih_test.png", curves, cols)
    if "kermany" in names:
        _, xk, yk = _test_set(cfg, cfg["sources"][names.index("kermany")], model, labels)
        pk = 1 / (1 + np.exp(-(predict_logits(probe, xk) * scale + bias)))
        j = labels.index("Pneumonia")
        plans = [finding_states(dict(zip(labels, p.tolist())), fc, labels) for p in pk]
        st = np.array([p["Pneumonia"] for p in plans])
        normal, pneu = yk[:, j] == 0, yk[:, j] == 1
        result["kermany_test"] = {
            "n": len(yk), "pneumonia_auroc": round(float(auroc_table(pk, yk, labels)["per_label"]["Pneumonia"]["auroc"]), 4),
            "normal_films": int(normal.sum()), "pneumonia_films": int(pneu.sum()),
            "positive_rate_on_normal": round(float((st[normal] == "positive").mean()), 4),
            "uncertain_rate_on_normal": round(float((st[normal] == "uncertain").mean()), 4),
            "positive_rate_on_pneumonia": round(float((st[pneu] == "positive").mean()), 4),
            "uncertain_rate_on_pneumonia": round(float((st[pneu] == "uncertain").mean()), 4)}
    atomic_write_json(out / "test_scores.json", result)
    import json

    print(json.dumps(result, indent=1))
    return result

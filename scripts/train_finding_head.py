"""Train, cross-validate and calibrate the finding head on frozen encoder features.

    python scripts/train_finding_head.py --config configs/default-findings-head.json
    python scripts/train_finding_head.py --config configs/default-findings-head.json --score-test

Train+val films of every source are pooled; patient-wise K-fold cross-validation over them picks
the number of epochs (mean out-of-fold AUROC of the assessed findings in ``select_domain``), fits
each finding's calibration (scale, offset) and its uncertain threshold; the final head is then
fitted on all of train+val. Only ``--score-test`` reads the test splits (once, at the end), and it
writes the figures to OUT/test_scores.json. The result is a full checkpoint (the base model with
the new image side) that ``scripts/bundle_model.py --findings`` grafts onto a decoder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cxreport.checkpoint import load_checkpoint, save_checkpoint
from cxreport.data.cache import Cache
from cxreport.data.dataset import labels_vector, select_views
from cxreport.labels import view_group
from cxreport.fsio import atomic_write_json
from cxreport.models.registry import _deep_merge
from cxreport.models.report_model import build_model
from cxreport.training.feature_cache import feature_path, pooled_features
from cxreport.training.head_fit import (HeadFitConfig, HeadProbe, domain_priors, f1_threshold, fit_head, fit_platt, logit,
                                        macro_auroc, out_of_fold, predict_logits)

IMAGE_SIDE = ("projector.", "view_embed.", "finding_head.")


def frontal_rows(cache: Cache, splits: tuple[str, ...], keep_labels: list[str] | None, labels: list[str]):
    """(image index, label vector, patient id) of each study's frontal (else first) film."""
    idx, ys, pats = [], [], []
    for r in cache.rows:
        if r["split"] not in splits or not r.get("image_index"):
            continue
        pick = select_views(r.get("views", []), 1)[0]
        y = labels_vector(r.get("labels"))
        if keep_labels is not None:
            y[[i for i, n in enumerate(labels) if n not in keep_labels]] = np.nan
        idx.append(r["image_index"][pick])
        ys.append(y)
        pats.append(f"{cache.meta.get('source')}:{r.get('patient_id') or r['study_id']}")
        assert view_group(r["views"][pick]) != "lateral"
    return np.array(idx, dtype=int), np.stack(ys), pats


def load_data(cfg: dict, model, splits, labels):
    """Pooled features of ``model``'s (frozen) encoder at its input size, with labels and domains."""
    xs, ys, doms, pats = [], [], [], []
    names = [s["domain"] for s in cfg["sources"]]
    for d, src in enumerate(cfg["sources"]):
        cache = Cache(src["cache"])
        feats = pooled_features(model.encoder, cache, feature_path(cfg["features"], cache, model),
                                model.cfg.preprocess.image_size)
        idx, y, p = frontal_rows(cache, splits, src.get("labels"), labels)
        xs.append(feats[idx])
        ys.append(y)
        doms.append(np.full(len(idx), d))
        pats += p
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(doms), pats, names


def calibrate(z, y, dom, priors, assessed, cfg, names, sel):
    """Per assessed finding: Platt (scale, offset) over all domains' out-of-fold logits, and the
    uncertain threshold: F1-best on ``sel`` films re-weighted to the deployment prior."""
    labels = list(cfg["labels"])
    calib, unc = {}, {}
    for j, name in enumerate(labels):
        if not assessed[name]:
            continue
        keep = ~np.isnan(y[:, j])
        a, b = fit_platt(z[keep, j], y[keep, j], logit(priors[dom[keep], j]))
        calib[name] = {"scale": round(a, 5), "offset": round(b, 5)}
        pi_dep = cfg["deployment_prior"][name]
        k = keep & (dom == sel)
        yk = y[k, j]
        pi_src = priors[sel, j]
        p = 1 / (1 + np.exp(-(a * z[k, j] + b + logit(pi_dep))))
        w = np.where(yk == 1, pi_dep / pi_src, (1 - pi_dep) / (1 - pi_src))
        unc[name] = round(min(f1_threshold(p, yk, w), 0.5), 5)
    return calib, unc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", default=None, help="run folder (default: the config's out_dir)")
    ap.add_argument("--score-test", action="store_true", help="score the test splits once (final run only)")
    ap.add_argument("--compare", default=None, help="with --score-test: the model whose figures are the 'before' "
                                                     "(default: the config's base)")
    ap.add_argument("--compare-label", default="base model", help="its name in the figures and the plot")
    args = ap.parse_args()
    cfg = json.loads(Path(args.config).read_text())
    out = Path(args.out or cfg["out_dir"])
    base, tok, bcfg = load_checkpoint(cfg["base"])
    from cxreport.config import from_dict, to_dict
    from cxreport.models.config import ModelConfig

    mcfg = from_dict(ModelConfig, _deep_merge(to_dict(base.cfg), cfg.get("model_overrides", {})))
    labels = list(mcfg.findings.labels)
    cfg["labels"] = labels
    fit = HeadFitConfig(**cfg.get("fit", {}))
    # The base's encoder weights under the new image side (model_overrides may change the input
    # size, which adds no parameters).
    shell = build_model(mcfg, pretrained=False)
    shell.load_state_dict({k: v for k, v in base.state_dict().items() if k.startswith("encoder.")}, strict=False)
    x, y, dom, pats, names = load_data(cfg, shell, ("train", "val"), labels)
    sel = names.index(cfg.get("select_domain", names[0]))
    positives = {n: int(np.nansum(y[:, j] == 1)) for j, n in enumerate(labels)}
    assessed = {n: positives[n] >= cfg["min_positives"] for n in labels}
    cols = [j for j, n in enumerate(labels) if assessed[n]]

    def make_probe():
        return HeadProbe(build_model(mcfg, pretrained=False))

    grid = tuple(cfg.get("epoch_grid", [fit.epochs]))
    fit.epochs = max(grid)
    oof = out_of_fold(make_probe, x, y, dom, pats, fit, names, grid)
    cv = {e: {"select_macro_auroc": macro_auroc(z[dom == sel], y[dom == sel], cols),
              **{f"{names[d]}_macro_auroc": macro_auroc(z[dom == d], y[dom == d], cols) for d in range(len(names))}}
          for e, z in oof.items()}
    best = max(grid, key=lambda e: cv[e]["select_macro_auroc"])
    priors = domain_priors(y, dom, len(names))
    calib, unc = calibrate(oof[best], y, dom, priors, assessed, cfg, names, sel)
    fit.epochs = best
    probe, _ = fit_head(make_probe, x, y, dom, fit, names)

    fc = mcfg.findings
    fc.calibration, fc.uncertain_thresholds = calib, unc
    fc.prior = {n: cfg["deployment_prior"][n] for n in labels if assessed[n]}
    fc.train_positives, fc.min_positives = positives, int(cfg["min_positives"])
    fc.thresholds = {n: (0.5 if assessed[n] else 1.01) for n in labels}
    model = build_model(mcfg, pretrained=False)
    state = {k: v for k, v in base.state_dict().items() if not k.startswith(IMAGE_SIDE)}
    state.update({k: v for k, v in probe.state_dict().items()})
    model.load_state_dict(state, strict=True)
    report = {"config": args.config, "films": {names[d]: int((dom == d).sum()) for d in range(len(names))},
              "train_positives": positives, "assessed": [n for n in labels if assessed[n]],
              "cv": {str(e): v for e, v in cv.items()}, "epochs": best, "calibration": calib,
              "uncertain_thresholds": unc}
    save_checkpoint(out / "best", model, tokenizer=tok, step=best, metrics={"finding_head": report})
    atomic_write_json(out / "cv_report.json", report)
    np.savez(out / "oof.npz", z=oof[best], y=y, dom=dom)
    print(json.dumps({k: report[k] for k in ("films", "assessed", "epochs", "cv", "calibration", "uncertain_thresholds")},
                     indent=1))
    if args.score_test:
        from score_finding_head import score_test  # scripts/ sibling: test figures, written once

        compare = load_checkpoint(args.compare)[0] if args.compare else None
        score_test(cfg, model, probe, base, names, labels, assessed, priors, out, compare, args.compare_label)


if __name__ == "__main__":
    main()

"""Fit the finding head on frozen, cached encoder features: a prior-corrected loss, patient-wise
cross-validation, calibration and decision thresholds.

The head is ``models.probe.PooledProbe`` (the model's own ``pool`` projector, view embedding and
``pooled`` finding head), trained on mean-pooled encoder features, so its state dict drops into a
ReportModel unchanged.

Prior correction (logit adjustment, Menon et al. 2021): the loss sees ``z + logit(prior of the
finding in the film's domain)``, so the head's own logit ``z`` learns a prior-free log likelihood
ratio. A dataset picked for Pneumonia (NIH train: 52%) or a pediatric pneumonia set (Kermany: 75%)
then no longer teaches "most films have pneumonia"; the deployment prior is added back at inference
(``findings.prior``), after a per-finding scale/offset fitted on out-of-fold predictions.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from cxreport.metrics.classification import auroc


@dataclass
class HeadFitConfig:
    epochs: int = 60
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 0.05
    seed: int = 0
    folds: int = 5
    domain_weights: dict = field(default_factory=dict)  # loss weight of each domain's films (default 1)


def logit(p):
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def domain_priors(y: np.ndarray, dom: np.ndarray, n_domains: int) -> np.ndarray:
    """n_domains x L prevalence of each finding among the films of a domain where it is labelled
    (0.5 where a domain never labels it: no adjustment)."""
    out = np.full((n_domains, y.shape[1]), 0.5)
    for d in range(n_domains):
        yd = y[dom == d]
        known = ~np.isnan(yd)
        pos = np.nansum(yd == 1, 0)
        n = known.sum(0)
        out[d] = np.where(n > 0, (pos + 0.5) / (n + 1.0), 0.5)
    return out


def fit_head(make_probe, x: np.ndarray, y: np.ndarray, dom: np.ndarray, cfg: HeadFitConfig,
             domain_names: list[str], eval_epochs: tuple[int, ...] = (), x_eval: np.ndarray | None = None):
    """Train a probe from ``make_probe()`` (fresh, or warm-started: epoch 0 is then the probe as
    given); returns (probe, {epoch: raw logits on x_eval}) for the epochs asked."""
    torch.manual_seed(cfg.seed)
    probe = make_probe()
    snaps = {0: predict_logits(probe, x_eval)} if 0 in eval_epochs and x_eval is not None else {}
    adj = torch.tensor(logit(domain_priors(y, dom, len(domain_names)))[dom], dtype=torch.float32)
    w_dom = np.array([float(cfg.domain_weights.get(n, 1.0)) for n in domain_names])[dom]
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    known = ~torch.isnan(yt)
    wt = torch.tensor(w_dom, dtype=torch.float32)[:, None] * known
    yt = torch.nan_to_num(yt, nan=0.0)
    opt = torch.optim.AdamW(probe.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(x) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    g = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(1, cfg.epochs + 1):
        probe.train()
        for idx in torch.randperm(len(x), generator=g).split(cfg.batch_size):
            z = probe(xt[idx])
            loss = F.binary_cross_entropy_with_logits(z + adj[idx], yt[idx], weight=wt[idx], reduction="sum")
            loss = loss / wt[idx].sum().clamp_min(1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if epoch in eval_epochs and x_eval is not None:
            snaps[epoch] = predict_logits(probe, x_eval)
    return probe, snaps


@torch.no_grad()
def predict_logits(probe, x: np.ndarray) -> np.ndarray:
    was = probe.training
    probe.eval()
    out = probe(torch.tensor(x, dtype=torch.float32)).numpy()
    probe.train(was)
    return out


def patient_folds(patients: list[str], k: int, seed: int = 0) -> np.ndarray:
    """Fold index per film from a hash of its patient id: no patient in two folds."""
    return np.array([int.from_bytes(hashlib.sha256(f"{seed}:{p}".encode()).digest()[:8], "big") % k
                     for p in patients])


def out_of_fold(make_probe, x, y, dom, patients, cfg: HeadFitConfig, domain_names, eval_epochs,
                progress: bool | None = None):
    """{epoch: out-of-fold raw logits} over ``cfg.folds`` patient-wise folds."""
    from tqdm import tqdm

    folds = patient_folds(patients, cfg.folds, cfg.seed)
    oof = {e: np.zeros(y.shape, dtype=np.float32) for e in eval_epochs}
    for f in tqdm(range(cfg.folds), desc="cross-validation folds", unit="fold",
                  disable=None if progress is None else not progress):
        tr, te = folds != f, folds == f
        _, snaps = fit_head(make_probe, x[tr], y[tr], dom[tr], cfg, domain_names, eval_epochs, x[te])
        for e in eval_epochs:
            oof[e][te] = snaps[e]
    return oof


def macro_auroc(scores: np.ndarray, y: np.ndarray, cols: list[int]) -> float:
    vals = []
    for j in cols:
        keep = ~np.isnan(y[:, j])
        if keep.any() and 0 < y[keep, j].sum() < keep.sum():
            vals.append(auroc(scores[keep, j], y[keep, j]))
    return float(np.mean(vals)) if vals else float("nan")


def fit_platt(z: np.ndarray, yv: np.ndarray, offset: np.ndarray, weight: np.ndarray | None = None,
              iters: int = 200) -> tuple[float, float]:
    """(scale, offset) minimising the log loss of sigmoid(scale * z + b + offset_i) (offset_i: the
    film's domain prior as a logit). A scale below 1 is temperature scaling of an over-confident
    head; the offset absorbs what the prior-corrected loss left."""
    zt, yt = torch.tensor(z, dtype=torch.float64), torch.tensor(yv, dtype=torch.float64)
    off = torch.tensor(offset, dtype=torch.float64)
    w = torch.ones_like(yt) if weight is None else torch.tensor(weight, dtype=torch.float64)
    params = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([params], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (F.binary_cross_entropy_with_logits(params[0] * zt + params[1] + off, yt, reduction="none") * w).sum()
        loss = loss / w.sum() + 1e-4 * (params[0] - 1) ** 2
        loss.backward()
        return loss

    opt.step(closure)
    a, b = params.detach().tolist()
    return float(max(a, 1e-3)), float(b)


def f1_threshold(p: np.ndarray, yv: np.ndarray, weight: np.ndarray) -> float:
    """The threshold maximising a (weighted) F1 over the candidate probabilities."""
    order = np.argsort(-p)
    ps, ys, ws = p[order], yv[order], weight[order]
    tp = np.cumsum(ws * ys)
    fp = np.cumsum(ws * (1 - ys))
    total_pos = (ws * ys).sum()
    f1 = 2 * tp / np.maximum(tp + fp + total_pos, 1e-12)
    return float(ps[int(np.argmax(f1))])

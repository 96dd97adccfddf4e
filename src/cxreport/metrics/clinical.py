"""Clinical efficacy (CE): label hypotheses and references with a CheXpert labeler, compare labels.

Labels are binarised per study: 1 -> positive; 0 and not-mentioned -> negative; -1 (uncertain) ->
the explicit ``uncertain`` policy (``positive`` or ``negative``). Precision / recall / F1 are then
reported three ways, over the 14 CheXpert labels and over the 5 most used ones:

* micro: true/false positives and false negatives pooled over labels and studies;
* macro: per-label P/R/F1, then their unweighted mean over the labels of the set;
* example-based: per-study P/R/F1 over that study's labels, then their mean over studies.

A ratio with a zero denominator counts as 0 (scikit-learn's ``zero_division=0``), also for a study
or label with no positives on either side; every output says so, with labeler, label set,
averaging and uncertain policy.
"""

from __future__ import annotations

import numpy as np

from cxreport.labels import CHEXPERT_LABELS
from cxreport.errors import InputError
from cxreport.metrics.stats import ItemStats

LABEL_SETS = {
    "chexpert14": list(CHEXPERT_LABELS),
    "chexpert5": ["Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion"],
}
AVERAGES = ("micro", "macro", "example")
UNCERTAIN_POLICIES = ("positive", "negative")
ZERO_DIVISION = 0.0


def binarise(labels: list[dict], names: list[str], uncertain: str) -> np.ndarray:
    """N x L bool matrix of positives under the uncertain policy."""
    if uncertain not in UNCERTAIN_POLICIES:
        raise InputError(f"--uncertain {uncertain!r}: choose positive or negative")
    pos = {1, -1} if uncertain == "positive" else {1}
    return np.array([[d.get(k) in pos for k in names] for d in labels], dtype=bool).reshape(len(labels), len(names))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), ZERO_DIVISION)


def _prf(tp, fp, fn):
    p, r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return p, r, _ratio(2 * tp, 2 * tp + fp + fn)


def metric_names(set_name: str) -> list[str]:
    short = f"CE{len(LABEL_SETS[set_name])}"
    return [f"{short}-{avg}-{m}" for avg in AVERAGES for m in ("P", "R", "F1")]


def ce_block(hyp: np.ndarray, ref: np.ndarray, set_name: str) -> ItemStats:
    """Per-study table [tp(L) | fp(L) | fn(L) | example P, R, F1] and the reduction to 9 values."""
    n_lab = hyp.shape[1]
    tp, fp, fn = (hyp & ref).astype(float), (hyp & ~ref).astype(float), (~hyp & ref).astype(float)
    ex = np.stack(_prf(tp.sum(1), fp.sum(1), fn.sum(1)), 1)
    table = np.concatenate([tp, fp, fn, ex], 1)

    def reduce(sums: np.ndarray, n: int) -> np.ndarray:
        s_tp, s_fp, s_fn = sums[:, :n_lab], sums[:, n_lab:2 * n_lab], sums[:, 2 * n_lab:3 * n_lab]
        micro = _prf(s_tp.sum(1), s_fp.sum(1), s_fn.sum(1))
        macro = [m.mean(1) for m in _prf(s_tp, s_fp, s_fn)]
        example = sums[:, 3 * n_lab:] / n
        return np.column_stack([*micro, *macro, example])

    return ItemStats(metric_names(set_name), table, reduce, method="recomputed from per-study label counts (exact)")


def per_label_table(hyp: np.ndarray, ref: np.ndarray, names: list[str]) -> list[dict]:
    tp, fp, fn = (hyp & ref).sum(0), (hyp & ~ref).sum(0), (~hyp & ref).sum(0)
    p, r, f = _prf(tp.astype(float), fp.astype(float), fn.astype(float))
    return [{"label": k, "precision": float(p[j]), "recall": float(r[j]), "f1": float(f[j]),
             "support": int(ref[:, j].sum()), "predicted": int(hyp[:, j].sum()), "tp": int(tp[j])}
            for j, k in enumerate(names)]


LABELERS = ("rules", "chexbert")
_ALIASES = {"f1chexbert": "chexbert"}


def labeler_name(labeler: str) -> str:
    name = _ALIASES.get(labeler, labeler)
    if name not in LABELERS:
        raise InputError(f"unknown labeler {labeler!r}; choose one of {list(LABELERS)}")
    return name


def label_texts(texts: list[str], labeler: str = "rules", **opts) -> list[dict]:
    """CheXpert-14 states per text: our offline rules, or CheXbert (``opts``: weights, tokenizer, device)."""
    if labeler_name(labeler) == "chexbert":
        from cxreport.metrics.chexbert import get_labeler
        from cxreport.text.coverage import without_coverage

        return get_labeler(**opts).label_many([without_coverage(t) for t in texts])
    from cxreport.text.labeler import label_reports

    return label_reports(texts)


def label_reports(texts, labeler: str = "rules", **opts) -> list[dict]:
    """Public API (``cxreport.label_reports``): CheXpert-14 states (1 / 0 / -1 / None) per report, by
    our offline rules (default) or ``labeler="chexbert"`` (``weights=``, ``tokenizer=``, ``device=``)."""
    return label_texts(list(texts), labeler, **opts)


def describe_labeler(labeler: str = "rules", **opts) -> dict:
    if labeler_name(labeler) == "chexbert":
        from cxreport.metrics.chexbert import get_labeler

        return get_labeler(**opts).describe()
    return {"name": "rules", "implementation": "cxreport rule labeler (our lexicon and NegEx-style scopes); not "
                                               "CheXpert's NegBio labeler nor CheXbert"}


def clinical_scores(hyp_labels: list[dict], ref_labels: list[dict], uncertain: str = "positive",
                    labeler: str = "rules", label_sets=("chexpert14", "chexpert5")):
    """(values, stats blocks, description with per-label tables) for CE over the given label sets."""
    if len(hyp_labels) != len(ref_labels):
        raise InputError(f"clinical metrics: {len(hyp_labels)} hypothesis vs {len(ref_labels)} reference label rows")
    values, blocks, desc = {}, [], {}
    for set_name in label_sets:
        if set_name not in LABEL_SETS:
            raise InputError(f"unknown label set {set_name!r}; choose from {sorted(LABEL_SETS)}")
        names = LABEL_SETS[set_name]
        hyp, ref = binarise(hyp_labels, names, uncertain), binarise(ref_labels, names, uncertain)
        block = ce_block(hyp, ref, set_name)
        values.update(zip(block.names, map(float, block.value())))
        blocks.append(block)
        desc[set_name] = {"labels": names, "per_label": per_label_table(hyp, ref, names)}
    info = {"labeler": labeler, "uncertain": uncertain, "averaging": list(AVERAGES),
            "zero_division": ZERO_DIVISION, "texts": "original texts (no cleaning or truncation)",
            "label_sets": desc,
            "binarisation": f"1 -> positive; 0 and not mentioned -> negative; -1 (uncertain) -> {uncertain}"}
    return values, blocks, info

"""The labels a run trains with, per finding and split: the table training prints before its first
step, and the training positives every checkpoint stores (``findings.train_positives``).

A model says nothing about a finding it had fewer than ``findings.min_positives`` training
positives for (not assessed, models/finding_states.py), so these counts are part of the model,
not a log: they are counted from the labels the run really uses (the cache's, else the rule
labeler's reading of the report), over the studies the finding head learns from (a film, from a
source whose ``use`` is not ``text``).
"""

from __future__ import annotations

import numpy as np

from cxreport.labels import CHEXPERT_LABELS

KINDS = ("positive", "negative", "uncertain", "unknown")


def _base(ds):
    """The dataset under an oversampling Subset: counts are of distinct studies."""
    return getattr(ds, "dataset", ds)


def count_labels(datasets, sources=None) -> dict[str, dict[str, int]]:
    """{finding: {positive, negative, uncertain, unknown}} over the studies with a film of
    ``datasets`` (StudyDatasets, possibly oversampled); ``sources`` (their SourceConfigs) leaves
    out ``use=text`` sources, whose films the run never reads."""
    counts = {n: dict.fromkeys(KINDS, 0) for n in CHEXPERT_LABELS}
    for k, ds in enumerate(datasets):
        ds = _base(ds)
        if sources is not None and sources[k].use == "text" or not len(ds) or not ds.max_views:
            continue
        films = np.array([bool(r.get("image_index")) for r in ds.rows])
        if not films.any():
            continue
        y = np.stack(ds.labels)[films]
        for j, name in enumerate(CHEXPERT_LABELS):
            col = y[:, j]
            c = counts[name]
            c["positive"] += int((col == 1).sum())
            c["negative"] += int((col == 0).sum())
            c["uncertain"] += int((col == -1).sum())
            c["unknown"] += int(np.isnan(col).sum())
    return counts


def train_positives(counts: dict, labels, uncertain: str = "ignore", *inherited: dict) -> dict[str, int]:
    """Positives per finding as the finding loss sees them (-1 counts when ``findings.uncertain``
    is positive), at least those of ``inherited`` counts (the init_from checkpoint's): a head
    started from another keeps what that one saw, and taking the larger count, never the sum,
    does not count twice a cache both runs trained on."""
    out = {}
    for name in labels:
        c = counts.get(name, {})
        n = c.get("positive", 0) + (c.get("uncertain", 0) if uncertain == "positive" else 0)
        out[name] = max([int(n)] + [int(d.get(name, 0)) for d in inherited if d])
    return out


def _cells(c: dict | None) -> list[str]:
    return [str(c[k]) if c else "-" for k in KINDS]


def format_table(train: dict, val: dict, positives: dict, min_positives: int) -> str:
    """The per-finding table (positives / negatives / uncertain / unknown per split) and what each
    count means for the model: assessed, or not assessed and why."""
    need = max(int(min_positives), 1)
    head = ["finding", "train pos", "neg", "unc", "unk", "val pos", "neg", "unc", "unk", "model"]
    rows = []
    for name, n in positives.items():
        verdict = "assessed" if n >= need else f"NOT ASSESSED ({n} < {need})"
        rows.append([name, *_cells(train.get(name)), *_cells(val.get(name)), verdict])
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]

    def line(cells):
        return "  ".join(c.ljust(w) if i in (0, len(cells) - 1) else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(head)] + [line(r) for r in rows])


def warnings(train: dict, val: dict, positives: dict, min_positives: int) -> list[str]:
    """Plain sentences for what the table implies: findings the model will not assess, and
    findings whose validation AUROC cannot be computed."""
    need = max(int(min_positives), 1)
    out = []
    low = [f"{n} ({k})" for n, k in positives.items() if k < need]
    if low:
        out.append(f"{len(low)} of {len(positives)} findings have fewer than findings.min_positives={need} training "
                   f"positives, so the model will report them as not assessed (never positive): {', '.join(low)}")
    none_val = [n for n in positives if positives[n] >= need and not (val.get(n) or {}).get("positive")]
    if none_val:
        out.append("no positives in the validation split, so no validation AUROC for: " + ", ".join(none_val))
    return out


def auroc_computable(val: dict, labels) -> bool:
    """Whether some finding has both positives and negatives in validation (val_auroc can exist)."""
    return any((val.get(n) or {}).get("positive") and (val.get(n) or {}).get("negative") for n in labels)


def auroc_line(table: dict) -> str:
    """One validation's per-finding AUROC (metrics.classification.auroc_by_label) as a line: the
    scored findings, then the others grouped by why they have none ("n/a (no positives in val)")."""
    per = table["per_label"]
    scored = [f"{n} {r['auroc']:.3f}" for n, r in per.items() if r["auroc"] is not None]
    text = (f"val AUROC per finding: {', '.join(scored)} (macro over these {len(scored)})" if scored
            else "val AUROC per finding: none computable (macro n/a)")
    for why in ("no positives", "no negatives", "no labels"):
        names = [n for n, r in per.items() if r["why"] == why]
        if names:
            text += f"; n/a ({why} in val): {', '.join(names)}"
    return text

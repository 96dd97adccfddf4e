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


def class_counts(counts: dict, labels, uncertain: str = "ignore", *inherited: tuple) -> tuple[dict, dict]:
    """({finding: positives}, {finding: negatives}) as the finding loss sees them (-1 counts as the
    class ``findings.uncertain`` names), at least those of ``inherited`` (positives, negatives)
    pairs (the init_from checkpoint's): a head started from another keeps what that one saw, and
    taking the larger count, never the sum, does not count twice a cache both runs trained on."""
    pos, neg = {}, {}
    for name in labels:
        c = counts.get(name, {})
        unc = c.get("uncertain", 0)
        p = c.get("positive", 0) + (unc if uncertain == "positive" else 0)
        n = c.get("negative", 0) + (unc if uncertain == "negative" else 0)
        pos[name] = max([int(p)] + [int(i[0].get(name, 0)) for i in inherited if i[0]])
        neg[name] = max([int(n)] + [int(i[1].get(name, 0)) for i in inherited if i[1]])
    return pos, neg


def _verdict(p: int, n: int, need: int) -> str:
    if p < need:
        return f"NOT ASSESSED ({p} positives < {need})"
    if n < need:
        return f"NOT ASSESSED ({n} negatives < {need})"
    return "assessed"


def _cells(c: dict | None) -> list[str]:
    return [str(c[k]) if c else "-" for k in KINDS]


def format_table(train: dict, val: dict, positives: dict, negatives: dict, min_positives: int) -> str:
    """The per-finding table (positives / negatives / uncertain / unknown per split) and what the
    counts mean for the model: assessed, or not assessed and why."""
    need = max(int(min_positives), 1)
    head = ["finding", "train pos", "neg", "unc", "unk", "val pos", "neg", "unc", "unk", "model"]
    rows = []
    for name, n in positives.items():
        verdict = _verdict(n, negatives.get(name, 0), need)
        rows.append([name, *_cells(train.get(name)), *_cells(val.get(name)), verdict])
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]

    def line(cells):
        return "  ".join(c.ljust(w) if i in (0, len(cells) - 1) else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(head)] + [line(r) for r in rows])


def warnings(val: dict, positives: dict, negatives: dict, min_positives: int) -> list[str]:
    """Plain sentences for what the table implies: findings the model will not assess (too few
    positives; too few negatives, which reports labelled by the rule labeler often lack) and
    findings whose validation AUROC cannot be computed."""
    need = max(int(min_positives), 1)
    out = []
    low = [f"{n} ({k})" for n, k in positives.items() if k < need]
    if low:
        out.append(f"{len(low)} of {len(positives)} findings have fewer than findings.min_positives={need} training "
                   f"positives, so the model will report them as not assessed (never positive): {', '.join(low)}")
    one_sided = [f"{n} ({negatives.get(n, 0)})" for n, k in positives.items() if k >= need > negatives.get(n, 0)]
    if one_sided:
        out.append(f"too few training negatives (< {need}), so not assessed either: {', '.join(one_sided)}. A head "
                   "that sees almost only positives calls the finding on every film; reports seldom say a finding "
                   "is absent (No Finding never is), so give labels with 0s for it (CSV label columns)")
    ok = [n for n in positives if positives[n] >= need and negatives.get(n, 0) >= need]
    none_val = [n for n in ok if not (val.get(n) or {}).get("positive") or not (val.get(n) or {}).get("negative")]
    if none_val:
        out.append("no positives or no negatives in the validation split, so no validation AUROC for: "
                   + ", ".join(none_val))
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

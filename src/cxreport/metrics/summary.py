"""Human-readable outputs of scored systems: a markdown table with CIs and a per-label F1 bar plot."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cxreport.fsio import atomic_path

HEADLINE = ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "BERTScore-F1",
            "CE14-micro-F1", "CE14-macro-F1", "CE14-example-F1", "CE5-micro-F1", "CE5-macro-F1", "CE5-example-F1",
            "F1-RadGraph-simple", "F1-RadGraph-partial", "F1-RadGraph-complete"]


def _fmt(m: dict | None) -> str:
    if not m or m.get("value") is None or (isinstance(m["value"], float) and math.isnan(m["value"])):
        return "-"
    ci = m.get("ci95")
    if ci and all(c is not None and not math.isnan(c) for c in ci):
        return f"{m['value']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{m['value']:.3f}"


def metrics_table(systems: dict, names: list[str] | None = None) -> str:
    """Markdown: one row per metric, one column per system; value [95% CI]."""
    if names is None:
        first = next(iter(systems.values()))["metrics"]
        names = HEADLINE + [k for k in first if k not in HEADLINE]  # then the rest in scoring order
    present = [n for n in names if any(n in r["metrics"] for r in systems.values())]
    lines = ["| metric | " + " | ".join(systems) + " |", "|---|" + "---|" * len(systems)]
    for n in present:
        lines.append(f"| {n} | " + " | ".join(_fmt(r["metrics"].get(n)) for r in systems.values()) + " |")
    return "\n".join(lines)


def describe(result: dict) -> list[str]:
    """Bullet lines naming protocol, labeler, label sets, averaging, uncertain policy and CIs."""
    p = result.get("protocol") or {}
    out = [f"- studies scored: {result['n']}",
           f"- protocol: **{p.get('name')}** ({p.get('cleaning')}; reference truncation: "
           f"{p.get('reference_truncation') or 'none'}" + (f"; {p['unk_mapping']}" if p.get("unk_mapping") else "") + ")",
           "- BLEU, METEOR, ROUGE-L, CIDEr-D: pycocoevalcap (CIDEr-D = coco-caption's Cider)"]
    c = result.get("clinical")
    if c:
        sets = ", ".join(f"{k} ({len(v['labels'])})" for k, v in c["label_sets"].items())
        out.append(f"- clinical efficacy: labeler **{c['labeler']}**, label sets {sets}, averaging "
                   f"{'/'.join(c['averaging'])}, uncertain -> **{c['uncertain']}**, zero division -> "
                   f"{c['zero_division']:g}, on {c['texts']}")
        d = c.get("labeler_details") or {}
        if d.get("weights"):
            out.append(f"- CheXbert: {d['architecture']}; weights {d['weights']} (sha256 {d['weights_sha256'][:12]}); "
                       f"{d['conventions']}")
    b = result.get("bertscore")
    if b:
        out.append(f"- BERTScore: {b.get('note', '')}")
    r = result.get("radgraph")
    if r:
        out.append(f"- RadGraph-F1: {r['note']} ({r['package']}); {r['empty']}")
    bs = result.get("bootstrap") or {}
    if bs.get("resamples"):
        out.append(f"- 95% CIs: {bs['interval']} bootstrap over {bs['unit']}, {bs['resamples']} resamples, "
                   f"seed {bs['seed']}; corpus metrics recomputed on every resample")
    return out


def comparisons_table(comp: dict, names: list[str] | None = None) -> str:
    res = comp["results"]
    if not res:
        return ""
    names = [n for n in (names or HEADLINE) if any(n in r for r in res.values())]
    lines = ["| metric | " + " | ".join(f"{pair.replace(' vs ', ' - ')} (p)" for pair in res) + " |",
             "|---|" + "---|" * len(res)]
    for n in names:
        cells = [f"{r[n]['diff']:+.3f} (p={r[n]['p_value']:.3f})" if n in r else "-" for r in res.values()]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_label_plot(systems: dict, path: str | Path, label_set: str = "chexpert14") -> Path | None:
    """Grouped horizontal bars of per-label F1 for each system; None without clinical metrics."""
    rows = {name: r["clinical"]["label_sets"][label_set]["per_label"] for name, r in systems.items()
            if r.get("clinical") and label_set in r["clinical"]["label_sets"]}
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(rows.values()))
    labels = [f"{x['label']} (n={x['support']})" for x in first]
    k = len(rows)
    height = 0.8 / k
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(labels) * max(1.0, k / 2) + 1.5))
    y = np.arange(len(labels))
    for j, (name, per) in enumerate(rows.items()):
        ax.barh(y + (j - (k - 1) / 2) * height, [x["f1"] for x in per], height=height, label=name)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    info = next(iter(systems.values()))["clinical"]
    ax.set_title(f"Per-label F1 ({label_set}; labeler {info['labeler']}, uncertain -> {info['uncertain']})",
                 fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def write_summary(path: str | Path, title: str, systems: dict, comparisons: dict | None = None,
                  notes: list[str] | None = None, plot_name: str | None = None) -> Path:
    from cxreport.fsio import atomic_write_text

    first = next(iter(systems.values()))
    parts = [f"# {title}", "", *describe(first), *(f"- {n}" for n in notes or []), "",
             "## Metrics (value [95% CI])", "", metrics_table(systems), ""]
    if comparisons and comparisons.get("results"):
        parts += ["## Paired comparisons", "", comparisons["method"] + f"; {comparisons['permutations']} permutations.",
                  "", comparisons_table(comparisons), ""]
    if first.get("clinical"):
        parts += ["## Per-label F1 (chexpert14)", ""]
        if plot_name:
            parts += [f"![per-label F1]({plot_name})", ""]
        names = list(systems)
        parts += ["| label | support | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        per = {n: systems[n]["clinical"]["label_sets"]["chexpert14"]["per_label"] for n in names}
        for j, row in enumerate(per[names[0]]):
            parts.append(f"| {row['label']} | {row['support']} | " +
                         " | ".join(f"{per[n][j]['f1']:.3f}" for n in names) + " |")
        parts.append("")
    atomic_write_text(path, "\n".join(parts))
    return Path(path)

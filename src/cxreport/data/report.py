"""`cxreport data report`: what is in a cache, in numbers and pictures, before anything trains on it."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from cxreport.data.cache import Cache
from cxreport.labels import CHEXPERT_LABELS, view_group
from cxreport.fsio import atomic_path, atomic_write_json, atomic_write_text

_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")
_SENT = re.compile(r"(?<=[.!?])\s+")
# English function words (and negations, which the sentence list shows in context): without them
# the top-words plot shows what reports talk about instead of "the", "is" and "no".
STOP_WORDS = frozenset("""
a about above after again all also am an and any are as at be been before being below between both but by
can could did do does doing down during each few for from further had has have having here how i if in into
is it its itself just may more most much no nor not of off on once only or other our out over own same
seen she should so some such than that the their them then there these they this those through to too
under until up very was we were what when where which while who why will with within without would you
""".split())
# How a label value reads in the table (labels are 1 / 0 / -1, as strings or numbers).
_LABEL_COLUMNS = {"1": "positive", "1.0": "positive", "0": "negative", "0.0": "negative",
                  "-1": "uncertain", "-1.0": "uncertain"}


def _report_text(row: dict) -> str:
    return row.get("findings") or ""


def compute_stats(cache: Cache, top: int = 25) -> dict:
    rows = cache.rows
    per_split: dict[str, dict] = {}
    words, vocab, sentences, texts = Counter(), Counter(), Counter(), Counter()
    lengths = []
    for r in rows:
        sp = per_split.setdefault(r["split"], {"studies": 0, "with_images": 0, "images": 0, "empty_findings": 0,
                                               "empty_impression": 0, "views": Counter(), "labelled": 0})
        sp["studies"] += 1
        sp["with_images"] += bool(r.get("image_index"))
        sp["images"] += len(r.get("image_index", []))
        sp["empty_findings"] += not r.get("findings")
        sp["empty_impression"] += not r.get("impression")
        sp["labelled"] += bool(r.get("labels"))
        for v in r.get("views", []):
            sp["views"][view_group(v)] += 1
        text = _report_text(r)
        if text:
            toks = _WORD.findall(text.lower())
            lengths.append(len(toks))
            vocab.update(toks)
            words.update(t for t in toks if t not in STOP_WORDS)
            texts[text.lower()] += 1
            sentences.update(s.strip().lower() for s in _SENT.split(text) if s.strip())
    for sp in per_split.values():
        sp["views"] = dict(sp["views"])
    label_counts = {k: Counter() for k in CHEXPERT_LABELS}
    for r in rows:
        for k, v in (r.get("labels") or {}).items():
            if k in label_counts:
                label_counts[k][_LABEL_COLUMNS.get(str(v), "other")] += 1
    lens = np.array(lengths) if lengths else np.zeros(1)
    dup = {t: n for t, n in texts.items() if n > 1}
    return {
        "source": cache.meta["source"],
        "studies": len(rows),
        "splits": per_split,
        "images_listed": cache.meta["counts"]["images_listed"],
        "images_ok": cache.meta["counts"]["images_ok"],
        "images_missing": cache.meta["counts"].get("images_missing", 0),
        "images_bad": cache.meta["counts"]["images_bad"],
        "report_length_words": {"mean": float(lens.mean()), "median": float(np.median(lens)),
                                "p95": float(np.percentile(lens, 95)), "max": int(lens.max())},
        "vocabulary_size": len(vocab),
        "vocabulary_min_freq_3": sum(1 for n in vocab.values() if n >= 3),
        "top_words": words.most_common(top),
        "top_sentences": sentences.most_common(top),
        "duplicate_reports": {"distinct_texts_repeated": len(dup), "studies_in_duplicates": sum(dup.values()),
                              "most_repeated": sorted(dup.items(), key=lambda kv: -kv[1])[:5]},
        "labels": {k: dict(c) for k, c in label_counts.items() if c},
        "_lengths": lengths,
    }


def _savefig(fig, path: Path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def _plots(cache: Cache, stats: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    if stats["_lengths"]:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(stats["_lengths"], bins=40, color="#4c72b0")
        ax.set(xlabel="findings length (words)", ylabel="studies", title=f"{stats['source']}: report length")
        _savefig(fig, out / "length_hist.png")
        plt.close(fig)
        made.append("length_hist.png")
    if stats["top_words"]:
        w, n = zip(*stats["top_words"][:20])
        fig, ax = plt.subplots(figsize=(6, 5))
        ax.barh(range(len(w))[::-1], n, color="#55a868")
        ax.set_yticks(range(len(w))[::-1], w)
        ax.set(xlabel="count", title="top words (findings; stop words left out)")
        _savefig(fig, out / "top_words.png")
        plt.close(fig)
        made.append("top_words.png")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    splits = sorted(stats["splits"])
    groups = ["frontal", "lateral", "unknown"]
    x = np.arange(len(splits))
    for i, g in enumerate(groups):
        ax.bar(x + (i - 1) * 0.27, [stats["splits"][s]["views"].get(g, 0) for s in splits], 0.27, label=g)
    ax.set_xticks(x, splits)
    ax.set(ylabel="images present", title="views per split")
    ax.legend()
    _savefig(fig, out / "views.png")
    plt.close(fig)
    made.append("views.png")
    with_img = [r for r in cache.rows if r.get("image_index")][:16]
    if with_img:
        n = len(with_img)
        cols = min(4, n)
        rws = (n + cols - 1) // cols
        fig, axes = plt.subplots(rws, cols, figsize=(2.6 * cols, 2.9 * rws), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, r in zip(axes.flat, with_img):
            ax.imshow(cache.images[r["image_index"][0]], cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"{r['study_id']} {r['views'][0]}"[:28], fontsize=8)
        _savefig(fig, out / "examples.png")
        plt.close(fig)
        made.append("examples.png")
    return made


def _label_table(labels: dict[str, dict]) -> list[str]:
    """Markdown rows: one per label, a column per state that occurs (positive, negative, ...)."""
    order = ["positive", "negative", "uncertain", "other"]
    cols = [c for c in order if any(c in v for v in labels.values())]
    rows = ["| label | " + " | ".join(cols) + " | labelled |", "|---|" + "---:|" * (len(cols) + 1)]
    for name, counts in labels.items():
        rows.append(f"| {name} | " + " | ".join(str(counts.get(c, 0)) for c in cols)
                    + f" | {sum(counts.values())} |")
    return rows


def _markdown(stats: dict, plots: list[str]) -> str:
    lines = [f"# Data report: {stats['source']}", "", f"Studies: {stats['studies']}; images listed: "
             f"{stats['images_listed']}, readable: {stats['images_ok']}, missing files: "
             f"{stats['images_missing']}, unreadable: {stats['images_bad']}.", "",
             "| split | studies | with images | images | frontal | lateral | empty findings | empty impression |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s, c in sorted(stats["splits"].items()):
        lines.append(f"| {s} | {c['studies']} | {c['with_images']} | {c['images']} | {c['views'].get('frontal', 0)} "
                     f"| {c['views'].get('lateral', 0)} | {c['empty_findings']} | {c['empty_impression']} |")
    L = stats["report_length_words"]
    d = stats["duplicate_reports"]
    lines += ["", f"Findings length (words): mean {L['mean']:.1f}, median {L['median']:.0f}, p95 {L['p95']:.0f}, "
              f"max {L['max']}. Vocabulary: {stats['vocabulary_size']} words ({stats['vocabulary_min_freq_3']} "
              f"seen at least 3 times).", "",
              f"Duplicate reports: {d['distinct_texts_repeated']} texts occur more than once, covering "
              f"{d['studies_in_duplicates']} studies.", "", "## Most frequent sentences", ""]
    lines += [f"{i + 1}. ({n}) {s}" for i, (s, n) in enumerate(stats["top_sentences"][:15])]
    if stats["labels"]:
        lines += ["", "## Labels (CheXpert-14)", ""] + _label_table(stats["labels"])
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def write_report(cache_path, out) -> Path:
    cache = Cache(cache_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stats = compute_stats(cache)
    plots = _plots(cache, stats, out)
    public = {k: v for k, v in stats.items() if not k.startswith("_")}
    atomic_write_json(out / "stats.json", public)
    atomic_write_text(out / "report.md", _markdown(stats, plots))
    return out / "report.md"

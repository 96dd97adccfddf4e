"""Metric presets that match published tables: every metric with its CI, implementation and conventions.

* ``rrg24``: the RRG24 shared task / ReXrank set: BLEU-4, ROUGE-L, BERTScore (distilbert-base-uncased,
  layer 5, rescaled), F1-CheXbert (micro and macro over 14 and 5 labels, uncertain positive) and
  F1-RadGraph (simple / partial / complete). Whole texts (protocol ``full``).
* ``r2gen``: the R2Gen-family table: BLEU-1..4, METEOR, ROUGE-L on R2Gen's cleaned and truncated
  texts (protocol ``r2gen``) and clinical efficacy (micro P/R/F1 over the 14 CheXpert labels).

A metric whose weights or package are missing is listed as skipped with the reason, never dropped.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from cxreport.errors import InputError, MissingDependencyError


def _v(pkg: str) -> str:
    try:
        return f"{pkg} {version(pkg)}"
    except PackageNotFoundError:
        return pkg


@dataclass
class Preset:
    protocol: str
    groups: list  # metric groups passed to `score` (BLEU, ROUGE-L, BERTScore, CE, RadGraph, METEOR)
    labeler: str
    rows: list = field(default_factory=list)  # (display name, result key, group)


_CHEXBERT_ROWS = [(f"F1-CheXbert {avg}-{n}", f"CE{n}-{avg}-F1", "CE") for n in (14, 5) for avg in ("micro", "macro")]
PRESETS = {
    "rrg24": Preset("full", ["BLEU-4", "ROUGE-L", "BERTScore", "CE", "RadGraph"], "chexbert",
                    [("BLEU-4", "BLEU-4", "BLEU-4"), ("ROUGE-L", "ROUGE-L", "ROUGE-L"),
                     ("BERTScore-F1", "BERTScore-F1", "BERTScore"), *_CHEXBERT_ROWS,
                     *[(f"F1-RadGraph {lvl}", f"F1-RadGraph-{lvl}", "RadGraph")
                       for lvl in ("simple", "partial", "complete")]]),
    "r2gen": Preset("r2gen", ["BLEU", "METEOR", "ROUGE-L", "CE"], "rules",
                    [*[(f"BLEU-{k}", f"BLEU-{k}", "BLEU") for k in range(1, 5)], ("METEOR", "METEOR", "METEOR"),
                     ("ROUGE-L", "ROUGE-L", "ROUGE-L"),
                     *[(f"CE {m}", f"CE14-micro-{m}", "CE") for m in ("P", "R", "F1")]]),
}


def _probe(group: str, labeler: str, opts: dict) -> str | None:
    """None when the group can run; otherwise why not (missing weights / package)."""
    from cxreport import hub

    try:
        if group == "BERTScore":
            from cxreport.errors import require
            from cxreport.metrics.bertscore import resolve_model

            require("bert_score", "bertscore", "BERTScore")
            resolve_model(opts.get("bertscore_model") or "standard")
        elif group == "CE" and labeler in ("chexbert", "f1chexbert"):
            from cxreport.metrics.chexbert import get_labeler

            get_labeler(**(opts.get("labeler_opts") or {}))
        elif group == "METEOR" and shutil.which("java") is None:
            return "METEOR runs a Java program and no java is on PATH (install a JRE, e.g. default-jre-headless)"
        elif group == "RadGraph":
            from cxreport.metrics.radgraph import DEFAULT_MODEL_TYPE, get_scorer

            get_scorer(opts.get("radgraph_model") or DEFAULT_MODEL_TYPE)
    except (hub.HubUnavailable, MissingDependencyError) as exc:
        return str(exc)
    return None


def run_preset(hyps, refs, preset: str, *, dataset: str = "iu", labeler: str | None = None, **opts) -> dict:
    """Score with a preset: {"preset", "rows": [...], "skipped": [{"metric", "reason"}], "result"}."""
    from cxreport.metrics.scoring import score

    if preset not in PRESETS:
        raise InputError(f"--preset {preset!r}: choose one of {sorted(PRESETS)}")
    p = PRESETS[preset]
    if p.labeler == "chexbert" and labeler not in (None, "chexbert", "f1chexbert"):
        raise InputError(f"--preset {preset} reports F1-CheXbert: drop --labeler {labeler} (or use chexbert)")
    labeler = labeler or p.labeler
    why = {g: _probe(g, labeler, opts) for g in p.groups}
    run = [g for g in p.groups if why[g] is None]
    opts.setdefault("bertscore_model", "standard")
    result = score(hyps, refs, metrics=run, protocol=p.protocol, dataset=dataset, labeler=labeler, **opts)
    rows, skipped = [], []
    for name, key, group in p.rows:
        if why[group] is not None:
            skipped.append({"metric": name, "reason": why[group]})
            continue
        m = result["metrics"][key]
        impl, conv = describe_row(group, result, p)
        rows.append({"metric": name, "key": key, "value": m["value"], "ci95": m["ci95"],
                     "implementation": impl, "conventions": conv})
    return {"preset": preset, "n": result["n"], "protocol": result["protocol"], "bootstrap": result["bootstrap"],
            "rows": rows, "skipped": skipped, "result": result}


def describe_row(group: str, result: dict, p: Preset) -> tuple[str, str]:
    texts = ("whole texts, lower-cased, words and punctuation split" if p.protocol == "full" else
             f"R2Gen cleaning, references cut to {result['protocol'].get('reference_truncation')}")
    if group in ("BLEU", "BLEU-4"):
        return f"{_v('pycocoevalcap')} Bleu", f"corpus BLEU ('closest' ref length); {texts}"
    if group == "ROUGE-L":
        return f"{_v('pycocoevalcap')} Rouge", f"LCS F-measure (beta 1.2), mean over studies; {texts}"
    if group == "METEOR":
        return f"{_v('pycocoevalcap')} Meteor 1.5 jar", f"corpus METEOR; {texts}"
    if group == "BERTScore":
        b = result["bertscore"]
        return b["package"], b["note"] + "; mean F1 over studies"
    if group == "CE":
        c = result["clinical"]
        d = c.get("labeler_details") or {}
        impl = (f"CheXbert weights sha256 {d['weights_sha256'][:12]}" if d.get("weights") else d.get("implementation"))
        return impl, (f"uncertain -> {c['uncertain']}; 14 labels incl. No Finding, 5 = Cardiomegaly, Edema, "
                      "Consolidation, Atelectasis, Pleural Effusion; zero division -> 0; original texts")
    if group == "RadGraph":
        r = result["radgraph"]
        return f"{r['package']} ({r['model_type']})", "mean per-study reward; empty text -> 0; original texts"
    raise InputError(f"no description for metric group {group!r}")


def _num(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def preset_table(out: dict) -> str:
    """Markdown a user can paste: a header line, the table, and the skipped metrics with reasons."""
    bs = out["bootstrap"]
    ci = (f"95% CI: {bs['interval']} bootstrap over {bs['unit']}, {bs['resamples']} resamples, seed {bs['seed']}"
          if bs.get("resamples") else "no CIs (--bootstrap 0)")
    lines = [f"cxreport score --preset {out['preset']}: {out['n']} studies, protocol {out['protocol']['name']}; {ci}",
             "", "| metric | value | 95% CI | implementation | conventions |", "|---|---|---|---|---|"]
    for r in out["rows"]:
        c = r["ci95"]
        cell = f"[{_num(c[0])}, {_num(c[1])}]" if c else "-"
        lines.append(f"| {r['metric']} | {_num(r['value'])} | {cell} | {r['implementation']} | {r['conventions']} |")
    if out["skipped"]:
        lines += ["", "Skipped (not computed):"]
        seen: dict[str, list[str]] = {}
        for s in out["skipped"]:
            seen.setdefault(s["reason"], []).append(s["metric"])
        lines += [f"- {', '.join(names)}: {reason}" for reason, names in seen.items()]
    return "\n".join(lines)

"""Annotation runs behind `cxreport annotate`: one backend over many texts, and a comparison of
backends against reference regions (content-word F1 or GREEN), with per-report predictions kept."""

from __future__ import annotations

from dataclasses import dataclass, field

from cxreport.annotate.cache import ResponseCache
from cxreport.annotate.llm import LLMAnnotator, load_prompt
from cxreport.errors import CXReportError
from cxreport.llm import ChatClient, LLMConfig
from cxreport.text.regions import REGIONS, score_regions, split_regions


@dataclass
class BackendRun:
    name: str  # 'rules' or a prompt id/path
    regions: list[dict]  # empty regions where the annotation failed
    errors: list[str]  # "" where it succeeded
    usage: dict = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(bool(e) for e in self.errors)

    def all_failed(self, texts: list[str]) -> bool:
        """Every report that needed a request failed (a dead endpoint, a wrong model name)."""
        asked = [e for e, t in zip(self.errors, texts) if t.strip()]
        return bool(asked) and all(asked)


def run_backend(name: str, texts: list[str], cfg: LLMConfig | None = None, cache: ResponseCache | None = None,
                client: ChatClient | None = None, progress=None) -> BackendRun:
    """``name`` is 'rules' (offline) or a prompt id/path sent to ``cfg``'s endpoint. ``client`` may be
    shared between prompts so that the schema mode is probed once; ``progress(usage)`` as in
    :meth:`LLMAnnotator.annotate_many`."""
    if name == "rules":
        return BackendRun(name, [split_regions(t) for t in texts], ["" for _ in texts], {"backend": "rules"})
    if cfg is None:
        raise CXReportError(f"prompt {name!r} needs an endpoint configuration")
    prompt = load_prompt(name)
    annotator = LLMAnnotator(cfg, prompt, cache, client)
    anns = annotator.annotate_many(texts, progress)
    usage = {"backend": "llm", "prompt": prompt.id, "prompt_sha": prompt.sha, "model": cfg.model,
             "served_model": annotator.client.served_model, "base_url": cfg.base_url,
             "schema_mode": annotator.client.schema_mode or cfg.schema_mode,
             "schema_probe_requests": annotator.client.probe_requests, **annotator.usage.as_dict(cfg)}
    return BackendRun(name, [a.regions or {r: "" for r in REGIONS} for a in anns], [a.error for a in anns], usage)


def f1_scores(preds: list[dict], golds: list[dict]) -> dict:
    s = score_regions(preds, golds)
    return {"mean": s["f1"], **{r: s["regions"][r]["f1"] for r in REGIONS}}


def green_scores(preds: list[dict], golds: list[dict], scorer) -> dict:
    """Mean GREEN per region (``scorer``: a :class:`cxreport.metrics.green.GreenScorer`)."""
    out, means, notes = {}, [], {"unparseable": 0, "implausible": 0}
    for r in REGIONS:
        res = scorer.score([g[r] for g in golds], [p[r] for p in preds])
        vals = [x.green for x in res if x.green is not None]
        out[r] = sum(vals) / len(vals) if vals else None
        means.extend(vals)
        for x in res:
            for k in notes:
                notes[k] += x.note.startswith(k)
    return {"mean": sum(means) / len(means) if means else None, **out, **notes}


def comparison_row(run: BackendRun, ids: list[str], scores: dict) -> dict:
    """One backend's result: scores, usage, and every report's prediction (and error)."""
    return {"prompt": run.name, "n": len(ids), "failed": run.failed, "scores": scores, "usage": run.usage,
            "predictions": [{"id": rid, **reg, **({"error": err} if err else {})}
                            for rid, reg, err in zip(ids, run.regions, run.errors)]}


def format_table(results: list[dict], metric: str) -> str:
    def f(x):
        return "-" if x is None else f"{x:.3f}"

    head = ["prompt", "n", *REGIONS, "mean", "failed", "requests", "cached", "malformed 1st/all", "tokens in/out",
            "cost $"]
    lines = [f"{metric} per region", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for res in results:
        u, s = res["usage"], res["scores"]
        if u.get("backend") == "llm":
            calls = [str(u["requests"]), str(u["cache_hits"]),
                     f"{u.get('malformed_first_answers', '-')}/{u['malformed_answers']}",
                     f"{u['prompt_tokens']}/{u['completion_tokens']}", f"{u['cost_usd']:.4f}"]
        else:
            calls = ["-"] * 5
        lines.append("| " + " | ".join([res["prompt"], str(res["n"]), *(f(s[r]) for r in REGIONS), f(s["mean"]),
                                        str(res["failed"]), *calls]) + " |")
    return "\n".join(lines)


def usage_line(u: dict) -> str:
    if u.get("backend") != "llm":
        return "backend rules: no requests"
    served = f" (served as {u['served_model']})" if u.get("served_model") and u["served_model"] != u["model"] else ""
    return (f"model {u['model']}{served}, schema mode {u['schema_mode']}: requests {u['requests']}, tokens "
            f"{u['prompt_tokens']} in / {u['completion_tokens']} out, cache hits {u['cache_hits']}, malformed "
            f"answers {u['malformed_answers']} (first answers {u['malformed_first_answers']}), retries "
            f"{u['retries']}, failed {u['failed_reports']}, cost ${u['cost_usd']:.4f}")

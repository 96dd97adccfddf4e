"""`cxreport evaluate`: generate reports for a split with a trained model and score them.

Writes into ``OUT/``: ``hyps.jsonl`` (id, text, has_image, finding probabilities), ``refs.jsonl``,
``per_study.jsonl`` (every per-study score and label), ``metrics.json`` (model and baselines, CIs,
paired tests model vs baselines), ``summary.md`` and ``per_label_f1.png``.

Studies without an image are generated from the decoder alone with every finding state "unknown"
(``no_image="generate"``, flagged ``has_image: false``) or left out (``no_image="skip"``). The test
split is refused unless ``allow_test``: the project never scores test while developing.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from cxreport.errors import InputError
from cxreport.fsio import atomic_write_json, atomic_write_jsonl

log = logging.getLogger("cxreport.evaluate")


def generate_reports(model, tokenizer, cache, split: str, *, text_field: str = "findings", batch_size: int = 16,
                     beam: int = 1, max_len: int = 100, no_image: str = "generate", device: str = "cpu",
                     limit: int | None = None, oracle_findings: bool = False, progress: bool | None = False) -> list[dict]:
    """[{"id", "text", "reference", "has_image", "finding_probs"}] for studies of ``split`` with a report.
    ``progress``: a progress bar on stderr (None: only on a terminal).

    ``oracle_findings``: condition the decoder on the labeler's reading of each reference report
    instead of predicted findings: measures the decoder alone (does it write what it is told?).
    """
    from tqdm import tqdm

    from cxreport.data.dataset import Collate, StudyDataset
    from cxreport.inference.predict import batches, for_inference, generate, to_device

    if no_image not in ("generate", "skip"):
        raise InputError(f"--no-image {no_image!r}: choose generate or skip")
    ds = StudyDataset(cache, split, text_field=text_field, max_views=model.cfg.views.max_views,
                      require="both" if no_image == "skip" else "text")
    if limit:
        ds.rows, ds.labels = ds.rows[:limit], ds.labels[:limit]
    if not len(ds):
        raise InputError(f"{getattr(cache, 'path', cache)}: no {split!r} studies with a {text_field!r} report"
                         + (" and an image" if no_image == "skip" else ""))
    for_inference(model, device)
    out = []
    bar = tqdm(total=len(ds), desc=f"generate {split}", unit="study", disable=None if progress is None else not progress)
    for batch in batches(ds, Collate.for_model(model.cfg), batch_size):
        findings = None
        if oracle_findings:
            from cxreport.text.labeler import label_reports

            # A finding the reference does not mention enters the plan as the decoder learned it
            # (findings.unmentioned: negative for decoders trained with explicit negatives).
            unmentioned = model.cfg.findings.unmentioned
            findings = [{k: (unmentioned if v is None else v) for k, v in lab.items()}
                        for lab in label_reports(batch["text"])]
        b = to_device(batch, device)
        gen = generate(model, tokenizer, b["images"], b["image_mask"], b["view_ids"], findings=findings,
                       beam=beam, max_len=max_len)
        for sid, ref, has_img, g in zip(batch["study_id"], batch["text"], batch["has_image"].tolist(), gen):
            out.append({"id": sid, "text": g["text"], "reference": ref,
                        "has_image": bool(has_img), "finding_probs": g.get("finding_probs")})
        bar.update(len(gen))
    bar.close()
    return out


def evaluate(checkpoint, cache, split: str, out, *, allow_test: bool = False, beam: int | None = None, batch_size: int = 16,
             max_len: int | None = None, no_image: str = "generate", metrics=None, protocol: str = "r2gen",
             dataset: str | None = None, uncertain: str = "positive", labeler: str = "rules", bootstrap: int = 1000,
             permutations: int = 1000, seed: int = 0, baselines: bool = True, device: str = "cpu",
             limit: int | None = None, bertscore_model: str | None = None, oracle_findings: bool = False,
             progress: bool | None = False, labeler_opts: dict | None = None,
             radgraph_model: str = "radgraph-xl") -> dict:
    """Every precondition (split, metrics and their packages, the model, the baselines' training
    reports, the <unk> vocabulary, the output folder) is checked before the first report is generated."""
    from cxreport.checkpoint import load_checkpoint
    from cxreport.data.cache import Cache
    from cxreport.data.study import check_split
    from cxreport.inference.pipeline import resolve_model_path
    from cxreport.inference.predict import check_beam
    from cxreport.metrics.baselines import baseline_reports
    from cxreport.metrics.scoring import check_scoring, protocol_dataset, score_systems

    check_split(split, allow_test)
    check_beam(beam)  # before the model loads and the reports are generated
    out = Path(out)
    cache = cache if isinstance(cache, Cache) else Cache(cache)
    dataset = dataset or protocol_dataset(cache.meta.get("source"))
    metrics = check_scoring(metrics, protocol=protocol, dataset=dataset, uncertain=uncertain, labeler=labeler)
    model, tok, cfg = load_checkpoint(resolve_model_path(checkpoint), map_location=device)  # also "default"
    if tok is None:
        raise InputError(f"{checkpoint}: the checkpoint has no tokenizer/ folder; it cannot decode reports")
    beam = model.cfg.decoder.default_beam if beam is None else beam  # the model decodes as it was bundled
    run = cfg.get("run") or {}
    text_field = (run.get("data") or {}).get("text_field", "findings")
    max_len = max_len or (run.get("data") or {}).get("max_tokens", 100)
    info, base = {}, {}
    if baselines:  # they need the cache's training reports: fail now, not after generating
        _, base, info = baseline_reports(cache, split, field=text_field, seed=seed, allow_test=allow_test)
    vocab, vocab_note = unk_vocabulary(cache, text_field, dataset, tok) if protocol == "r2gen" else (None, "")
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    rows = generate_reports(model, tok, cache, split, text_field=text_field, batch_size=batch_size, beam=beam,
                            max_len=max_len, no_image=no_image, device=device, limit=limit,
                            oracle_findings=oracle_findings, progress=progress)
    gen_s = time.perf_counter() - t0
    refs = {r["id"]: r["reference"] for r in rows}
    systems = {"model": {r["id"]: r["text"] for r in rows}}
    systems |= {name: {sid: hyps[sid] for sid in refs} for name, hyps in base.items()}
    notes = _notes(checkpoint, split, beam, max_len, rows, gen_s, no_image, oracle_findings)
    if vocab_note:
        notes.append(f"r2gen <unk> vocabulary: {vocab_note}")
    if "retrieval" in info:
        notes.append(f"retrieval baseline: {info['retrieval']['note']}")
    res = score_systems(systems, refs, r2gen_vocab=vocab, metrics=metrics,
                        protocol=protocol, dataset=dataset, uncertain=uncertain, labeler=labeler, bootstrap=bootstrap, permutations=permutations,
                        pairs=[("model", b) for b in systems if b != "model"], seed=seed,
                        bertscore_model=bertscore_model, labeler_opts=labeler_opts, radgraph_model=radgraph_model)
    metrics_json = _write_outputs(out, rows, res, info, notes, {
        "checkpoint": str(checkpoint), "cache": str(cache.path), "split": split, "unk_vocabulary": vocab_note or None,
        "decoding": {"method": "beam" if beam > 1 else "greedy", "beams": beam, "max_len": max_len},
        "no_image": no_image, "oracle_findings": oracle_findings, "generation_seconds": gen_s})
    return metrics_json


def _notes(checkpoint, split, beam, max_len, rows, gen_s, no_image, oracle_findings) -> list[str]:
    """The summary's account of how the reports were made."""
    return [f"checkpoint: {checkpoint}; split {split}; decoding: {'beam ' + str(beam) if beam > 1 else 'greedy'}, "
            f"max {max_len} tokens; {len(rows)} studies generated in {gen_s:.1f} s",
            "findings: " + ("ORACLE - the labeler's reading of each reference report conditions the decoder "
                            "(measures the decoder, not the image model)" if oracle_findings
                            else "predicted by the model's finding head"),
            f"studies without an image: {sum(not r['has_image'] for r in rows)} scored"
            + (" (generated with every finding state unknown, flagged has_image=false)" if no_image == "generate"
               else " (--no-image skip: left out)")]


def _write_outputs(out: Path, rows: list[dict], res: dict, info: dict, notes: list[str], head: dict) -> dict:
    """hyps/refs/per_study JSONL, metrics.json (``head`` first), the plot and summary.md."""
    from cxreport.metrics.summary import per_label_plot, write_summary

    comparisons = res.get("comparisons")
    per_study = res["systems"]["model"].pop("per_study")
    for r, p in zip(rows, per_study):
        p.update(has_image=r["has_image"])
    atomic_write_jsonl(out / "hyps.jsonl", ({"id": r["id"], "text": r["text"], "has_image": r["has_image"],
                                             "finding_probs": r["finding_probs"]} for r in rows))
    atomic_write_jsonl(out / "refs.jsonl", ({"id": r["id"], "text": r["reference"]} for r in rows))
    atomic_write_jsonl(out / "per_study.jsonl", per_study)
    for r in res["systems"].values():
        r.pop("per_study", None)
    metrics_json = {**head, **res["systems"]["model"],
                    "baselines": {k: v for k, v in res["systems"].items() if k != "model"},
                    "baselines_info": {k: v for k, v in info.items() if k != "retrieval"} |
                    ({"retrieval": {k: v for k, v in info["retrieval"].items() if k != "per_study"}}
                     if "retrieval" in info else {}),
                    "comparisons": comparisons}
    atomic_write_json(out / "metrics.json", metrics_json)
    plot = per_label_plot(res["systems"], out / "per_label_f1.png")
    write_summary(out / "summary.md", f"Evaluation on {head['split']}", res["systems"], comparisons, notes,
                  plot.name if plot else None)
    return metrics_json


def unk_vocabulary(cache, text_field: str, dataset: str, tokenizer) -> tuple[set[str] | None, str]:
    """(R2Gen's reference vocabulary, where it came from). R2Gen builds it from the training
    reports; a cache without a training split (a test-only cache) borrows the checkpoint's word
    tokenizer, which was built from the training reports the model saw. Without either, no
    ``<unk>`` mapping: an empty vocabulary would turn every reference word into ``<unk>``."""
    from cxreport.metrics.baselines import train_vocabulary
    from cxreport.text.tokenizer import SPECIALS

    vocab = train_vocabulary(cache, text_field, dataset)
    if vocab:
        return vocab, f"the cache's training reports ({len(vocab)} words)"
    words = getattr(tokenizer, "vocab", None)
    if getattr(tokenizer, "kind", "") == "word" and words:
        vocab = set(words) - set(SPECIALS)
        return vocab, f"the checkpoint tokenizer's {len(vocab)} words (the cache has no training reports)"
    log.warning("no <unk> mapping: the cache has no training reports and the checkpoint's %s tokenizer has "
                "no word vocabulary", getattr(tokenizer, "kind", "?"))
    return None, "not applied (no training reports in the cache, no word vocabulary in the checkpoint)"

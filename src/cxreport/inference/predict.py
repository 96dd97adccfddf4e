"""The one batch -> model -> decode loop.

``cxreport generate`` (Pipeline), ``cxreport evaluate``, ``cxreport evaluate-findings`` and the
service all run a trained model through these functions, so the same checkpoint, study and
decoding settings give the same text everywhere: tokens are always decoded by ``decode``.
"""

from __future__ import annotations

import re

_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])")
_SENTENCE_START = re.compile(r"(^|[.!?]\s+)([a-z])")


def detokenize(text: str) -> str:
    """Word tokenizers decode as 'the heart is enlarged .': join punctuation, capitalise sentences."""
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(text.split()))
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)


def decode(tokenizer, token_ids) -> str:
    """Report text from generated token ids: the only way tokens become text."""
    return detokenize(tokenizer.decode(token_ids))


def for_inference(model, device: str = "cpu", runtime: str | None = None):
    """``model`` in eval mode on ``device``, laid out for inference. On the CPU the image encoder
    runs in ONNX Runtime when it is installed (``models.onnx_runtime``: 2.7x faster than PyTorch
    at one thread; ``runtime`` or ``CXREPORT_RUNTIME`` = auto / torch / onnxruntime); in PyTorch its
    weights go channels-last, which oneDNN runs faster (1.25x at batch 8, 1.4x at batch 1). Either
    way outputs equal the plain model's to ~1e-5. Every command that runs a trained model calls
    this, so they all compute the same numbers."""
    import torch

    from cxreport.inference.threads import apply_to_torch
    from cxreport.models import onnx_runtime

    apply_to_torch()
    model.eval().to(device)
    encoder = getattr(model, "encoder", None)
    if str(device) == "cpu" and encoder is not None:
        encoder.to(memory_format=torch.channels_last)
    if encoder is not None:
        onnx_runtime.attach(encoder, runtime, str(device))
    return model


def warm_up(model) -> None:
    """Run the image encoder once on a blank film, so that a service's first request does not pay
    for the ONNX export (about 1-2 s) at the thread count now set."""
    if getattr(model, "backend", "torch") == "lean":
        model.warm_up()
        return
    import torch

    size = model.cfg.preprocess.image_size
    if getattr(getattr(model, "encoder", None), "runtime", None) is None:
        return
    with torch.no_grad():
        model.encoder(torch.zeros(1, 1, size, size, device=model._device()))


def check_beam(beam) -> int | None:
    """The one beam limit of the CLI, the Python API and the HTTP service (models.config.MAX_BEAM);
    None means the model's own default."""
    from cxreport.errors import InputError
    from cxreport.models.config import MAX_BEAM

    if beam is not None and not 1 <= int(beam) <= MAX_BEAM:
        raise InputError(f"beam={beam}: choose 1 (greedy) .. {MAX_BEAM}")
    return None if beam is None else int(beam)


def generate(model, tokenizer, images, image_mask, view_ids, *, findings=None, overrides=None,
             beam: int | None = None, max_len: int | None = None, faithful: bool | None = None,
             prior: bool = False, threshold: float | None = None, population=None,
             coverage_line: bool = False) -> list[dict]:
    """One batch -> ``[{"text", "token_ids", "finding_probs", "finding_states", "plan_check"}]``.

    ``findings`` (one plan dict per study, or None) conditions the decoder instead of the model's
    own finding head; ``overrides`` (a dict per study, or None) sets states on top of the plan (a
    radiologist's edits). Decoding settings left at None are the model's own (``decoder`` section
    of its config: default beam, length, n-gram blocking). ``faithful`` (default: the model's
    ``decoder.faithful``) reranks beam search's N-best list by agreement with the plan and repairs
    the chosen text until our labeler reads back the plan (``text.faithful``); ``plan_check`` says
    what that changed. ``prior``: the input includes a prior study or comparison text.
    ``threshold`` replaces the positive threshold of every assessed finding in the predicted plan.
    ``population`` picks each study's calibration (``ReportModel.generate``). ``coverage_line``
    ends each report with the findings its plan leaves not assessed (``text.coverage``): what a
    reader gets; evaluation against reference texts leaves it off. ``model`` is either backend: a
    PyTorch ``ReportModel`` or the runtime without PyTorch (``models.runtime.LeanModel``, NumPy
    arrays in), which never imports torch here."""
    from contextlib import nullcontext

    from cxreport.models.decoding import DecodeOptions
    from cxreport.text.coverage import with_coverage
    from cxreport.text.faithful import make_faithful

    opts = DecodeOptions(beam=beam, max_len=max_len, faithful=faithful, prior=prior).resolve(model.cfg)
    if getattr(model, "backend", "torch") == "lean":
        no_grad = nullcontext()
    else:
        import torch

        no_grad = torch.no_grad()
    with no_grad:
        outs = model.generate(images, image_mask, view_ids, findings, overrides=overrides, max_len=opts.max_len,
                              num_beams=opts.beam, no_repeat_ngram=opts.no_repeat_ngram, prior=prior,
                              num_return=opts.beam if opts.faithful else 1, threshold=threshold,
                              population=population)
    n_views = image_mask.sum(1).tolist() if image_mask is not None else [None] * len(outs)
    results = []
    for o, views in zip(outs, n_views):
        texts = [decode(tokenizer, c["token_ids"]) for c in o.pop("candidates", None) or [o]]
        check = None
        if opts.faithful and o.get("finding_states") is not None:
            text, check = make_faithful(texts, o["finding_states"], prior=prior, views=int(views) if views else None,
                                        unjudged=_unjudged(o.get("finding_plan")) if findings is None else ())
        else:
            text = texts[0]
        if coverage_line and o.get("finding_plan") is not None:
            text = with_coverage(text, o["finding_plan"])
        results.append({**o, "text": text, "plan_check": check})
    return results


def _unjudged(plan: dict | None) -> list[str]:
    """Findings the finding head's plan leaves not assessed (the user's edits included): a
    sentence asserting or denying one is a claim without evidence, normal report or not."""
    if not plan:
        return []
    return [k for k, state in plan.items() if state == "not_assessed" and k != "No Finding"]


def batches(dataset, collate, batch_size: int, indices=None):
    """Collated batches of ``dataset`` in order (``indices``: a subset, e.g. one rank's shard)."""
    idx = list(range(len(dataset))) if indices is None else list(indices)
    for start in range(0, len(idx), batch_size):
        yield collate([dataset[i] for i in idx[start:start + batch_size]])


def to_device(batch: dict, device) -> dict:
    """Move a collated batch's tensors to ``device`` (lists of ids and texts stay)."""
    return {k: (v.to(device, non_blocking=True) if hasattr(v, "to") else v) for k, v in batch.items()}


def predict_findings(model, dataset, batch_size: int = 32, progress: bool | None = False):
    """(probabilities N x L, targets N x L with NaN unknown, study ids) of the finding head on a
    dataset of items (``StudyDataset``); images only, no text generated. ``progress``: a bar on
    stderr (None: only on a terminal)."""
    import numpy as np
    import torch
    from tqdm import tqdm

    from cxreport.data.dataset import Collate

    collate = Collate.for_model(model.cfg)
    model.eval()
    probs, targets, ids = [], [], []
    bar = tqdm(total=len(dataset), desc="findings", unit="study", disable=None if progress is None else not progress)
    with torch.no_grad():
        for batch in batches(dataset, collate, batch_size):
            bar.update(len(batch["study_id"]))
            img_tok, img_mask = model.encode_images(batch["images"], batch["image_mask"], batch["view_ids"])
            probs.append(model.finding_probs(img_tok, img_mask, batch["view_ids"]).float().numpy())
            targets.append(batch["finding_targets"].numpy())
            ids += batch["study_id"]
    bar.close()
    return np.concatenate(probs), np.concatenate(targets), ids

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


def generate(model, tokenizer, images, image_mask, view_ids, *, findings=None, beam: int = 1,
             max_len: int = 100) -> list[dict]:
    """One batch -> ``[{"text", "token_ids", "finding_probs"}]`` per study.

    ``findings`` (one plan dict per study, or None) conditions the decoder instead of the model's
    own finding head; ``beam`` 1 is greedy search."""
    import torch

    with torch.no_grad():
        outs = model.generate(images, image_mask, view_ids, findings, max_len=int(max_len),
                              method="beam" if beam > 1 else "greedy", num_beams=max(1, int(beam)))
    return [{**o, "text": decode(tokenizer, o["token_ids"])} for o in outs]


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
            probs.append(torch.sigmoid(model.finding_logits(img_tok, img_mask, batch["view_ids"])).float().numpy())
            targets.append(batch["finding_targets"].numpy())
            ids += batch["study_id"]
    bar.close()
    return np.concatenate(probs), np.concatenate(targets), ids

"""`StudyDataset` (a prepared cache → plain dicts with fixed keys) and `collate` (pad + masks).

Every item has the same keys whatever the source, so image+report pairs, labelled images without
reports (NIH, Kermany) and reports without images mix in one batch:

    study_id str, images uint8 V×S×S (V may be 0), view_ids list[int], text str,
    input_ids list[int] ([] without text or tokenizer), labels float32 (14,) with NaN = unknown

Augmentation is geometric and photometric only, and never a horizontal flip: the heart is on the
left, and a flipped film teaches the model dextrocardia.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from cxreport.data.cache import Cache
from cxreport.labels import CHEXPERT_LABELS, VIEW_IDS, view_group

ITEM_KEYS = ("study_id", "images", "view_ids", "text", "input_ids", "labels")


def select_views(views: list[str], max_views: int) -> list[int]:
    """Indices of the views to use: first frontal, first lateral, then the rest in order."""
    groups = [view_group(v) for v in views]
    order = []
    for g in ("frontal", "lateral"):
        if g in groups:
            order.append(groups.index(g))
    order += [i for i in range(len(views)) if i not in order]
    return order[:max_views]


def labels_vector(labels: dict | None) -> np.ndarray:
    vec = np.full(len(CHEXPERT_LABELS), np.nan, dtype=np.float32)
    for i, name in enumerate(CHEXPERT_LABELS):
        v = (labels or {}).get(name)
        if v is not None and v != "":
            vec[i] = float(v)
    return vec


class StudyDataset(Dataset):
    """Studies of one split of a prepared cache.

    ``tokenizer`` (anything with ``encode(text) -> list[int]``) turns the report into token ids;
    ``label_fn`` (texts -> list of CheXpert dicts, e.g. the rule labeler) fills labels of studies
    that have a report but no labels of their own; ``require`` keeps only studies with ``image``,
    ``text`` or ``both``.
    """

    def __init__(self, cache: Cache | str, split: str | None = "train", *, tokenizer=None,
                 text_field: str = "findings", max_views: int = 2, require: str | None = None,
                 label_fn: Callable | None = None, text_fn: Callable[[str], str] | None = None,
                 max_tokens: int | None = None):
        self.cache = cache if isinstance(cache, Cache) else Cache(cache)
        rows = self.cache.image_rows(split)
        if require in ("image", "both"):
            rows = [r for r in rows if r.get("image_index")]
        if require in ("text", "both"):
            rows = [r for r in rows if (r.get(text_field) or "").strip()]
        self.rows = rows
        self.tokenizer, self.text_field, self.max_views = tokenizer, text_field, max_views
        self.text_fn, self.max_tokens = text_fn, max_tokens
        self.labels = [labels_vector(r.get("labels")) for r in rows]
        if label_fn is not None:
            need = [i for i, r in enumerate(rows) if not r.get("labels") and (r.get(text_field) or "").strip()]
            # Labels read the text the model learns from (after ``text_fn``), so a plan never holds a
            # finding whose sentence was cleaned away.
            texts = [rows[i][text_field] for i in need]
            texts = [text_fn(t) for t in texts] if text_fn is not None else texts
            for i, lab in zip(need, label_fn(texts)):
                self.labels[i] = labels_vector(lab)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        r = self.rows[i]
        pick = select_views(r.get("views", []), self.max_views)
        idx = [r["image_index"][k] for k in pick]
        images = torch.from_numpy(np.stack([self.cache.images[j] for j in idx])) if idx else \
            torch.zeros((0, self.cache.size, self.cache.size), dtype=torch.uint8)
        text = (r.get(self.text_field) or "").strip()
        if text and self.text_fn is not None:
            text = self.text_fn(text)
        ids = list(self.tokenizer.encode(text)) if (text and self.tokenizer is not None) else []
        if self.max_tokens and len(ids) > self.max_tokens:
            ids = ids[: self.max_tokens]
        return {"study_id": r["study_id"], "images": images,
                "view_ids": [VIEW_IDS[view_group(r["views"][k])] for k in pick],
                "text": text, "input_ids": ids, "labels": torch.from_numpy(self.labels[i].copy())}


def _augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Small random affine (rotate ±7°, scale 0.9-1.1, shift ±5%) + brightness/contrast. x: N×1×H×W."""
    n = x.shape[0]
    r = torch.rand((n, 5), generator=generator)
    ang = (r[:, 0] * 2 - 1) * math.radians(7)
    sc = 1 + (r[:, 1] * 2 - 1) * 0.1
    tx, ty = (r[:, 2] * 2 - 1) * 0.1, (r[:, 3] * 2 - 1) * 0.1
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    contrast = 1 + (r[:, 4:5] * 2 - 1).view(n, 1, 1, 1) * 0.15
    mean = x.mean(dim=(2, 3), keepdim=True)
    return ((x - mean) * contrast + mean).clamp(0, 1)


class Collate:
    """Pad a list of items into the model's batch (see the module docstring for the item keys).

    Batch: images float B×V×1×H×W in [0,1], image_mask bool B×V, view_ids long B×V,
    input_ids long B×T (bos … eos, pad_id after), attention_mask bool B×T, finding_targets float
    B×14 (NaN unknown), has_image bool B, has_text bool B, study_id list, text list.
    """

    def __init__(self, pad_id: int = 0, bos_id: int | None = None, eos_id: int | None = None,
                 image_size: int | None = None, max_views: int = 2, augment: bool = False):
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.image_size, self.max_views, self.augment = image_size, max_views, augment

    @classmethod
    def for_model(cls, cfg, **kw) -> "Collate":
        """The collate a model with config ``cfg`` (a ModelConfig) was trained with: its input size
        and number of views; ``kw`` adds the token ids (pad/bos/eos) or augmentation."""
        return cls(image_size=cfg.preprocess.image_size, max_views=cfg.views.max_views, **kw)

    def images(self, studies) -> tuple:
        """(images, image_mask, view_ids) for ``[(uint8 V x S x S views, [view id per view])]``: the
        image half of the batch alone, for inference (no text, no labels)."""
        return self._images([{"images": imgs, "view_ids": list(ids)} for imgs, ids in studies])

    def _images(self, items):
        b = len(items)
        v = max(1, min(self.max_views, max(it["images"].shape[0] for it in items)))
        src = next((it["images"] for it in items if it["images"].shape[0]), None)
        side = self.image_size or (src.shape[-1] if src is not None else 1)
        images = torch.zeros((b, v, 1, side, side), dtype=torch.float32)
        mask = torch.zeros((b, v), dtype=torch.bool)
        view_ids = torch.full((b, v), VIEW_IDS["unknown"], dtype=torch.long)
        for i, it in enumerate(items):
            k = min(v, it["images"].shape[0])
            if not k:
                continue
            x = it["images"][:k].unsqueeze(1).float().div_(255.0)
            if x.shape[-1] != side:
                x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
            if self.augment:
                x = _augment(x)
            images[i, :k] = x
            mask[i, :k] = True
            view_ids[i, :k] = torch.tensor(it["view_ids"][:k])
        return images, mask, view_ids

    def __call__(self, items: list[dict]) -> dict:
        images, image_mask, view_ids = self._images(items)
        seqs = []
        for it in items:
            ids = list(it["input_ids"])
            if ids:
                if self.bos_id is not None and ids[0] != self.bos_id:
                    ids = [self.bos_id] + ids
                if self.eos_id is not None and ids[-1] != self.eos_id:
                    ids = ids + [self.eos_id]
            seqs.append(ids)
        t = max(1, max(len(s) for s in seqs))
        input_ids = torch.full((len(items), t), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(items), t), dtype=torch.bool)
        for i, s in enumerate(seqs):
            if s:
                input_ids[i, : len(s)] = torch.tensor(s)
                attention[i, : len(s)] = True
        return {
            "images": images, "image_mask": image_mask, "view_ids": view_ids,
            "input_ids": input_ids, "attention_mask": attention,
            "finding_targets": torch.stack([it["labels"] for it in items]),
            "has_image": image_mask.any(dim=1), "has_text": attention.any(dim=1),
            "study_id": [it["study_id"] for it in items], "text": [it["text"] for it in items],
        }

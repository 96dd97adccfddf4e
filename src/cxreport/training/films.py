"""The labelled films a fitting command reads from prepared caches, with their pooled features.

The finding head, its calibration and the gate are fitted on frozen encoder features
(``training.feature_cache``), so a fit reads (features, labels, patient, population) per film, never
pixels twice. One study gives one film to the head (its frontal view, else its first): NIH and
Kermany label films, and the head is trained on frontal films only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxreport.data.cache import Cache
from cxreport.data.dataset import labels_vector, select_views
from cxreport.labels import view_group


@dataclass
class Films:
    """Films of one or more caches, row-aligned: features N x C, labels N x L (NaN unknown), the
    source index of each film, a patient key (source-qualified), and the cache image index."""

    x: np.ndarray
    y: np.ndarray
    dom: np.ndarray
    patients: list[str]
    image_index: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, keep) -> "Films":
        keep = np.asarray(keep)
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep
        return Films(self.x[idx], self.y[idx], self.dom[idx], [self.patients[i] for i in idx], self.image_index[idx])


def frontal_rows(cache: Cache, splits: tuple[str, ...], keep_labels: list[str] | None, labels: list[str]):
    """(image index, label vector, patient id) of each study's frontal (else first) film; findings
    outside ``keep_labels`` (when given) are masked: that source does not label them."""
    idx, ys, pats = [], [], []
    for r in cache.rows:
        if r["split"] not in splits or not r.get("image_index"):
            continue
        pick = select_views(r.get("views", []), 1)[0]
        if view_group(r["views"][pick]) == "lateral":
            continue  # a study of laterals only: the head reads frontal films
        y = labels_vector(r.get("labels"))
        if keep_labels is not None:
            y[[i for i, n in enumerate(labels) if n not in keep_labels]] = np.nan
        idx.append(r["image_index"][pick])
        ys.append(y)
        pats.append(f"{cache.meta.get('source')}:{r.get('patient_id') or r['study_id']}")
    y = np.stack(ys) if ys else np.zeros((0, len(labels)), np.float32)
    return np.array(idx, dtype=int), y, pats


def gate_films(cache: Cache, splits, frontal_only: bool = True):
    """(image indices, view groups, patient ids) of the cache's images in ``splits``."""
    idx, views, pats = [], [], []
    for r in cache.rows:
        if r["split"] in splits:
            for i, v in zip(r.get("image_index") or [], r.get("views") or []):
                if not frontal_only or view_group(v) != "lateral":
                    idx.append(i)
                    views.append(view_group(v))
                    pats.append(f"{r.get('source')}:{r.get('patient_id') or r['study_id']}")
    return np.array(idx, dtype=int), views, pats


def labelled_films(sources: list, model, features_dir, splits: tuple[str, ...], labels: list[str],
                   progress: bool = True) -> Films:
    """Frontal films of every source (``cache``, optional ``labels`` it is limited to), with the
    pooled features of ``model``'s encoder at its input size (computed once per cache)."""
    from cxreport.training.feature_cache import feature_path, pooled_features

    xs, ys, doms, pats, idxs = [], [], [], [], []
    for d, src in enumerate(sources):
        cache = Cache(src.cache)
        feats = pooled_features(model.encoder, cache, feature_path(features_dir, cache, model),
                                model.cfg.preprocess.image_size, progress=progress)
        idx, y, p = frontal_rows(cache, splits, src.labels, labels)
        xs.append(feats[idx])
        ys.append(y)
        doms.append(np.full(len(idx), d))
        pats += p
        idxs.append(idx)
    return Films(np.concatenate(xs), np.concatenate(ys), np.concatenate(doms), pats, np.concatenate(idxs))


def draw_patients(films: Films, n: int, seed: int) -> Films:
    """At most ``n`` films, drawn whole patients at a time (seeded): a site's first ``n`` films
    never split a patient between the draw and the rest."""
    if n <= 0 or n >= len(films):
        return films
    rng = np.random.default_rng(seed)
    order = {}
    for i, p in enumerate(films.patients):
        order.setdefault(p, []).append(i)
    keep: list[int] = []
    for p in rng.permutation(sorted(order)):
        if len(keep) + len(order[p]) > n:
            continue
        keep += order[p]
        if len(keep) == n:
            break
    return films.take(np.sort(np.array(keep, dtype=int)))

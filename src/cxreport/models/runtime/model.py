"""``LeanModel``: the report model without PyTorch, behind ``ReportModel``'s inference interface.

``inference.predict.generate`` (the one prediction loop) and ``Pipeline`` call ``cfg``,
``labels``, ``thresholds()`` and ``generate(...)`` on either backend and get the same outputs:
token ids, scores, N-best candidates, calibrated finding probabilities (a population's own head
included), the plan with the user's edits and the head's own plan, the finding states the
decoder was given, and each study's population. The image encoder runs in ONNX
Runtime from a weightless graph (``graphs``), everything after it in NumPy (``image_side``,
``decoder``, ``search``); the plan, its calibration per population and the user's edits come from
the same torch-free modules the PyTorch model uses (``finding_states``, ``plan_edits``).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np

from cxreport.errors import InputError
from cxreport.models.finding_states import calibrated_probs, finding_states, plan_codes
from cxreport.models.plan_cache import PlanCache
from cxreport.models.plan_edits import annotate_outputs, override_codes, per_study, state_codes, study_populations
from cxreport.models.runtime.decoder import Decoder
from cxreport.models.runtime.graphs import ENCODER_CHUNK, EncoderSession
from cxreport.models.runtime.image_side import ImageSide
from cxreport.models.runtime.ops import F32
from cxreport.models.runtime.search import generate_tokens
from cxreport.models.runtime.weights import count_parameters, read_weights


class LeanModel:
    backend = "lean"  # ReportModel has none: getattr(model, "backend", "torch")

    def __init__(self, cfg, weights: dict[str, np.ndarray], graphs: Path, *, threads: int = 1,
                 chunk: int = ENCODER_CHUNK, version: str = ""):
        fc = cfg.findings
        if fc.below_threshold not in ("unknown", "not_assessed", "negative"):
            raise InputError(f"findings.below_threshold {fc.below_threshold!r}: choose not_assessed or negative")
        self.cfg, self.labels = cfg, list(fc.labels)
        tied = ("decoder.head.weight",) if cfg.decoder.tie_embeddings else ()
        self._parameters = count_parameters(weights, tied)
        encoder = EncoderSession(graphs, weights, threads=threads, chunk=chunk)
        self.graphs = Path(graphs)
        self.image_side = ImageSide(cfg, weights, encoder)
        self.decoder = Decoder(cfg.decoder, weights, cfg.d_model)
        self.use_plan_cache = True  # as ReportModel: False decodes every study (benchmarks)
        self._plan_cache = PlanCache(version=lambda: version)
        self._blas = None

    @classmethod
    def load(cls, checkpoint: Path, cfg, graphs: Path, **kw) -> "LeanModel":
        """From a checkpoint folder's model.safetensors (``cfg``: its ModelConfig)."""
        return cls(cfg, read_weights(checkpoint), graphs, **kw)

    # ---- what Pipeline asks of a model ---------------------------------------------------
    def thresholds(self) -> np.ndarray:
        """Decision threshold per finding: ``findings.thresholds`` where given, else ``threshold``."""
        fc = self.cfg.findings
        unknown = set(fc.thresholds) - set(self.labels)
        if unknown:
            raise InputError(f"findings.thresholds: unknown label(s) {sorted(unknown)}")
        return np.array([float(fc.thresholds.get(n, fc.threshold)) for n in self.labels], dtype=F32)

    def num_parameters(self) -> int:
        return self._parameters

    def warm_up(self) -> None:
        """One blank film through the encoder, so a service's first request finds its memory ready."""
        size = int(self.cfg.preprocess.image_size)
        self.image_side.encode_films(np.zeros((1, 1, size, size), F32))

    def head_reads(self, image_mask: np.ndarray, view_ids: np.ndarray | None) -> np.ndarray:
        """Per study: does the finding head have a film it was trained for (``ReportModel.head_reads``)."""
        has = image_mask.any(1)
        if self.cfg.views.head_views != "frontal" or view_ids is None or view_ids.shape != image_mask.shape:
            return has
        return has & ~((view_ids == 1) | ~image_mask).all(1)

    # ---- generation ---------------------------------------------------------------------
    def one_blas_thread(self):
        """A context in which NumPy's BLAS uses one thread. The head and decoder multiply matrices of
        at most 16 x 1024: a second thread costs more in hand-offs than it saves (8 plans, beam 2,
        60 tokens: 0.56 s with one OpenBLAS thread, 1.51 s with two, on 2 busy cores). The encoder's
        ONNX Runtime pool is not affected. Without threadpoolctl: BLAS as configured."""
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return nullcontext()
        if self._blas is None:
            self._blas = ThreadpoolController()
        return self._blas.limit(limits=1, user_api="blas")

    def generate(self, images=None, image_mask=None, view_ids=None, findings=None, **kw) -> list[dict]:
        """``ReportModel.generate`` without PyTorch (greedy or beam search; arrays are NumPy)."""
        with self.one_blas_thread():
            return self._generate(images, image_mask, view_ids, findings, **kw)

    def _generate(self, images, image_mask, view_ids, findings, *, max_len: int | None = None,
                  method: str | None = None, num_beams: int | None = None, length_penalty: float = 1.0,
                  no_repeat_ngram: int | None = None, overrides=None, num_return: int = 1, prior: bool = False,
                  threshold: float | None = None, population=None, **unused) -> list[dict]:
        dc = self.cfg.decoder
        num_beams = dc.default_beam if num_beams is None else num_beams
        method = method or ("beam" if num_beams > 1 else "greedy")
        max_len = dc.default_max_len if max_len is None else max_len
        suppress = list(dc.suppress_ids) + ([] if prior else list(getattr(dc, "comparison_ids", [])))
        if images is None:
            b = len(findings) if isinstance(findings, (list, tuple)) else 1
            tok, tok_mask, pooled = np.zeros((b, 0, self.cfg.d_model), F32), np.zeros((b, 0), bool), None
        else:
            images = np.asarray(images, dtype=F32)
            if images.ndim == 4:
                images = images[:, None]
            b, v = images.shape[:2]
            image_mask = np.ones((b, v), bool) if image_mask is None else np.asarray(image_mask, bool)
            if view_ids is None:
                view_ids = np.broadcast_to(np.minimum(np.arange(v), 2), (b, v))
            view_ids = np.asarray(view_ids)
            tok, tok_mask, pooled = self.image_side.encode(images, image_mask, view_ids)
        has_image = tok_mask.any(1)
        pops = study_populations(population, pooled, image_mask, view_ids, b)
        probs = None
        if tok.shape[1]:
            logits = self.image_side.finding_logits(tok, tok_mask, view_ids)
            if self.image_side.population_heads and pooled is not None:
                view_mask = tok_mask.reshape(b, pooled.shape[1], -1).any(-1)
                logits = self.image_side.population_logits(logits, pooled, view_mask, view_ids, pops)
            probs = calibrated_probs(logits, self.cfg.findings, self.labels, pops)
        reads = (self.head_reads(image_mask, view_ids) if images is not None and view_ids.shape == image_mask.shape
                 else has_image) & has_image
        plans = [finding_states(dict(zip(self.labels, probs[i].tolist())) if probs is not None and reads[i] else None,
                                self.cfg.findings, self.labels, threshold, pops[i]) for i in range(b)]
        states = self._states_for(findings, plans, b) if self.image_side.null is None else None
        if overrides is not None and states is not None:
            edits = per_study(overrides, b, "overrides")
            states = np.array([override_codes(row, o, self.labels) for row, o in zip(states.tolist(), edits)],
                              dtype=np.int64).reshape(states.shape)
        mem, mem_mask = self.image_side.memory(tok, tok_mask, states)
        decode = dict(max_len=max_len, method=method, num_beams=num_beams, length_penalty=length_penalty,
                      no_repeat_ngram=dc.no_repeat_ngram if no_repeat_ngram is None else no_repeat_ngram,
                      temperature=1.0, top_k=0, top_p=1.0, use_cache=True, suppress_ids=suppress,
                      num_return=num_return)
        if self.use_plan_cache and states is not None and not self.cfg.findings.image_memory:
            outs = self._decode_plans(states, mem, mem_mask, decode)
        else:
            outs = generate_tokens(self.decoder, mem, mem_mask, **decode)
        return annotate_outputs(outs, self.labels, probs, has_image, states, plans, overrides, pops)

    def _states_for(self, findings, plans: list[dict], b: int) -> np.ndarray:
        rows = per_study(findings, b, "findings")
        below = self.cfg.findings.below_threshold
        states = np.array([plan_codes(p, self.labels, below) for p in plans], dtype=np.int64).reshape(b, -1)
        for i, f in enumerate(rows):
            if f is not None:
                states[i] = state_codes(f, self.labels)
        return states

    def _decode_plans(self, states: np.ndarray, mem, mem_mask, decode: dict) -> list[dict]:
        """Each distinct plan decoded once and remembered (``ReportModel._decode_plans``)."""
        return self._plan_cache.decode(states.tolist(), decode, lambda rows: generate_tokens(
            self.decoder, mem[rows], mem_mask[rows], **decode))

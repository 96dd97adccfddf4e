"""Reports from X-ray files: ``load_model()`` -> ``Pipeline.generate([images]) -> StudyReport``.

    from cxreport import load_model
    m = load_model()                      # the bundled model, CPU
    r = m.generate(["pa.png", "lat.png"])
    r.report, r.findings["Cardiomegaly"].probability, r.to_dict()   # inference/result.py

Images are prepared exactly as the training cache prepared them (``load_image`` with the same
safety limits, ``letterbox`` to the cache size, then the batch collate's bilinear+antialias resize
to the model's input size), so a model sees at inference what it saw in training. Never flipped.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cxreport.data.images import MAX_PIXELS, MIN_SIDE
from cxreport.errors import InputError
from cxreport.inference.gate import Gate, GateParams, NotARadiograph
from cxreport.inference.intake import take_in, would_have
from cxreport.inference.predict import detokenize, generate  # noqa: F401  (detokenize: public here too)
from cxreport.inference.result import Finding, Identity, StudyError, StudyReport
from cxreport.labels import parse_findings
from cxreport.models.decoding import DecodeOptions
from cxreport.text.coverage import without_coverage
from cxreport.text.regions import split_regions

PACKAGE_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_MODEL = "default"
# Every result carries it (JSON, HTTP, CLI text): outputs travel without the README.
DISCLAIMER = ("Research software, not for clinical use: a draft from a research model that misses and invents "
              "findings. A radiologist's reading is the only diagnosis.")
# The cache letterboxes to 256 px by default (`cxreport data prepare --size`); a checkpoint may
# record another size in preprocessing.json as "letterbox_size".
CACHE_SIZE = 256


def default_model_dir() -> Path:
    return PACKAGE_WEIGHTS / DEFAULT_MODEL


def resolve_model_path(name_or_path: str | os.PathLike | None = None) -> Path:
    """A checkpoint folder from a bundled name, a checkpoint folder, a run folder (its ``best/``) or a
    Hugging Face Hub model ``hf://OWNER/NAME[@REVISION]``."""
    if name_or_path is None:
        name_or_path = os.environ.get("CXREPORT_MODEL") or DEFAULT_MODEL
    raw = str(name_or_path)
    from cxreport.checkpoint import resolve_checkpoint
    from cxreport.hub import is_hub_ref

    if is_hub_ref(raw):
        return resolve_checkpoint(raw)  # downloaded into (or read from) the Hugging Face cache
    path = Path(raw).expanduser()
    if not path.exists() and re.fullmatch(r"[A-Za-z0-9_.-]+", raw) and (PACKAGE_WEIGHTS / raw).exists():
        path = PACKAGE_WEIGHTS / raw
    if raw == DEFAULT_MODEL and not path.exists():
        raise InputError(
            f"the bundled default model is missing ({default_model_dir()} has no checkpoint): this install "
            "ships without weights. Pass a trained checkpoint or run folder with --model PATH "
            "(Python: load_model('PATH')), or set CXREPORT_MODEL=PATH")
    if not path.exists():
        raise InputError(f"{raw}: no such model (give a checkpoint folder, a run folder with best/, "
                         f"hf://OWNER/NAME, or a bundled name: {', '.join(bundled_models()) or 'none installed'})")
    return resolve_checkpoint(path)


def bundled_models() -> list[str]:
    if not PACKAGE_WEIGHTS.is_dir():
        return []
    return sorted(p.name for p in PACKAGE_WEIGHTS.iterdir() if (p / "config.json").is_file())


def load_model(name_or_path: str | os.PathLike | None = None, *, device: str = "cpu",
               threshold: float | None = None, runtime: str | None = None) -> "Pipeline":
    """The bundled model (no argument), a bundled name, a checkpoint folder, a run folder or
    ``hf://OWNER/NAME[@REVISION]`` (downloaded once into the Hugging Face cache). ``runtime``
    (default ``CXREPORT_RUNTIME``, else auto): lean (no PyTorch), torch, onnxruntime (PyTorch with
    the encoder in ONNX Runtime) or auto (lean when the checkpoint has its graphs; ``inference.backend``)."""
    from cxreport.inference.backend import open_model

    path = resolve_model_path(name_or_path)
    model, tok, cfg = open_model(path, runtime, device)
    if tok is None:
        raise InputError(f"{path}: checkpoint has no tokenizer/ folder, so its tokens cannot be turned into text")
    prep = {}
    if (path / "preprocessing.json").is_file():
        prep = json.loads((path / "preprocessing.json").read_text())
    name = path.parent.name if path.name == "best" else path.name
    from cxreport.hub import is_hub_ref, parse_hub_ref

    if is_hub_ref(str(name_or_path)):  # the snapshot folder is named by its commit: name the repo too
        name = f"hf://{parse_hub_ref(str(name_or_path))[0]}@{path.name[:12]}"
    card = path / "MODEL_CARD.md"
    return Pipeline(model, tok, PipelineInfo(name=name, path=str(path), step=int(cfg.get("step") or 0),
                                             letterbox_size=int(prep.get("letterbox_size") or CACHE_SIZE),
                                             card=card.read_text(encoding="utf-8") if card.is_file() else "",
                                             weights_sha256=weights_sha256(path)),
                    threshold=threshold, gate=GateParams.load(path))


def weights_sha256(checkpoint: Path) -> str:
    """SHA-256 of a checkpoint's weights file: which exact model wrote an output (16 MB: ~20 ms)."""
    import hashlib

    f = Path(checkpoint) / "model.safetensors"
    if not f.is_file():
        return ""
    h = hashlib.sha256()
    with open(f, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class PipelineInfo:
    name: str = "model"
    path: str = ""
    step: int = 0
    letterbox_size: int = CACHE_SIZE
    card: str = ""
    weights_sha256: str = ""


@dataclass
class PreparedStudy:
    """One study ready for the model: uint8 V x S x S letterboxed views + what they are."""

    images: Any  # uint8 array V x S x S
    view_ids: list[int]
    views: list[dict] = field(default_factory=list)
    preprocess_ms: float = 0.0
    warnings: list[str] = field(default_factory=list)
    findings: dict | None = None  # finding states the user set for this study (parsed), or None
    skip_gate: bool = False  # read even what the input gate would refuse (the result says so)


class Pipeline:
    """A loaded model + tokenizer + the preprocessing it was trained with.

    Thread-safe: preprocessing runs in the caller's thread, the model runs under one lock (its
    forward toggles eval mode and the heatmaps add hooks; one study at a time uses every core).
    """

    def __init__(self, model, tokenizer, info: PipelineInfo | None = None, *, threshold: float | None = None,
                 max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE, gate: GateParams | None = None):
        self.model, self.tokenizer = model, tokenizer
        # The input gate (refuse non-radiographs, turn films upright, tell views apart); None for
        # checkpoints without gate files, which then read whatever they are given.
        self.gate = Gate(gate) if gate is not None else None
        self.info = info or PipelineInfo()
        self.labels = list(model.labels)
        self.image_size = int(model.cfg.preprocess.image_size)
        self.max_views = int(model.cfg.views.max_views)
        # Per-finding decision thresholds from the checkpoint (findings.thresholds, else .threshold);
        # ``threshold`` overrides them all with one value.
        self.model_thresholds = dict(zip(self.labels, (round(float(x), 6) for x in model.thresholds().tolist())))
        self.threshold = None if threshold is None else _check_threshold(threshold)
        self.max_pixels, self.min_side = max_pixels, min_side
        self.lock = threading.Lock()
        self._heatmap_model = None  # under the lean runtime: the PyTorch model Grad-CAM needs (backend.gradcam_inputs)

    @property
    def runtime(self) -> str:
        """"lean" (no PyTorch) or "torch" (``inference.backend``)."""
        return getattr(self.model, "backend", "torch")

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def identity(self) -> dict:
        """What every result says about where it came from (and the disclaimer)."""
        from cxreport import __version__

        return {"model": self.name, "model_sha256": self.info.weights_sha256 or None,
                "cxreport_version": __version__, "disclaimer": DISCLAIMER}

    def describe(self) -> dict:
        """The model as ``GET /v1/models`` shows it: thresholds are null for findings it does not
        assess; ``decoding`` is what a request that sets nothing gets (every path uses it)."""
        from cxreport.models.decoding import DecodeOptions
        from cxreport.models.finding_states import assessed, decision_thresholds

        fc = self.model.cfg.findings
        judged = assessed(fc, self.labels)

        def shown(population=None):
            thr = decision_thresholds(fc, self.labels, self.threshold, population)
            return {k: (round(thr[k][1], 6) if judged[k] else None) for k in self.labels}

        opts = DecodeOptions().resolve(self.model.cfg)
        thresholds = shown()
        return {"name": self.name, "labels": self.labels, "image_size": self.image_size,
                "max_views": self.max_views, "threshold": _uniform(thresholds), "thresholds": thresholds,
                "populations": {name: {"thresholds": shown(name)} for name in fc.populations},
                "assessed": [k for k in self.labels if judged[k]],
                "not_assessed": [k for k in self.labels if not judged[k]],
                "decoding": {"beam": opts.beam, "max_len": opts.max_len, "faithful": opts.faithful},
                "step": self.info.step, "encoder": self.model.cfg.encoder.name,
                "decoder": self.model.cfg.decoder.name, "model_sha256": self.info.weights_sha256 or None,
                "input_gate": self.gate is not None, "runtime": self.runtime,
                "parameters": (self.model.num_parameters() if self.runtime == "lean"
                               else sum(p.numel() for p in self.model.parameters()))}

    def thresholds(self, threshold: float | None = None) -> dict[str, float]:
        """The decision threshold of every finding: ``threshold`` for all, or the pipeline's
        override, or the checkpoint's own (possibly per-finding) thresholds."""
        t = self.threshold if threshold is None else _check_threshold(threshold)
        return dict(self.model_thresholds) if t is None else {name: t for name in self.labels}

    # ---- preprocessing ------------------------------------------------------------------
    def prepare(self, images: Sequence, views: Sequence[str | None] | None = None,
                names: Sequence[str] | None = None, skip_gate: bool = False) -> PreparedStudy:
        """Load, check and letterbox one study's images (1..max_views of them; ``inference.intake``).
        Every message and ``views[i]["source"]`` name an image by ``names[i]``, else a path's file
        name, else 'image 1', 'image 2'... ``skip_gate``: the images are read as given (nothing
        refused, turned or inverted; warnings say what the gate would have done)."""
        t0 = time.perf_counter()
        if isinstance(images, (str, os.PathLike, bytes, bytearray, np.ndarray)):
            images = [images]
        images = list(images)
        if not images:
            raise InputError("no images given: a study needs at least one X-ray")
        views = list(views) if views is not None else [None] * len(images)
        if len(views) != len(images):
            raise InputError(f"{len(views)} views given for {len(images)} images: give one per image, in order")
        intake = take_in(images, views, names, gate=self.gate, size=self.info.letterbox_size,
                         max_pixels=self.max_pixels, min_side=self.min_side, max_views=self.max_views,
                         skip_gate=skip_gate)
        return PreparedStudy(np.stack(intake.films),
                             intake.view_ids, intake.views,
                             (time.perf_counter() - t0) * 1000, intake.warnings, skip_gate=bool(skip_gate))

    def collate(self, studies: list[PreparedStudy]):
        """(images, image_mask, view_ids): the training collate's float batch from letterboxed uint8
        views, as NumPy arrays for the runtime without PyTorch (``data.resize``, the same numbers)
        and as tensors on the model's device for PyTorch."""
        if self.runtime == "lean":
            from cxreport.data.resize import image_batch

            return image_batch([(s.images, s.view_ids) for s in studies], self.image_size, self.max_views)
        import torch

        from cxreport.data.dataset import Collate

        dev = next(self.model.parameters()).device
        batch = Collate.for_model(self.model.cfg).images([(torch.as_tensor(s.images), s.view_ids) for s in studies])
        return tuple(t.to(dev) for t in batch)

    # ---- generation ---------------------------------------------------------------------
    def generate(self, images: Sequence, views: Sequence[str | None] | None = None, *, beam: int | None = None,
                 max_len: int | None = None, threshold: float | None = None, heatmaps: bool = False,
                 regions: bool = False, findings=None, faithful: bool | None = None,
                 names: Sequence[str] | None = None, skip_gate: bool = False,
                 coverage_line: bool = True) -> StudyReport:
        """One study (1..N views of the same patient and date) -> a ``StudyReport``: report +
        findings (+ heatmaps, + the report split into lung / heart / mediastinal / bone / others
        with ``regions``). Decoding settings left at None are the model's own.

        ``findings`` sets finding states on top of the model's plan (a radiologist's edits):
        ``{"Pleural Effusion": "positive"}``, a JSON file or "Pleural Effusion=positive,...";
        the report is written from the edited plan and each finding keeps the model's own call.
        ``names`` name the images in messages (for bytes and arrays); ``skip_gate`` reads an image
        the input gate would refuse, with a warning in the result. ``coverage_line``: the report's
        last line names what the model did not assess ("Not assessed by this model: ...")."""
        return self.generate_batch([{"images": images, "views": views, "findings": findings, "names": names}],
                                   beam=beam, max_len=max_len, threshold=threshold, heatmaps=heatmaps,
                                   regions=regions, faithful=faithful, skip_gate=skip_gate,
                                   coverage_line=coverage_line)[0]

    def generate_batch(self, studies: Sequence, *, beam: int | None = None, max_len: int | None = None,
                       threshold: float | None = None, heatmaps: bool = False, regions: bool = False,
                       on_error: str = "raise", faithful: bool | None = None,
                       skip_gate: bool = False, coverage_line: bool = True) -> list[StudyReport | StudyError]:
        """Several studies in one forward pass. Each study: a list of images, or a dict with
        ``images`` and optional ``views``, ``findings`` (state overrides, as in ``generate``),
        ``names`` and ``skip_gate``. ``on_error="record"`` gives a ``StudyError`` for a study whose
        images or findings cannot be read, or that the gate refuses, instead of raising."""
        if on_error not in ("raise", "record"):
            raise InputError(f"on_error={on_error!r}: use raise or record")
        prepared = [self.prepare_study(s, record_error=on_error == "record", skip_gate=skip_gate) for s in studies]
        return self.run_recorded(prepared, beam=beam, max_len=max_len, threshold=threshold, heatmaps=heatmaps,
                                 regions=regions, faithful=faithful, on_error=on_error, coverage_line=coverage_line)

    def prepare_study(self, study, *, record_error: bool = True,
                      skip_gate: bool = False) -> PreparedStudy | StudyError:
        """``prepare`` for one study (a list of images, or a dict with ``images`` and optional
        ``views``, ``findings``, ``names`` and ``skip_gate``); with ``record_error`` an unreadable
        or refused study gives its ``StudyError`` instead of raising."""
        if isinstance(study, dict):
            imgs, views, given, names = (study.get(k) for k in ("images", "views", "findings", "names"))
            skip_gate = bool(study.get("skip_gate", skip_gate))
        else:
            imgs, views, given, names = study, None, None, None
        try:
            plan = parse_findings(given, self.labels)
            prepared = self.prepare(imgs, views, names=names, skip_gate=skip_gate)
        except InputError as exc:
            if not record_error:
                raise
            return StudyError(str(exc), self._identity(), refused=isinstance(exc, NotARadiograph))
        prepared.findings = plan
        return prepared

    def run_recorded(self, prepared: list[PreparedStudy | StudyError | str], *, on_error: str = "record",
                     **opts) -> list[StudyReport | StudyError]:
        """``run`` on the prepared studies of a list that may hold errors (``StudyError`` or a
        message); those come back in their place (and so do studies the gate refuses, unless
        ``on_error`` is "raise"). Each study's own ``findings`` overrides go with it."""
        good = [p for p in prepared if isinstance(p, PreparedStudy)]
        outs = iter(self.run(good, findings=[p.findings for p in good], on_error=on_error, **opts) if good else [])
        return [next(outs) if isinstance(p, PreparedStudy) else
                p if isinstance(p, StudyError) else StudyError(str(p), self._identity()) for p in prepared]

    def _identity(self) -> Identity:
        return Identity(**self.identity)

    def run(self, prepared: list[PreparedStudy], *, beam: int | None = None, max_len: int | None = None,
            threshold: float | None = None, heatmaps: bool = False, regions: bool = False,
            findings: list | None = None, faithful: bool | None = None,
            on_error: str = "raise", coverage_line: bool = True) -> list[StudyReport | StudyError]:
        """The model part: prepared studies -> results. ``findings``: per study, a dict of states a
        user set (or None); beam and length default to the model's own settings. A study the gate
        refuses raises `NotARadiograph`, or gives a ``StudyError`` (``refused=True``) with
        ``on_error="record"``."""
        thr = self.thresholds(threshold)
        if heatmaps and self.runtime == "lean":
            from cxreport.inference.backend import check_heatmaps

            check_heatmaps()  # before any work
        override = None if threshold is None and self.threshold is None else thr[self.labels[0]]
        DecodeOptions(beam=beam, max_len=max_len).resolve(self.model.cfg)  # bad settings fail before any work
        overrides = [parse_findings(f, self.labels) for f in (findings or [None] * len(prepared))]
        if len(overrides) != len(prepared):
            raise InputError(f"findings: {len(overrides)} given for {len(prepared)} studies")
        images, mask, view_ids = self.collate(prepared)
        from cxreport.models.finding_states import assessed as assessed_findings

        assessed = assessed_findings(self.model.cfg.findings, self.labels)
        with self.lock:
            t0 = time.perf_counter()
            distances: list = []
            outs = generate(self.model, self.tokenizer, images, mask, view_ids, beam=beam, max_len=max_len,
                            overrides=overrides, faithful=faithful, threshold=override,
                            population=self._placer(distances) if self.gate is not None else None,
                            coverage_line=coverage_line)
            gen_ms = (time.perf_counter() - t0) * 1000
            refused = self._refusals(prepared, distances)
            if refused and on_error == "raise":
                raise next(iter(refused.values()))
            maps = None
            if heatmaps:
                from cxreport.inference.heatmaps import finding_heatmaps

                t1 = time.perf_counter()
                shown = {k: (thr[k] if assessed[k] else float("inf")) for k in self.labels}
                from cxreport.inference.backend import gradcam_inputs

                maps = finding_heatmaps(*gradcam_inputs(self, images, mask, view_ids),
                                        [o["finding_probs"] for o in outs], shown, films=[p.images for p in prepared],
                                        plans=[o["finding_plan"] for o in outs])
                heat_ms = (time.perf_counter() - t1) * 1000
        results = []
        for i, (p, o) in enumerate(zip(prepared, outs)):
            if i in refused:
                results.append(StudyError(str(refused[i]), self._identity(), refused=True, views=p.views))
                continue
            timing = {"preprocess": round(p.preprocess_ms, 1), "model": round(gen_ms / len(prepared), 1)}
            found = self._findings(o, override, overrides[i])
            r = StudyReport(o["text"], found, self._identity(), population=o.get("population"), views=p.views,
                            warnings=list(p.warnings), plan_check=o.get("plan_check"),
                            threshold=_uniform({k: f.threshold for k, f in found.items()}),
                            input_check="none" if self.gate is None else "skipped" if p.skip_gate else "passed",
                            timing_ms=timing)
            if regions:
                # The rules region annotator: offline and deterministic (docs/annotate.md has its scores).
                r.regions = split_regions(without_coverage(o["text"]))
            if maps is not None:
                r.heatmaps = [h | {"set_by": found[h["finding"]].set_by,
                                   "model_state": found[h["finding"]].model_state} for h in maps[i]]
                timing["heatmaps"] = round(heat_ms / len(prepared), 1)
            timing["total"] = round(sum(timing.values()), 1)
            results.append(r)
        return results

    def _findings(self, out: dict, override: float | None, user: dict) -> dict[str, Finding]:
        """Per finding: the state the report was written from (the head's plan with the user's
        edits on top), the model's own state, its calibrated probability and its threshold for the
        study's population (None where the model did not assess it), and who set the state."""
        from cxreport.models.finding_states import decision_thresholds, finding_states

        probs = out.get("finding_probs") or {}
        plan = out.get("finding_plan") or {}
        population = out.get("population")
        own = out.get("model_plan")
        if own is None:  # a model output from before "model_plan": the head's own call, computed again
            again = finding_states(out.get("finding_probs"), self.model.cfg.findings, self.labels, override, population)
            own = {k: again[k] if k in user else plan[k] for k in plan}
        thr = decision_thresholds(self.model.cfg.findings, self.labels, override, population)
        res = {}
        for k, state in plan.items():
            judged = own.get(k, state) != "not_assessed" and probs.get(k) is not None
            mine = own.get(k, state) if judged else "not_assessed"
            # "edit": not set by the user, but changed by their edits (No Finding beside a positive)
            who = "user" if k in user else "edit" if state != mine else "model"
            res[k] = Finding(k, state, mine, round(float(probs[k]), 4) if judged else None,
                             round(float(thr[k][1]), 6) if judged else None, who)
        return res

    def _placer(self, distances: list):
        """The ``population`` callable of ``generate``: places each study in the gate group nearest
        to the film the finding head reads (its first frontal view, else its first view) and keeps
        every real view's distance in ``distances`` (per study) for ``_refusals``."""
        def place(pooled, mask, view_ids):
            dist, group = self.gate.nearest_group(pooled[mask])
            out, k = [], 0
            for i in range(len(mask)):
                n = int(mask[i].sum())
                distances.append(dist[k:k + n])
                real = [j for j in range(len(mask[i])) if mask[i][j]]
                frontal = [r for r, j in enumerate(real) if view_ids is not None and view_ids[i][j] == 0]
                out.append(group[k + (frontal[0] if frontal else 0)] if n else None)
                k += n
            return out

        return place

    def _refusals(self, prepared, distances: list) -> dict:
        """{study index: NotARadiograph} for studies with a film the encoder found unlike any
        chest radiograph (``distances``: per study, its real views' distances, from ``_placer``)."""
        if self.gate is None or not distances:
            return {}
        out = {}
        for i, p in enumerate(prepared):
            used = [v for v in p.views if v.get("used", True)]
            for v, d in zip(used, distances[i]):
                v["ood_distance"] = round(float(d), 3)
                if d > self.gate.cfg.ood_threshold and i not in out:
                    turned = "; read with its greys turned back, as they looked inverted" if v.get("greys_inverted") \
                        else ""
                    out[i] = NotARadiograph(v["source"], f"does not look like a chest radiograph (distance {d:.3f} "
                                                         f"to the training films; the limit is "
                                                         f"{self.gate.cfg.ood_threshold:.2f}{turned})")
                    if p.skip_gate:
                        p.warnings.append(would_have(out.pop(i)))
        return out


def _uniform(thr: dict) -> float | None:
    """The one threshold shared by every (assessed) finding, or None when they differ."""
    values = {v for v in thr.values() if v is not None}
    return values.pop() if len(values) == 1 else None


def _check_threshold(t: float) -> float:
    t = float(t)
    if not 0.0 < t < 1.0:
        raise InputError(f"threshold={t}: choose a probability strictly between 0 and 1")
    return t

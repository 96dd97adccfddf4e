"""ReportModel: multi-view image encoder -> projector -> memory (+ finding tokens) -> text decoder,
with a CheXpert finding head on the image tokens. ``create_model`` builds one from a config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cxreport.errors import InputError
from cxreport.models.config import ModelConfig
from cxreport.models.decoders import build_decoder
from cxreport.models.encoders import build_encoder
from cxreport.models.finding_head import (NEGATIVE, UNKNOWN, FindingHead, FindingTokens, dict_to_states, finding_loss,
                                          targets_to_states)
from cxreport.models.finding_states import calibrated_probs, finding_states, plan_codes
from cxreport.models.generator import generate_tokens
from cxreport.models.plan_cache import PlanCache
from cxreport.models.plan_edits import (annotate_outputs, override_codes, per_study as per_study_list,
                                        study_populations)
from cxreport.models.probe import PooledProbe
from cxreport.models.projectors import build_projector
from cxreport.models.registry import model_config


def without_pretrained(cfg: ModelConfig) -> ModelConfig:
    """Same architecture, no weight loading (for rebuilding a model whose state dict follows)."""
    return dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, pretrained=False, weights=""),
                               decoder=dataclasses.replace(cfg.decoder, pretrained=False))


def _hf_arch(module: nn.Module) -> dict:
    conf = module.config.to_diff_dict()
    for key in ("transformers_version", "_name_or_path", "architectures", "torch_dtype", "dtype"):
        conf.pop(key, None)
    conf["model_type"] = module.config.model_type
    return conf


class ReportModel(nn.Module):
    """``model.cfg`` is the resolved config: save it with the state dict and rebuild with
    ``build_model(cfg, pretrained=False)`` (HF architectures are recorded in ``hf_config`` so no
    hub access is needed then)."""

    def __init__(self, cfg: ModelConfig, pretrained: bool = True):
        super().__init__()
        if not pretrained:
            cfg = without_pretrained(cfg)
        d = cfg.d_model
        fc = cfg.findings
        if fc.below_threshold not in ("unknown", "not_assessed", "negative"):
            raise InputError(f"findings.below_threshold {fc.below_threshold!r}: choose not_assessed or negative")
        if fc.unmentioned not in ("not_assessed", "negative"):
            raise InputError(f"findings.unmentioned {fc.unmentioned!r}: choose not_assessed or negative")
        self.labels = list(fc.labels)
        self.encoder = build_encoder(cfg.encoder)
        self.projector = build_projector(cfg.projector, self.encoder.out_dim, d)
        self.view_embed = nn.Embedding(cfg.views.num_view_types, d) if cfg.views.view_embedding else None
        self.finding_head = FindingHead(fc, d)
        self.finding_tokens = FindingTokens(len(self.labels), d) if fc.condition else None
        # Without finding tokens a text-only row would have an empty memory; one learned token avoids that.
        self.null_memory = None if fc.condition else nn.Parameter(torch.zeros(1, 1, d))
        self.decoder = build_decoder(cfg.decoder, d)
        # A population of films with its own head (a site's films, ``cxreport adapt``) reads the
        # pooled features through it; the others use the shared head above.
        own = [n for n, e in fc.populations.items() if e.get("own_head")]
        self.population_heads = nn.ModuleDict({n: PooledProbe(cfg, self.encoder.out_dim) for n in own}) if own else None
        enc_cfg, dec_cfg = cfg.encoder, cfg.decoder
        if hasattr(self.encoder, "model") and cfg.encoder.name == "hf":
            enc_cfg = dataclasses.replace(enc_cfg, hf_config=_hf_arch(self.encoder.model))
        if hasattr(self.decoder, "lm"):
            dec_cfg = dataclasses.replace(dec_cfg, hf_config=_hf_arch(self.decoder.lm))
        self.cfg = dataclasses.replace(cfg, encoder=enc_cfg, decoder=dec_cfg)
        # Reuse each distinct plan's report (models.plan_cache); False decodes every study, for
        # benchmarks that time the decoder and tests that compare against it.
        self.use_plan_cache = True

    # ---- encoding -------------------------------------------------------------------------
    def encode_images(self, images: torch.Tensor | None, image_mask: torch.Tensor | None = None,
                      view_ids: torch.Tensor | None = None, batch_size: int | None = None, return_pooled: bool = False):
        """images B x V x 1 x H x W -> (tokens B x V*M x d, mask B x V*M) (+ the encoder's pooled
        features B x V x C, zero for missing views, with ``return_pooled``). Only real views are encoded."""
        d = self.cfg.d_model
        if images is None:
            b = batch_size or 0
            dev = self._device()
            empty = (torch.zeros(b, 0, d, device=dev), torch.zeros(b, 0, dtype=torch.bool, device=dev))
            return empty + ((None,) if return_pooled else ())
        if images.dim() == 4:
            images = images.unsqueeze(1)
        b, v = images.shape[:2]
        if v > self.cfg.views.max_views:
            raise InputError(f"{v} views per study, but this model takes at most views.max_views={self.cfg.views.max_views}")
        if image_mask is None:
            image_mask = torch.ones(b, v, dtype=torch.bool, device=images.device)
        if view_ids is None:
            view_ids = torch.arange(v, device=images.device).clamp(max=2).expand(b, v)
        flat_mask = image_mask.reshape(-1).bool()
        sel = images.reshape(b * v, *images.shape[2:])[flat_mask]
        if sel.shape[0] == 0:  # batch of rows without images
            empty = (images.new_zeros(b, 0, d), torch.zeros(b, 0, dtype=torch.bool, device=images.device))
            return empty + ((None,) if return_pooled else ())
        out = self.encoder(sel)
        tok = self.projector(out.tokens, out.grid)
        if self.view_embed is not None:
            tok = tok + self.view_embed(view_ids.reshape(-1)[flat_mask].clamp(0, self.view_embed.num_embeddings - 1))[:, None]
        m = tok.shape[1]
        full = tok.new_zeros(b * v, m, d)
        full[flat_mask] = tok
        mask = flat_mask[:, None].expand(b * v, m)
        if not return_pooled:
            return full.view(b, v * m, d), mask.reshape(b, v * m)
        pooled = out.pooled.new_zeros(b * v, out.pooled.shape[-1])
        pooled[flat_mask] = out.pooled
        return full.view(b, v * m, d), mask.reshape(b, v * m), pooled.view(b, v, -1)

    def finding_logits(self, img_tok, img_mask, view_ids=None):
        """Finding-head logits over the image tokens of the views ``views.head_views`` selects."""
        mask = img_mask
        if self.cfg.views.head_views == "frontal" and view_ids is not None and img_tok.shape[1]:
            v = view_ids.shape[1]
            frontal = (view_ids == 0).repeat_interleave(img_tok.shape[1] // v, dim=1) & img_mask
            mask = torch.where(frontal.any(1, keepdim=True), frontal, img_mask)
        elif self.cfg.views.head_views not in ("all", "frontal"):
            raise InputError(f"views.head_views {self.cfg.views.head_views!r}: choose all or frontal")
        return self.finding_head(img_tok, mask)

    def memory(self, img_tokens, img_mask, states: torch.Tensor | None):
        """Decoder memory: [finding tokens | image tokens] (or [null | image tokens])."""
        b = img_tokens.shape[0]
        if self.finding_tokens is not None:
            if states is None:
                states = torch.full((b, len(self.labels)), UNKNOWN, dtype=torch.long, device=img_tokens.device)
            prefix = self.finding_tokens(states)
        else:
            prefix = self.null_memory.expand(b, -1, -1)
        pmask = torch.ones(b, prefix.shape[1], dtype=torch.bool, device=img_tokens.device)
        if self.finding_tokens is not None and not self.cfg.findings.image_memory:
            return prefix, pmask
        return torch.cat([prefix, img_tokens], 1), torch.cat([pmask, img_mask], 1)

    # ---- training -------------------------------------------------------------------------
    def forward(self, batch: dict) -> dict:
        """Losses for one collated batch (see module docs of the lead's collate for the contract)."""
        images = batch.get("images")
        ids = batch.get("input_ids")
        if images is None and ids is None:
            raise InputError("batch has neither images nor input_ids")
        b = (images.shape[0] if images is not None else ids.shape[0])
        dev = self._device()
        img_tok, img_mask = self.encode_images(images, batch.get("image_mask"), batch.get("view_ids"), b)
        has_image = batch.get("has_image")
        has_image = img_mask.any(1) if has_image is None else has_image.bool() & img_mask.any(1)
        targets = batch.get("finding_targets")
        if targets is None:
            targets = torch.full((b, len(self.labels)), float("nan"), device=dev)
        logits = self.finding_logits(img_tok, img_mask, batch.get("view_ids"))
        f_loss = finding_loss(logits, targets, has_image, self.cfg.findings.uncertain)

        lm_loss = logits.sum() * 0.0
        has_text = batch.get("has_text")
        if ids is not None:
            am = batch.get("attention_mask")
            am = (ids != self.decoder.pad_id) if am is None else am.bool()
            has_text = am[:, 1:].any(1) if has_text is None else has_text.bool()
            if has_text.any():
                rows = has_text.nonzero().squeeze(1)
                states = None
                if self.finding_tokens is not None:
                    states = targets_to_states(targets[rows], NEGATIVE if self.cfg.findings.unmentioned == "negative"
                                               else UNKNOWN)
                    p = self.cfg.findings.state_dropout
                    if self.training and p > 0:
                        states = states.masked_fill(torch.rand(states.shape, device=dev) < p, UNKNOWN)
                mem, mem_mask = self.memory(img_tok[rows], img_mask[rows], states)
                r_ids, r_am = ids[rows], am[rows]
                out = self.decoder(r_ids[:, :-1], r_am[:, :-1], mem, mem_mask)
                tgt = r_ids[:, 1:].masked_fill(~r_am[:, 1:], -100)
                lm_loss = F.cross_entropy(out.float().reshape(-1, out.shape[-1]), tgt.reshape(-1),
                                          ignore_index=-100, label_smoothing=self.cfg.label_smoothing)
        loss = self.cfg.lm_loss_weight * lm_loss + self.cfg.findings.loss_weight * f_loss
        return {"loss": loss, "lm_loss": lm_loss.detach(), "finding_loss": f_loss.detach(), "finding_logits": logits}

    def parameter_groups(self, lr: float, weight_decay: float = 0.01, encoder_lr_mult: float = 1.0) -> list[dict]:
        """AdamW groups: no decay on biases, norms and embeddings; the (pretrained) encoder may
        train at ``lr * encoder_lr_mult``. Frozen parameters are left out."""
        groups: dict[tuple[bool, bool], list] = {}
        seen = set()
        for name, p in self.named_parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            no_decay = p.dim() < 2 or "embed" in name or "norm" in name or ".ln" in name or "pos" in name
            groups.setdefault((name.startswith("encoder."), no_decay), []).append(p)
        return [{"params": ps, "lr": lr * (encoder_lr_mult if enc else 1.0),
                 "weight_decay": 0.0 if no_decay else weight_decay} for (enc, no_decay), ps in groups.items()]

    # ---- inference ------------------------------------------------------------------------
    def _device(self):
        return next(self.parameters()).device

    def thresholds(self) -> torch.Tensor:
        """Decision threshold per finding: ``findings.thresholds`` where given, else ``threshold``."""
        fc = self.cfg.findings
        unknown = set(fc.thresholds) - set(self.labels)
        if unknown:
            raise InputError(f"findings.thresholds: unknown label(s) {sorted(unknown)}")
        return torch.tensor([float(fc.thresholds.get(n, fc.threshold)) for n in self.labels])

    def finding_probs(self, img_tok, img_mask, view_ids=None, populations: list | None = None,
                      pooled: torch.Tensor | None = None) -> torch.Tensor:
        """Calibrated finding probabilities (``findings.calibration`` and ``findings.prior``, or
        those of each study's population, read by its own head when it has one: ``pooled`` B x V x C
        encoder features are then needed)."""
        logits = self.finding_logits(img_tok, img_mask, view_ids)
        if self.population_heads is not None and populations is not None and pooled is not None:
            logits = self._population_logits(logits, pooled, img_mask.view(len(logits), pooled.shape[1], -1).any(-1),
                                             view_ids, populations)
        probs = calibrated_probs(logits.detach().float().cpu().numpy(), self.cfg.findings, self.labels, populations)
        return torch.from_numpy(probs).to(logits.device)

    @torch.no_grad()
    def pooled_logits(self, pooled: torch.Tensor, populations: list | None = None) -> torch.Tensor:
        """Finding logits of frontal films from their pooled encoder features (N x C), as the
        model computes them from images, for a probe image side (``pool`` projector, ``pooled``
        head): how fitting and scoring commands read cached features."""
        if self.cfg.projector.name != "pool" or self.cfg.findings.head != "pooled":
            raise InputError("pooled_logits needs a probe image side (projector.name=pool, findings.head=pooled)")
        tok = self.projector(pooled[:, None, :])
        if self.view_embed is not None:
            tok = tok + self.view_embed.weight[0]
        logits = self.finding_head(tok, torch.ones(tok.shape[:2], dtype=torch.bool, device=tok.device))
        for i, pop in enumerate(populations or []):
            if self.population_heads is not None and pop in self.population_heads:
                logits[i] = self.population_heads[pop](pooled[i][None])[0]
        return logits

    def _population_logits(self, logits, pooled, image_mask, view_ids, populations) -> torch.Tensor:
        """Logits of studies whose population owns a head, from its first frontal view's (else
        its first view's) pooled features."""
        logits = logits.clone()
        for i, pop in enumerate(populations):
            if pop not in self.population_heads or not bool(image_mask[i].any()):
                continue
            real = image_mask[i].nonzero().flatten().tolist()
            front = [j for j in real if view_ids is not None and int(view_ids[i, j]) == 0]
            logits[i] = self.population_heads[pop](pooled[i, (front or real)[0]][None].float())[0]
        return logits

    def head_reads(self, image_mask: torch.Tensor, view_ids: torch.Tensor | None) -> torch.Tensor:
        """B bools: does the finding head have a film it was trained for? A head that reads frontal
        films only (``views.head_views=frontal``) does not judge a study of laterals only."""
        has = image_mask.any(1)
        if self.cfg.views.head_views != "frontal" or view_ids is None or view_ids.shape != image_mask.shape:
            return has
        return has & ~((view_ids == 1) | ~image_mask).all(1)

    def plan_states(self, probs: torch.Tensor | None, reads: torch.Tensor, threshold: float | None = None,
                    populations: list | None = None) -> list[dict]:
        """{finding: state} per study (FINDING_STATES) from calibrated probabilities."""
        out = []
        for i in range(reads.shape[0]):
            p = dict(zip(self.labels, probs[i].tolist())) if probs is not None and bool(reads[i]) else None
            pop = populations[i] if populations is not None else None
            out.append(finding_states(p, self.cfg.findings, self.labels, threshold, pop))
        return out

    def _decode_plans(self, states, mem, mem_mask, decode: dict) -> list[dict]:
        """``generate_tokens`` for a decoder that reads only the plan: each distinct plan is decoded
        once and remembered (models.plan_cache)."""
        if getattr(self, "_plan_cache", None) is None:
            self._plan_cache = PlanCache([self.decoder, self.finding_tokens])
        return self._plan_cache.decode(states.tolist(), decode, lambda rows: generate_tokens(
            self.decoder, mem[rows], mem_mask[rows], **decode))

    def _states_for(self, findings, plans: list[dict], b):
        per_study = findings if isinstance(findings, (list, tuple)) else [findings] * b
        if len(per_study) != b:
            raise InputError(f"findings: got {len(per_study)} entries for {b} studies")
        below = self.cfg.findings.below_threshold
        states = torch.tensor([plan_codes(p, self.labels, below) for p in plans], dtype=torch.long) if plans else \
            torch.zeros(0, len(self.labels), dtype=torch.long)
        for i, f in enumerate(per_study):
            if f is not None:
                states[i] = dict_to_states(f, self.labels)
        return states.to(self._device())

    @torch.no_grad()
    def generate(self, images: torch.Tensor | None = None, image_mask: torch.Tensor | None = None,
                 view_ids: torch.Tensor | None = None, findings: dict | list | None = None, *,
                 max_len: int | None = None, method: str | None = None, num_beams: int | None = None,
                 length_penalty: float = 1.0, no_repeat_ngram: int | None = None,
                 temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, use_cache: bool = True,
                 generator: torch.Generator | None = None, overrides: dict | list | None = None,
                 num_return: int = 1, prior: bool = False, threshold: float | None = None,
                 population=None) -> list[dict]:
        """One report per study -> [{"token_ids", "score", "finding_probs", "finding_states"}].

        ``findings``: None (predicted by the finding head), one dict for every study or a list with
        a dict/None per study (oracle mode: {"Cardiomegaly": 1, "Edema": 0, ...}, others not assessed).
        ``overrides``: states set on top of the plan (a user's edits), one dict or one per study.
        ``finding_probs`` is None for studies without an image. Decoding settings left at None come
        from the model's config (``decoder.default_beam``, ``default_max_len``, ``no_repeat_ngram``);
        words comparing with an earlier study are never generated unless ``prior``.
        ``finding_plan`` is the predicted {finding: state} (FINDING_STATES; ``threshold`` replaces the
        positive threshold of the assessed findings), with ``overrides`` on top.
        ``population``: which calibration each study's plan uses (``findings.populations``): None
        (the head's own), a name or None per study, or a callable ``(pooled B x V x C, mask B x V,
        view_ids B x V) -> [name or None per study]`` over the encoder's pooled features (NumPy), as
        the input gate places a film; each output says its ``population``.
        """
        dc = self.cfg.decoder
        num_beams = dc.default_beam if num_beams is None else num_beams
        method = method or ("beam" if num_beams > 1 else "greedy")
        max_len = dc.default_max_len if max_len is None else max_len
        suppress = list(dc.suppress_ids) + ([] if prior else list(getattr(dc, "comparison_ids", [])))
        was_training = self.training
        self.eval()
        try:
            if images is None:
                b = len(findings) if isinstance(findings, (list, tuple)) else 1
            else:
                b = images.shape[0]
            img_tok, img_mask, pooled = self.encode_images(images, image_mask, view_ids, b, return_pooled=True)
            has_image = img_mask.any(1)
            if view_ids is None and images is not None:
                view_ids = torch.arange(images.shape[1], device=images.device).clamp(max=2).expand(b, -1) \
                    if images.dim() == 5 else None
            if images is not None and image_mask is None:
                image_mask = torch.ones(images.shape[:2], dtype=torch.bool, device=images.device)
            pops = _populations(population, pooled, image_mask, view_ids, b)
            probs = self.finding_probs(img_tok, img_mask, view_ids, pops, pooled) if img_tok.shape[1] else None
            reads = (self.head_reads(image_mask, view_ids) if images is not None and view_ids is not None
                     and view_ids.shape == image_mask.shape else has_image) & has_image
            plans = self.plan_states(probs, reads, threshold, pops)
            states = self._states_for(findings, plans, b) if self.finding_tokens is not None else None
            if overrides is not None and states is not None:
                states = self._override(states, overrides)
            mem, mem_mask = self.memory(img_tok, img_mask, states)
            decode = dict(max_len=max_len, method=method, num_beams=num_beams, length_penalty=length_penalty,
                          no_repeat_ngram=dc.no_repeat_ngram if no_repeat_ngram is None else no_repeat_ngram,
                          temperature=temperature, top_k=top_k, top_p=top_p, use_cache=use_cache,
                          generator=generator, suppress_ids=suppress, num_return=num_return)
            if self.use_plan_cache and states is not None and not self.cfg.findings.image_memory \
                    and method != "sample":
                outs = self._decode_plans(states, mem, mem_mask, decode)
            else:
                outs = generate_tokens(self.decoder, mem, mem_mask, **decode)
        finally:
            self.train(was_training)
        return annotate_outputs(outs, self.labels, probs, has_image, states, plans, overrides, pops)

    def _override(self, states: torch.Tensor, overrides) -> torch.Tensor:
        per_study = per_study_list(overrides, states.shape[0], "overrides")
        rows = [override_codes(row, o, self.labels) for row, o in zip(states.tolist(), per_study)]
        return torch.tensor(rows, dtype=states.dtype, device=states.device).view_as(states)


def _populations(population, pooled, image_mask, view_ids, b: int) -> list:
    """One population name (or None) per study from ``generate``'s ``population`` argument."""
    if callable(population) and pooled is not None:
        pooled, image_mask = pooled.float().cpu().numpy(), image_mask.cpu().numpy()
        view_ids = view_ids.cpu().numpy() if view_ids is not None else None
    return study_populations(population, pooled, image_mask, view_ids, b)


def build_model(cfg: ModelConfig, pretrained: bool = True) -> ReportModel:
    """``pretrained=False``: architecture only (when a checkpoint's state dict is loaded next)."""
    return ReportModel(cfg, pretrained=pretrained)


def create_model(name_or_path: str | Path, *, vocab_size: int | None = None, pad_id: int | None = None,
                 bos_id: int | None = None, eos_id: int | None = None, pretrained: bool = True,
                 **overrides) -> ReportModel:
    """Build a model from a bundled config name (``list_models()``) or a JSON file.

    Section overrides are deep-merged: ``create_model("tiny", vocab_size=500, decoder={"layers": 1})``.
    The tokenizer's vocab size and special ids go in as keyword arguments.
    """
    ids = {k: v for k, v in dict(vocab_size=vocab_size, pad_id=pad_id, bos_id=bos_id, eos_id=eos_id).items()
           if v is not None}
    if ids:
        overrides["decoder"] = {**overrides.get("decoder", {}), **ids}
    return build_model(model_config(name_or_path, **overrides), pretrained=pretrained)

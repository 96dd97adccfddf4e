"""HF causal LMs as decoders: GPT-2 with cross-attention to the memory, or any causal LM in
prefix mode (memory projected to the embedding width and prepended as ``inputs_embeds``)."""

from __future__ import annotations

import torch
from torch import nn

from cxreport.errors import InputError, require
from cxreport.models.config import DecoderConfig
from cxreport.models.decoders import Decoder, DecodeState
from cxreport.models.registry import register_decoder


def load_hf_lm(cfg: DecoderConfig) -> nn.Module:
    transformers = require("transformers", "hf", "GPT-2 decoders")
    cross = cfg.mode == "cross"
    extra = {"add_cross_attention": True} if cross else {}
    try:
        if cfg.hf_model and (cfg.pretrained or not cfg.hf_config):
            if cfg.pretrained:
                return transformers.AutoModelForCausalLM.from_pretrained(cfg.hf_model, **extra)
            conf = transformers.AutoConfig.from_pretrained(cfg.hf_model, **extra)
            return transformers.AutoModelForCausalLM.from_config(conf)
    except (OSError, ValueError) as exc:
        raise InputError(f"decoder.hf_model {cfg.hf_model!r}: cannot load ({exc})") from exc
    kwargs = dict(cfg.hf_config)
    model_type = kwargs.pop("model_type", "gpt2")
    kwargs["vocab_size"] = cfg.vocab_size
    kwargs.update(bos_token_id=cfg.bos_id, eos_token_id=cfg.eos_id, pad_token_id=cfg.pad_id)
    if cross:
        kwargs["add_cross_attention"] = True
    hf_cfg = transformers.AutoConfig.for_model(model_type, **kwargs)
    return transformers.AutoModelForCausalLM.from_config(hf_cfg)


@register_decoder("gpt2")
class HFCausalLMDecoder(Decoder):
    def __init__(self, cfg: DecoderConfig, memory_dim: int):
        super().__init__(cfg)
        if cfg.mode not in ("cross", "prefix"):
            raise InputError(f"decoder.mode {cfg.mode!r}: choose cross or prefix")
        self.mode = cfg.mode
        self.lm = load_hf_lm(cfg)
        conf = self.lm.config
        if self.mode == "cross" and conf.model_type != "gpt2":
            raise InputError(f"decoder.mode=cross needs a GPT-2 model, got {conf.model_type}; use mode=prefix")
        if self.lm.get_input_embeddings().num_embeddings != cfg.vocab_size:
            self.lm.resize_token_embeddings(cfg.vocab_size)
        width = self.lm.get_input_embeddings().embedding_dim
        self.mem_proj = nn.Linear(memory_dim, width) if memory_dim != width else nn.Identity()
        self.max_len = getattr(conf, "n_positions", None) or getattr(conf, "max_position_embeddings", cfg.max_len)

    def _prefix_inputs(self, input_ids, attention_mask, memory, memory_mask):
        emb = self.lm.get_input_embeddings()(input_ids)
        embeds = torch.cat([self.mem_proj(memory), emb], 1)
        mask = torch.cat([memory_mask, attention_mask.bool()], 1).long()
        # Positions count only attended prefix tokens, so padding inside the memory is harmless.
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        return embeds, mask, pos

    def forward(self, input_ids, attention_mask, memory, memory_mask):
        if self.mode == "cross":
            out = self.lm(input_ids=input_ids, attention_mask=attention_mask.long(),
                          encoder_hidden_states=self.mem_proj(memory),
                          encoder_attention_mask=memory_mask.long(), use_cache=False)
            return out.logits
        embeds, mask, pos = self._prefix_inputs(input_ids, attention_mask, memory, memory_mask)
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=pos, use_cache=False)
        return out.logits[:, memory.shape[1]:]

    def start(self, memory, memory_mask, use_cache=True):
        state = DecodeState(memory, memory_mask, use_cache)
        state.extra["len"] = 0
        if self.mode == "cross" and use_cache:
            state.extra["enc"] = self.mem_proj(memory)
        return state

    def step(self, state: DecodeState, tokens: torch.Tensor) -> torch.Tensor:
        ones = torch.ones_like(tokens, dtype=torch.bool)
        if not state.use_cache:
            return self.forward(tokens, ones, state.memory, state.memory_mask)[:, -1]
        done = state.extra["len"]
        state.extra["len"] = tokens.shape[1]
        if self.mode == "cross":
            out = self.lm(input_ids=tokens[:, done:], attention_mask=ones.long(),
                          encoder_hidden_states=state.extra["enc"], encoder_attention_mask=state.memory_mask.long(),
                          past_key_values=state.cache, use_cache=True)
        else:
            embeds, mask, pos = self._prefix_inputs(tokens, ones, state.memory, state.memory_mask)
            s = state.memory.shape[1]
            start = 0 if done == 0 else s + done
            out = self.lm(inputs_embeds=embeds[:, start:], attention_mask=mask, position_ids=pos[:, start:],
                          past_key_values=state.cache, use_cache=True)
        state.cache = out.past_key_values
        return out.logits[:, -1]

    def reorder(self, state, index):
        super().reorder(state, index)
        if "enc" in state.extra:
            state.extra["enc"] = state.extra["enc"].index_select(0, index)
        if state.cache is not None:
            state.cache.reorder_cache(index)

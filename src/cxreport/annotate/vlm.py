"""Region annotation with a Qwen2-VL image+text model tuned with LoRA (QLoRA on a GPU).

Images are turned into Qwen2-VL's ``pixel_values`` / ``image_grid_thw`` here (no torchvision, which
the Hugging Face image processors need): resize to multiples of patch*merge (28 px) within a pixel
budget, CLIP-normalise, and cut into 14x14 patches, each repeated over the 2-frame temporal patch, in
the order the vision tower's 2x2 patch merger expects. Reports without images train and run as text.

The answer is the same JSON object as the LLM backend's (:mod:`cxreport.annotate.schema`).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cxreport.annotate.schema import SchemaError, parse_regions
from cxreport.text.regions import REGIONS

log = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
INSTRUCTION = ("Sort the findings of this chest X-ray report into the regions lung, heart, mediastinal, bone and "
               "others. Answer with a JSON object with exactly those keys.\nFindings: ")
SYSTEM = "You are a helpful assistant."


# --- images --------------------------------------------------------------------------------------
@dataclass
class ImageSpec:
    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2
    min_pixels: int = 56 * 56
    max_pixels: int = 512 * 28 * 28  # ~630x630; Qwen2-VL accepts up to 1280*28*28


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's target size: both sides multiples of ``factor``, area within [min, max], aspect kept."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio {max(height, width) / min(height, width):.0f} is above 200")
    h, w = round(height / factor) * factor, round(width / factor) * factor
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h, w = max(factor, math.floor(height / beta / factor) * factor), max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h, w


def preprocess_image(image, spec: ImageSpec = ImageSpec()) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(patches ``[gh*gw, 3*T*P*P]`` float32, grid ``(1, gh, gw)``) for one PIL image."""
    from PIL import Image

    image = image.convert("RGB")
    factor = spec.patch_size * spec.merge_size
    h, w = smart_resize(image.height, image.width, factor, spec.min_pixels, spec.max_pixels)
    image = image.resize((w, h), resample=Image.BICUBIC)
    x = np.asarray(image, dtype=np.float64).transpose(2, 0, 1) * (1 / 255)
    x = ((x - np.array(CLIP_MEAN)[:, None, None]) / np.array(CLIP_STD)[:, None, None]).astype(np.float32)
    p, m, t = spec.patch_size, spec.merge_size, spec.temporal_patch_size
    gh, gw = h // p, w // p
    x = x.reshape(3, gh // m, m, p, gw // m, m, p).transpose(1, 4, 2, 5, 0, 3, 6)  # (gh/m, gw/m, m, m, C, P, P)
    x = np.broadcast_to(x[:, :, :, :, :, None], (*x.shape[:5], t, p, p))  # a still image fills both frames
    return np.ascontiguousarray(x.reshape(gh * gw, 3 * t * p * p)), (1, gh, gw)


# --- prompts and batches -------------------------------------------------------------------------
def chat_prompt(text: str, image_tokens: list[int]) -> str:
    """Qwen2-VL's chat layout up to the assistant turn; one ``<|image_pad|>`` per merged patch."""
    images = "".join("<|vision_start|>" + "<|image_pad|>" * n + "<|vision_end|>" for n in image_tokens)
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{images}{INSTRUCTION}{text}<|im_end|>\n"
            "<|im_start|>assistant\n")


def answer_text(regions: dict[str, str]) -> str:
    return json.dumps({r: regions.get(r, "") for r in REGIONS}, ensure_ascii=False)


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    pixel_values: np.ndarray | None = None
    grids: list[tuple[int, int, int]] = field(default_factory=list)


class Encoder:
    """Turns (text, images, regions) into token ids, labels (answer only) and image patches."""

    def __init__(self, tokenizer, spec: ImageSpec, max_images: int = 2, max_length: int = 2048):
        self.tok, self.spec, self.max_images, self.max_length = tokenizer, spec, max_images, max_length

    def _images(self, paths) -> tuple[np.ndarray | None, list]:
        from PIL import Image

        from cxreport.data.images import load_image  # safe decoding (size checks, truncation errors)

        patches, grids = [], []
        for path in list(paths)[:self.max_images]:
            pv, grid = preprocess_image(Image.fromarray(load_image(path)), self.spec)
            patches.append(pv)
            grids.append(grid)
        return (np.concatenate(patches) if patches else None), grids

    def encode(self, text: str, image_paths=(), regions: dict | None = None) -> Encoded:
        pv, grids = self._images(image_paths)
        n_tokens = [g[0] * g[1] * g[2] // self.spec.merge_size ** 2 for g in grids]
        prompt_ids = self.tok(chat_prompt(text, n_tokens), add_special_tokens=False)["input_ids"]
        ids, labels = list(prompt_ids), [-100] * len(prompt_ids)
        if regions is not None:
            answer = self.tok(answer_text(regions) + "<|im_end|>", add_special_tokens=False)["input_ids"]
            ids, labels = ids + answer, labels + answer
        if len(ids) > self.max_length:  # cut the answer's tail rather than image tokens
            ids, labels = ids[:self.max_length], labels[:self.max_length]
        return Encoded(ids, labels, pv, grids)


def collate(batch: list[Encoded], pad_id: int, image_token_id: int, left_pad: bool = False) -> dict:
    import torch

    width = max(len(b.input_ids) for b in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, b in enumerate(batch):
        n = len(b.input_ids)
        sl = slice(width - n, width) if left_pad else slice(0, n)
        ids[i, sl], labels[i, sl], mask[i, sl] = torch.tensor(b.input_ids), torch.tensor(b.labels), 1
    out = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    pvs = [b.pixel_values for b in batch if b.pixel_values is not None]
    if pvs:
        out["pixel_values"] = torch.from_numpy(np.concatenate(pvs))
        out["image_grid_thw"] = torch.tensor([g for b in batch for g in b.grids], dtype=torch.long)
        out["mm_token_type_ids"] = (ids == image_token_id).long()  # M-RoPE needs to know image positions
    return out


# --- model ---------------------------------------------------------------------------------------
@dataclass
class LoraSpec:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # the language model's projections; the vision tower stays frozen
    target_modules: str = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def _peft():
    from cxreport.errors import require

    return require("peft", "vlm", "LoRA fine-tuning of the VLM annotator")


def load_base(base: str, qlora: bool = False, device: str | None = None):
    """(model, tokenizer) of a Qwen2-VL checkpoint (hub id or folder). 4-bit only with a GPU."""
    import torch
    from transformers import AutoTokenizer

    try:
        from transformers import AutoModelForImageTextToText as Auto
    except ImportError:  # pragma: no cover - older transformers
        from transformers import AutoModelForVision2Seq as Auto
    cuda = torch.cuda.is_available()
    kwargs = {"dtype": torch.bfloat16 if cuda else torch.float32}
    if qlora:
        if not cuda:
            from cxreport.errors import InputError

            raise InputError("--qlora needs a CUDA GPU (bitsandbytes 4-bit); drop it to train in full precision")
        from cxreport.errors import require
        from transformers import BitsAndBytesConfig

        require("bitsandbytes", "vlm", "4-bit QLoRA")
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["device_map"] = {"": device or 0}
    model = Auto.from_pretrained(base, **kwargs)
    tok = AutoTokenizer.from_pretrained(base)
    if tok.pad_token_id is None:
        tok.pad_token = "<|endoftext|>"
    return model, tok


def image_spec_of(model, max_pixels: int | None = None) -> ImageSpec:
    vc = model.config.vision_config
    spec = ImageSpec(patch_size=vc.patch_size, merge_size=vc.spatial_merge_size,
                     temporal_patch_size=vc.temporal_patch_size)
    if max_pixels:
        spec.max_pixels = max_pixels
    return spec


def add_lora(model, spec: LoraSpec, qlora: bool = False):
    peft = _peft()
    if qlora:
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    cfg = peft.LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                          target_modules=spec.target_modules, task_type="CAUSAL_LM")
    return peft.get_peft_model(model, cfg)


def load_annotator(adapter_dir: str | Path, base: str | None = None, device: str | None = None):
    """(model with the adapter, tokenizer, ImageSpec) from a folder written by :func:`finetune`."""
    import torch

    adapter_dir = Path(adapter_dir)
    meta_path = adapter_dir / "cxreport_vlm.json"
    if not meta_path.is_file():
        from cxreport.errors import InputError

        raise InputError(f"{adapter_dir}: no cxreport_vlm.json (expected a folder written by 'cxreport vlm finetune')")
    meta = json.loads(meta_path.read_text())
    model, tok = load_base(base or meta["base"])
    model = _peft().PeftModel.from_pretrained(model, str(adapter_dir))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    return model, tok, ImageSpec(**meta["image_spec"])


@dataclass
class VLMResult:
    regions: dict[str, str] | None
    raw: str
    error: str = ""


def generate(model, tok, spec: ImageSpec, items: list[tuple[str, list]], max_new_tokens: int = 512,
             batch_size: int = 4) -> list[VLMResult]:
    """Greedy answers for (text, image paths) items, parsed into regions where valid."""
    import torch

    enc = Encoder(tok, spec)
    image_token_id = model.config.image_token_id
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(items), batch_size):
        chunk = [enc.encode(text, paths) for text, paths in items[start:start + batch_size]]
        batch = collate(chunk, tok.pad_token_id, image_token_id, left_pad=True)
        batch.pop("labels")
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.inference_mode():
            gen = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"))
        for row in tok.batch_decode(gen[:, batch["input_ids"].shape[1]:], skip_special_tokens=True):
            try:
                out.append(VLMResult(parse_regions(row), row))
            except SchemaError as exc:
                out.append(VLMResult(None, row, f"malformed answer: {exc}"))
    return out


def save_meta(out_dir: Path, base: str, spec: ImageSpec, lora: LoraSpec, extra: dict) -> None:
    from cxreport import fsio

    fsio.atomic_write_json(out_dir / "cxreport_vlm.json", {"base": base, "image_spec": asdict(spec),
                                                            "lora": asdict(lora), **extra})

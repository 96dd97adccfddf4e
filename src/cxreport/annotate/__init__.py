"""Per-region report annotation (lung, heart, mediastinal, bone, others) by three backends.

- ``rules``: :func:`cxreport.text.regions.split_regions` (offline, deterministic);
- ``llm``: any OpenAI-compatible chat endpoint with a versioned prompt (:mod:`.llm`);
- ``vlm``: a LoRA-tuned Qwen2-VL image+text model (:mod:`.vlm`).

All three produce the same row shape, ``{id, lung, heart, mediastinal, bone, others}``, which
:func:`cxreport.text.regions.score_regions` (or GREEN, :mod:`cxreport.metrics.green`) scores.
"""

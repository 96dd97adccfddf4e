"""The report model without PyTorch: what ``pip install "cxreport[infer]"`` runs.

    graphs.py      the encoder's weightless ONNX graph (CKPT/lean/ or the cache) in ONNX Runtime,
                   its weights from the checkpoint's model.safetensors
    export.py      writes that graph from a PyTorch model (needs torch + onnx, once per architecture)
    weights.py     model.safetensors as NumPy float32 arrays
    ops.py         LayerNorm, GELU, attention ... in NumPy, as PyTorch computes them
    image_side.py  projector, view embedding, finding head, finding tokens
    decoder.py     the transformer decoder with its KV cache
    search.py      greedy and beam search (``models.generator`` step for step)
    model.py       ``LeanModel``: ``ReportModel``'s inference interface on top of these

``inference.backend`` chooses between this and PyTorch; docs/lean_inference.md has the design
and the measurements.
"""

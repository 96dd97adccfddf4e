"""Using a trained model: load it, prepare films, run the one batch->model->decode loop.

    pipeline.py   load_model, Pipeline (preprocessing + thresholds + results)
    predict.py    the one batch -> model -> decode loop (generate, evaluate, evaluate-findings, serve)
    backend.py    which runtime runs a checkpoint: lean (no PyTorch, models/runtime) or PyTorch
    batch.py      folders / manifests of studies, safe output names, torchrun sharding
    heatmaps.py   Grad-CAM overlays
    evaluate.py   a split's reports generated and scored;  findings.py: finding-head AUROC
    threads.py    how many model threads and decode workers a command uses (never more than the cores)
"""

from cxreport.inference.pipeline import (
    DEFAULT_MODEL, Pipeline, PipelineInfo, PreparedStudy, bundled_models, default_model_dir, load_model,
    resolve_model_path,
)
from cxreport.inference.predict import decode, detokenize

__all__ = ["DEFAULT_MODEL", "Pipeline", "PipelineInfo", "PreparedStudy", "bundled_models", "decode",
           "default_model_dir", "detokenize", "load_model", "resolve_model_path"]

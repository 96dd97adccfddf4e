"""cxreport: radiology reports from chest X-rays.

The public API (everything else is reached through its own module):

    from cxreport import load_model, create_model, list_models, label_reports, score
"""

__version__ = "0.1.0"

# name -> module that defines it; imported on first use so `import cxreport` (and `cxreport
# --help`) never pulls in torch.
_PUBLIC = {
    "load_model": "cxreport.inference.pipeline",
    "Pipeline": "cxreport.inference.pipeline",
    "create_model": "cxreport.models",
    "list_models": "cxreport.models",
    "label_reports": "cxreport.metrics.clinical",  # rules or CheXbert
    "score": "cxreport.metrics",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'cxreport' has no attribute {name!r}")

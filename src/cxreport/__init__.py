"""cxreport: radiology reports from chest X-rays."""

__version__ = "0.1.0"

__all__ = ["__version__", "load_model"]


def __getattr__(name: str):
    # Lazy: `import cxreport` (and `cxreport --help`) must not pull in torch.
    if name in ("load_model", "Pipeline"):
        from cxreport import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'cxreport' has no attribute {name!r}")

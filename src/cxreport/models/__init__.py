"""Model zoo: ``create_model(name_or_path, **overrides)``, ``list_models()``, ``ModelConfig``."""

from cxreport.models.config import ModelConfig
from cxreport.models.registry import list_models, model_config


def create_model(*args, **kwargs):
    from cxreport.models.report_model import create_model as _create

    return _create(*args, **kwargs)


def build_model(*args, **kwargs):
    from cxreport.models.report_model import build_model as _build

    return _build(*args, **kwargs)


__all__ = ["ModelConfig", "build_model", "create_model", "list_models", "model_config"]

"""Model registry (where the FFN units are) and loading (weights, kwargs, transforms)."""

from torch import nn

from pipeline.models.load import create_model, data_config, eval_transform, parse_model_kwargs
from pipeline.models.registry import FFNLayer, ModelSpec, describe, family_of, supported_families


def spec_for(model: nn.Module, name: str, model_kwargs: dict | None = None) -> ModelSpec:
    """The registry's description of a created model at its own input size."""
    cfg = data_config(model, model_kwargs)
    return describe(model, name, cfg["input_size"], cfg["mean"], cfg["std"])


__all__ = [
    "FFNLayer",
    "ModelSpec",
    "create_model",
    "data_config",
    "describe",
    "eval_transform",
    "family_of",
    "parse_model_kwargs",
    "spec_for",
    "supported_families",
]

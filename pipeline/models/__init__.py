"""Model registry (where the FFN units are) and loading (weights, kwargs, transforms).

Imported lazily: ``pipeline.models.spec`` (what the site needs) does not import torch or timm.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pipeline.models.spec import FFNLayer, ModelSpec

if TYPE_CHECKING:
    from torch import nn

_LAZY = {
    "create_model": "pipeline.models.load",
    "data_config": "pipeline.models.load",
    "eval_transform": "pipeline.models.load",
    "parse_model_kwargs": "pipeline.models.load",
    "describe": "pipeline.models.registry",
    "family_of": "pipeline.models.registry",
    "supported_families": "pipeline.models.registry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeline.models' has no attribute '{name}'")


def spec_for(model: nn.Module, name: str, model_kwargs: dict | None = None,
             kinds: tuple[str, ...] = ("ffn",)) -> ModelSpec:
    """The registry's description of a created model at its own input size; ``kinds`` beyond
    ``ffn`` add each block's key, query or value channels as layers after the FFN ones."""
    from pipeline.models.load import data_config
    from pipeline.models.registry import describe

    cfg = data_config(model, model_kwargs)
    return describe(model, name, cfg["input_size"], cfg["mean"], cfg["std"], kinds)


__all__ = ["FFNLayer", "ModelSpec", "spec_for", *_LAZY]

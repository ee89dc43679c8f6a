"""Create a supported timm model with hub, local or random weights, and its eval transform."""

from __future__ import annotations

import ast
import difflib
import hashlib
from pathlib import Path
from typing import Any

import timm
import torch
from timm.data import create_transform, resolve_model_data_config
from torch import nn

from pipeline.errors import AtlasError
from pipeline.models.registry import describe, family_of
from pipeline.models.spec import ModelSpec

CHECKPOINT_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")


def parse_model_kwargs(items: list[str] | None) -> dict[str, Any]:
    """``key=value`` strings to a dict, values parsed as Python literals (as timm's train.py)."""
    kwargs: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AtlasError(f"model_kwargs expects key=value, got '{item}'",
                             option="model_kwargs")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return kwargs


def check_model_name(name: str) -> None:
    """Raise a helpful error for a name timm does not know or a family we do not support."""
    if not timm.is_model(name):
        arch = name.split(".")[0]
        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise AtlasError(f"unknown model '{name}'.{hint} `vit-atlas models` lists supported ones.")
    family_of(name)


def meta_spec(name: str, model_kwargs: dict[str, Any] | None = None,
              kinds: tuple[str, ...] = ("ffn",)) -> ModelSpec:
    """The FFN layers of timm model ``name`` from its shapes alone: the name checked, the model
    created on the meta device (no weights allocated, no download).

    >>> spec = meta_spec("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8, "depth": 2})
    >>> tuple(spec.input_size), len(spec.layers), spec.layers[0].units
    ((3, 32, 32), 2, 768)
    """
    check_model_name(name)
    kwargs = dict(model_kwargs or {})
    try:
        with torch.device("meta"):
            net = timm.create_model(name, pretrained=False, **kwargs)
    except TypeError as exc:
        raise AtlasError(f"model_kwargs {kwargs} do not fit '{name}': {exc}",
                         option="model_kwargs") from None
    cfg = data_config(net, kwargs)
    return describe(net, name, cfg["input_size"], cfg["mean"], cfg["std"], kinds)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, dict):
        for key in CHECKPOINT_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise AtlasError(f"{path}: not a state dict or a timm checkpoint")
    return {k.removeprefix("module."): v for k, v in obj.items() if torch.is_tensor(v)}


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a local state dict / timm checkpoint, naming any key that does not fit."""
    if not path.is_file():
        raise AtlasError(f"weights file not found: {path}")
    try:
        state = _read_state_dict(path)
    except AtlasError:
        raise
    except Exception as exc:  # corrupt file, pickle error, bad header...
        raise AtlasError(f"cannot read weights from {path}: {exc}") from exc
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")

        lines = [f"checkpoint {path} does not fit the model:"]
        if missing:
            lines.append(f"  missing keys: {few(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys: {few(unexpected)}")
        if mismatched:
            lines.append("  shape mismatch: " + few(
                [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in mismatched]))
        lines.append("  (check the model name and model_kwargs such as num_classes, img_size)")
        raise AtlasError("\n".join(lines), option="model_kwargs")
    model.load_state_dict(state)


def weights_id(weights: str, seed: int) -> str:
    """A citable identity for the weights: hub tag, random seed, or file name + sha256 prefix."""
    if weights in ("hub", "random"):
        return "hub" if weights == "hub" else f"random(seed={seed})"
    path = Path(weights)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "missing"
    return f"{path.name}@sha256:{digest}"


def create_model(name: str, weights: str = "random", model_kwargs: dict[str, Any] | None = None,
                 seed: int = 0) -> nn.Module:
    """A timm model in eval mode. ``weights``: 'hub', 'random' (seeded init) or a file path."""
    check_model_name(name)
    kwargs = dict(model_kwargs or {})
    if weights == "hub":
        try:
            model = timm.create_model(name, pretrained=True, **kwargs)
        except Exception as exc:  # network, auth, missing files on the hub
            raise AtlasError(
                f"could not get pretrained weights for '{name}' from the Hugging Face hub "
                f"({type(exc).__name__}: {exc}). Check the network and HF_TOKEN, or set "
                "weights to the path of a local checkpoint.", option="weights"
            ) from exc
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            try:
                model = timm.create_model(name, pretrained=False, **kwargs)
            except TypeError as exc:
                raise AtlasError(f"bad model_kwargs for '{name}': {exc}") from exc
        if weights != "random":
            load_weights(model, Path(weights))
    return model.eval().requires_grad_(False)


def _model_img_size(model: nn.Module) -> tuple[int, int] | None:
    for attr in ("patch_embed", "patch_embed1"):
        size = getattr(getattr(model, attr, None), "img_size", None)
        if size is not None:
            return (size, size) if isinstance(size, int) else tuple(size)
    embeds = getattr(model, "patch_embeds", None)  # Twins
    if embeds is not None:
        size = getattr(embeds[0], "img_size", None)
        if size is not None:
            return (size, size) if isinstance(size, int) else tuple(size)
    return None


def data_config(model: nn.Module, model_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """timm's data config, with ``input_size`` from the model itself (kwargs may change it)."""
    cfg = resolve_model_data_config(model)
    size = _model_img_size(model)
    img_size = (model_kwargs or {}).get("img_size")
    if img_size is not None:
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if size is not None:
        cfg["input_size"] = (3, *size)
    return cfg


def eval_transform(model: nn.Module, model_kwargs: dict[str, Any] | None = None):
    """The model's own eval preprocessing (resize, center crop, to tensor, normalize)."""
    return create_transform(**data_config(model, model_kwargs), is_training=False)

"""Family registry: for each supported timm family, where its FFN units are and how its tokens
are laid out.

A *layer* of the atlas is one firing of an FFN activation module (``...mlp.act``) in forward
order. For every family but CoaT that is one module = one layer. CoaT's parallel blocks share
one ``Mlp`` between their three scales (``mlp2 is mlp3 is mlp4``), so the shared module fires
three times per forward on three different token grids. We treat each firing as its own layer
(``call`` = 0, 1, 2 for scales 2, 3, 4): the weights are shared but the inputs, grids and
therefore the features' meaning differ per scale, and a unit must have one well-defined
patch map.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.errors import AtlasError
from pipeline.models.spec import FFNLayer, ModelSpec

PrefixRule = Callable[[nn.Module, str], int]
StageRule = Callable[[str, int], int]


@dataclass(frozen=True)
class Family:
    name: str
    patterns: tuple[str, ...]  # fnmatch patterns on the timm architecture name
    prefix_tokens: PrefixRule
    stage: StageRule  # (module path, call) -> stage index
    notes: str = ""
    example: str = ""  # a small model of the family (tests and docs run one per family)


def _model_prefix(model: nn.Module, path: str) -> int:
    return int(getattr(model, "num_prefix_tokens", 1))


def _convit_prefix(model: nn.Module, path: str) -> int:
    block = int(path.split(".")[1])
    return 0 if block < model.local_up_to_layer else int(model.num_prefix_tokens)


def _no_prefix(model: nn.Module, path: str) -> int:
    return 0


def _one_prefix(model: nn.Module, path: str) -> int:
    return 1


def _pit_prefix(model: nn.Module, path: str) -> int:
    return int(getattr(model, "num_tokens", 1))


def _stage_none(path: str, call: int) -> int:
    return 0


def _stage_from_part(position: int) -> StageRule:
    def rule(path: str, call: int) -> int:
        return int(path.split(".")[position])

    return rule


def _coat_stage(path: str, call: int) -> int:
    head = path.split(".")[0]
    if head.startswith("serial_blocks"):
        return int(head.removeprefix("serial_blocks")) - 1
    return 1 + call  # parallel blocks: scales 2, 3, 4 -> stages 1, 2, 3


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("clip-vit", ("vit_*_clip_*",), _model_prefix, _stage_none,
               "OpenAI weights need the *_clip_quickgelu_* names",
               "vit_base_patch32_clip_quickgelu_224"),
        Family("vit", ("vit_*",), _model_prefix, _stage_none, "1 CLS token",
               "vit_tiny_patch16_224"),
        Family("deit", ("deit_*", "deit3_*"), _model_prefix, _stage_none,
               "distilled models have 2 prefix tokens", "deit_tiny_distilled_patch16_224"),
        Family("coat", ("coat_*",), _one_prefix, _coat_stage,
               "parallel blocks share one mlp across 3 scales: one layer per scale",
               "coat_tiny"),
        Family("convit", ("convit_*",), _convit_prefix, _stage_none,
               "no CLS token before local_up_to_layer", "convit_tiny"),
        Family("pit", ("pit_*",), _pit_prefix, _stage_from_part(1), "grid shrinks per stage",
               "pit_ti_distilled_224"),
        Family("swin", ("swin_*",), _no_prefix, _stage_from_part(1), "no CLS; grid per stage",
               "swin_tiny_patch4_window7_224"),
        Family("twins", ("twins_*",), _no_prefix, _stage_from_part(1), "no CLS; grid per stage",
               "twins_svt_small"),
    ]
}


def supported_families() -> dict[str, Family]:
    return dict(FAMILIES)


def family_of(name: str) -> Family:
    """The family of a timm model name (``arch`` or ``arch.tag``); first matching pattern wins."""
    arch = name.split(".")[0]
    for family in FAMILIES.values():
        if any(fnmatch.fnmatchcase(arch, p) for p in family.patterns):
            return family
    known = ", ".join(sorted(FAMILIES))
    raise AtlasError(f"model '{name}' is not in a supported family ({known})")


def is_ffn_act(path: str) -> bool:
    """Whether module ``path`` is an FFN activation (``...mlp*.act``, timm's ``Mlp``).

    >>> is_ffn_act("blocks.4.mlp.act"), is_ffn_act("blocks.4.attn.qkv")
    (True, False)
    """
    parts = path.split(".")
    return len(parts) >= 2 and parts[-1] == "act" and parts[-2].startswith("mlp")


def token_grid(tokens: int, height: int, width: int) -> tuple[int, int] | None:
    """Rows x cols of ``tokens`` patches laid out with the input's aspect ratio.

    >>> token_grid(196, 224, 224), token_grid(7, 224, 224)
    ((14, 14), None)
    """
    if tokens <= 0:
        return None
    rows = max(1, round(math.sqrt(tokens * height / width)))
    cols = tokens // rows
    return (rows, cols) if rows * cols == tokens else None


@torch.no_grad()
def describe(model: nn.Module, name: str, input_size: tuple[int, int, int],
             mean: tuple[float, ...], std: tuple[float, ...]) -> ModelSpec:
    """Find every FFN layer of ``model`` by running one forward with hooks on its activations."""
    family = family_of(name)
    modules = {p: m for p, m in model.named_modules() if is_ffn_act(p)}
    if not modules:
        raise AtlasError(
            f"no FFN activation module (a '...mlp*.act' inside a timm Mlp) found in '{name}'"
        )
    fired: list[tuple[str, tuple[int, ...]]] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out, p=p: fired.append((p, tuple(out.shape))))
        for p, m in modules.items()
    ]
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        model(torch.zeros(1, *input_size, device=param.device, dtype=param.dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)

    calls: dict[str, int] = {}
    layers = []
    _, height, width = input_size
    for index, (path, shape) in enumerate(fired):
        call = calls.get(path, 0)
        calls[path] = call + 1
        if len(shape) == 4:  # (B, H, W, C) layouts: no prefix tokens
            prefix, grid = 0, (shape[1], shape[2])
        elif len(shape) == 3:
            prefix = family.prefix_tokens(model, path)
            grid = token_grid(shape[1] - prefix, height, width)
            if grid is None:
                raise AtlasError(
                    f"{name}: cannot lay {shape[1]} tokens of '{path}' ({prefix} prefix) on a grid"
                )
        else:
            raise AtlasError(f"{name}: unexpected activation shape {shape} at '{path}'")
        layers.append(FFNLayer(index, path, call, family.stage(path, call), prefix, grid,
                               shape[-1]))
    tag = (getattr(model, "pretrained_cfg", None) or {}).get("tag") or None
    return ModelSpec(name, family.name, tuple(input_size), tuple(mean), tuple(std), layers,
                     sum(p.numel() for p in model.parameters()), tag)

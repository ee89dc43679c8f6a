"""Family registry: for each supported timm family, where its FFN units are and how its tokens
are laid out.

A *layer* of the atlas is one firing of an FFN activation module (``...mlp.act``) in forward
order. For every family but CoaT that is one module = one layer. CoaT's parallel blocks share
one ``Mlp`` between their three scales (``mlp2 is mlp3 is mlp4``), so the shared module fires
three times per forward on three different token grids. We treat each firing as its own layer
(``call`` = 0, 1, 2 for scales 2, 3, 4): the weights are shared but the inputs, grids and
therefore the features' meaning differ per scale, and a unit must have one well-defined
patch map.

Key, query and value channels (``kinds``): each family names where its attention's
projections are (``Family.attention``): for a block's FFN layer and a kind, the linear whose
output holds that kind's channels and the first of them. timm's fused ``qkv``: query ``c``,
key ``c + dim``, value ``c + 2 dim``; ConViT's gated blocks: ``qk`` (query ``c``, key
``c + dim``) and ``v``. Swin and Twins attend within windows or over a sub-sampled grid: their
projections have no one token per patch, and the registry says so.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.errors import AtlasError
from pipeline.models.spec import KINDS, FFNLayer, ModelSpec

PrefixRule = Callable[[nn.Module, str], int]
StageRule = Callable[[str, int], int]


@dataclass(frozen=True)
class Projection:
    """Where one kind's channels of a block are: output ``[offset, offset + units)`` of
    ``module`` at its ``call``-th firing in a forward."""

    module: str
    offset: int
    units: int
    call: int = 0


# (named modules, the block's FFN layer, kind) -> where that kind's channels are
AttentionRule = Callable[[dict[str, nn.Module], FFNLayer, str], Projection]


@dataclass(frozen=True)
class Family:
    name: str
    patterns: tuple[str, ...]  # fnmatch patterns on the timm architecture name
    prefix_tokens: PrefixRule
    stage: StageRule  # (module path, call) -> stage index
    notes: str = ""
    example: str = ""  # a small model of the family (tests and docs run one per family)
    attention: AttentionRule | None = None  # key/query/value channels (None: the family has none)
    no_attention: str = ""  # why not, in words, when ``attention`` is None


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


def _block(layer: FFNLayer) -> str:
    """The block of an FFN layer: ``blocks.3.mlp.act`` -> ``blocks.3``."""
    return layer.module.rsplit(".", 2)[0]


def _split(modules: dict[str, nn.Module], path: str, parts: int, kind: str,
           order: tuple[str, ...]) -> Projection:
    linear = modules.get(path)
    if not isinstance(linear, nn.Linear) or linear.out_features % parts:
        raise AtlasError(f"expected a linear projection with {parts} equal parts at '{path}'")
    units = linear.out_features // parts
    return Projection(path, order.index(kind) * units, units)


def _fused_qkv(name: str = "attn.qkv") -> AttentionRule:
    """timm's fused ``qkv`` linear inside each block: query, key, value in that order."""

    def rule(modules: dict[str, nn.Module], layer: FFNLayer, kind: str) -> Projection:
        return _split(modules, f"{_block(layer)}.{name}", 3, kind, ("query", "key", "value"))

    return rule


def _convit_attention(modules: dict[str, nn.Module], layer: FFNLayer, kind: str) -> Projection:
    block = _block(layer)
    if f"{block}.attn.qk" not in modules:  # MHSA blocks after local_up_to_layer
        return _fused_qkv()(modules, layer, kind)
    if kind == "value":  # GPSA: a fused query-key linear and a separate value linear
        return _split(modules, f"{block}.attn.v", 1, kind, ("value",))
    return _split(modules, f"{block}.attn.qk", 2, kind, ("query", "key"))


def _coat_attention(modules: dict[str, nn.Module], layer: FFNLayer, kind: str) -> Projection:
    block = _block(layer)
    if block.startswith("serial_blocks"):
        name = "factoratt_crpe.qkv"
    else:  # the shared mlp's call-th firing is scale call + 2, which has its own attention
        name = f"factoratt_crpe{layer.call + 2}.qkv"
    return _split(modules, f"{block}.{name}", 3, kind, ("query", "key", "value"))


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
               "vit_base_patch32_clip_quickgelu_224", _fused_qkv()),
        Family("vit", ("vit_*",), _model_prefix, _stage_none, "1 CLS token",
               "vit_tiny_patch16_224", _fused_qkv()),
        Family("deit", ("deit_*", "deit3_*"), _model_prefix, _stage_none,
               "distilled models have 2 prefix tokens", "deit_tiny_distilled_patch16_224",
               _fused_qkv()),
        Family("coat", ("coat_*",), _one_prefix, _coat_stage,
               "parallel blocks share one mlp across 3 scales: one layer per scale",
               "coat_tiny", _coat_attention),
        Family("convit", ("convit_*",), _convit_prefix, _stage_none,
               "no CLS token before local_up_to_layer", "convit_tiny", _convit_attention),
        Family("pit", ("pit_*",), _pit_prefix, _stage_from_part(1), "grid shrinks per stage",
               "pit_ti_distilled_224", _fused_qkv()),
        Family("swin", ("swin_*",), _no_prefix, _stage_from_part(1), "no CLS; grid per stage",
               "swin_tiny_patch4_window7_224", None,
               "its attention runs on shifted windows: the qkv projection sees each window's "
               "tokens, not one token per patch of the image"),
        Family("twins", ("twins_*",), _no_prefix, _stage_from_part(1), "no CLS; grid per stage",
               "twins_svt_small", None,
               "its attention runs within windows or with keys and values on a sub-sampled "
               "grid: the projections have no one token per patch of the image"),
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


def check_kinds(kinds: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """Unit kinds from ``"ffn,key"`` text or names, checked, in ``KINDS`` order.

    >>> check_kinds("value,ffn"), check_kinds(None)
    (('ffn', 'value'), ('ffn',))
    >>> check_kinds("keys")
    Traceback (most recent call last):
    ...
    pipeline.errors.AtlasError: unknown kind 'keys': kinds are ffn, query, key, value
    """
    if kinds is None or kinds == "":
        return ("ffn",)
    names = [k.strip() for k in kinds.split(",")] if isinstance(kinds, str) else list(kinds)
    for k in names:
        if k not in KINDS:
            raise AtlasError(f"unknown kind '{k}': kinds are {', '.join(KINDS)}", option="kinds")
    return tuple(k for k in KINDS if k in names)


def _fire_shapes(model: nn.Module, paths: list[str], input_size: tuple[int, int, int]
                 ) -> list[tuple[str, tuple[int, ...]]]:
    """``(module path, output shape)`` of every firing of ``paths`` in one forward, in order."""
    modules = dict(model.named_modules())
    fired: list[tuple[str, tuple[int, ...]]] = []
    hooks = [modules[p].register_forward_hook(
        lambda _m, _i, out, p=p: fired.append((p, tuple(out.shape)))) for p in paths]
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        model(torch.zeros(1, *input_size, device=param.device, dtype=param.dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return fired


def attention_layers(model: nn.Module, name: str, ffn: list[FFNLayer], kinds: tuple[str, ...],
                     input_size: tuple[int, int, int]) -> list[FFNLayer]:
    """The key/query/value layers of ``kinds`` beside the FFN layers ``ffn``, indexed after
    them kind by kind; an error where the family has no such projections."""
    wanted = [k for k in kinds if k != "ffn"]
    if not wanted:
        return []
    family = family_of(name)
    if family.attention is None:
        raise AtlasError(f"{name}: {family.name} has no key, query or value channels to "
                         f"capture ({family.no_attention}); use --kinds ffn", option="kinds")
    modules = dict(model.named_modules())
    where = {(k, layer.index): family.attention(modules, layer, k) for k in wanted
             for layer in ffn}
    paths = sorted({p.module for p in where.values()})
    shapes: dict[tuple[str, int], tuple[int, ...]] = {}
    for path, shape in _fire_shapes(model, paths, input_size):
        call = sum(1 for p, _ in shapes if p == path)
        shapes[path, call] = shape
    out: list[FFNLayer] = []
    for k in wanted:
        for layer in ffn:
            proj = where[k, layer.index]
            shape = shapes.get((proj.module, proj.call))
            tokens = layer.prefix_tokens + layer.grid[0] * layer.grid[1]
            if shape is None or len(shape) != 3 or shape[1] != tokens:
                raise AtlasError(f"{name}: '{proj.module}' does not give one token per patch "
                                 f"of FFN layer {layer.index} (output {shape}, {tokens} tokens "
                                 "expected)", option="kinds")
            out.append(FFNLayer(len(ffn) + len(out), proj.module, proj.call, layer.stage,
                                layer.prefix_tokens, layer.grid, proj.units, k, proj.offset,
                                layer.index))
    return out


@torch.no_grad()
def describe(model: nn.Module, name: str, input_size: tuple[int, int, int],
             mean: tuple[float, ...], std: tuple[float, ...],
             kinds: tuple[str, ...] = ("ffn",)) -> ModelSpec:
    """Find every FFN layer of ``model`` by running one forward with hooks on its activations;
    with ``kinds`` beyond ``ffn``, each block's key, query or value channels too
    (``attention_layers``)."""
    family = family_of(name)
    modules = {p: m for p, m in model.named_modules() if is_ffn_act(p)}
    if not modules:
        raise AtlasError(
            f"no FFN activation module (a '...mlp*.act' inside a timm Mlp) found in '{name}'"
        )
    fired = _fire_shapes(model, list(modules), input_size)

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
    layers += attention_layers(model, name, layers, check_kinds(kinds), tuple(input_size))
    tag = (getattr(model, "pretrained_cfg", None) or {}).get("tag") or None
    return ModelSpec(name, family.name, tuple(input_size), tuple(mean), tuple(std), layers,
                     sum(p.numel() for p in model.parameters()), tag)

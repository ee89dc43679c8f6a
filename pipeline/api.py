"""The front door for notebooks: the pipeline's pieces on a model you already hold.

``render`` optimizes images for units of any ``nn.Module`` whose FFN activation module you
name; ``index_topk`` ranks a batch of images (or a loader) per unit with patch maps, with no
store; ``open`` reads an atlas (or an exported site) and ``build`` runs the CLI's pipeline.
The CLI's stages call the same functions underneath (``render_features``, ``Scanner``), so a
notebook and an atlas give the same numbers for the same model, recipe and seed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pipeline.errors import AtlasError
from pipeline.models.registry import describe, is_ffn_act, token_grid
from pipeline.models.spec import FFNLayer, ModelSpec
from pipeline.visualize.accent import as_seed_images
from pipeline.visualize.objectives import Objective, UnitStats
from pipeline.visualize.optimize import measure_unit_stats, render_features
from pipeline.visualize.param import from_uint8
from pipeline.visualize.prior import ImagePrior
from pipeline.visualize.recipe import DEFAULT, Recipe, get_recipe


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no weight gradients for the duration; both restored afterwards.

    >>> m = nn.Linear(2, 2).train()
    >>> with frozen(m): print(m.training, m.weight.requires_grad)
    False False
    >>> m.training, m.weight.requires_grad
    (True, True)
    """
    training = {mod: mod.training for mod in model.modules()}
    grads = {p: p.requires_grad for p in model.parameters()}
    model.eval().requires_grad_(False)
    try:
        yield model
    finally:
        for mod, was in training.items():
            mod.train(was)
        for p, was in grads.items():
            p.requires_grad_(was)


def _module_path(model: nn.Module, layer: str | nn.Module) -> str:
    if isinstance(layer, str):
        if layer not in dict(model.named_modules()):
            close = [p for p, _ in model.named_modules() if p.endswith(".act")][:5]
            raise KeyError(f"the model has no module {layer!r} (FFN activations look like: "
                           f"{', '.join(close) or 'none found'})")
        return layer
    for path, module in model.named_modules():
        if module is layer:
            return path
    raise KeyError("the module passed as layer is not part of the model")


def describe_model(model: nn.Module, *, name: str | None = None,
                   input_size: tuple[int, int, int] | None = None,
                   mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None) -> ModelSpec:
    """A ``ModelSpec`` without layers for any model: input size and normalization from
    timm's config of the model (``pretrained_cfg``, the patch embedding's ``img_size``),
    each overridable; ``name`` (default: timm's architecture name, else the class name)
    enters the per-feature seeds, so pass the CLI's ``--model`` to reproduce its images.

    >>> import timm
    >>> m = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8)
    >>> describe_model(m).input_size, describe_model(m).name
    ((3, 32, 32), 'vit_tiny_patch16_224')
    """
    from pipeline.models.load import data_config

    cfg = data_config(model)
    arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    return ModelSpec(name=name or arch or type(model).__name__,
                     family=type(model).__name__,
                     input_size=tuple(input_size or cfg["input_size"]),
                     mean=tuple(mean or cfg["mean"]), std=tuple(std or cfg["std"]))


def ffn_layer(model: nn.Module, layer: str | nn.Module, spec: ModelSpec, *,
              prefix_tokens: int | None = None) -> FFNLayer:
    """Describe the activation module ``layer`` (a path such as ``"blocks.4.mlp.act"`` or the
    module itself) by one forward: its units, token grid and prefix tokens (``prefix_tokens``,
    else the registry's rule when ``spec.name`` is in a supported family, else the model's
    ``num_prefix_tokens``, else 0). Its index is its position among the
    model's FFN activations in forward order, as in an atlas. An FFN activation of a model in
    a supported family is described by the registry itself (``registry.describe``)."""
    path = _module_path(model, layer)
    if prefix_tokens is None and is_ffn_act(path):  # a supported family: the registry's own
        try:
            found = describe(model, spec.name, spec.input_size, spec.mean, spec.std)
        except AtlasError:  # another model (a user's own): described below
            found = None
        match = [f for f in (found.layers if found else []) if f.module == path]
        if match:
            return match[0]
    modules = dict(model.named_modules())
    watched = {p for p in modules if is_ffn_act(p)} | {path}
    fired: list[tuple[str, tuple[int, ...]]] = []
    hooks = [modules[p].register_forward_hook(
        lambda _m, _i, out, p=p: fired.append((p, tuple(out.shape)))) for p in watched]
    try:
        param = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, *spec.input_size, device=param.device, dtype=param.dtype))
    finally:
        for h in hooks:
            h.remove()
    ffn_order = [p for p, _ in fired if is_ffn_act(p)]
    shape = next(s for p, s in fired if p == path)
    if len(shape) == 4:
        prefix, grid = 0, (shape[1], shape[2])
    elif len(shape) == 3:
        prefix = _prefix_tokens(model, path, spec.name) if prefix_tokens is None \
            else int(prefix_tokens)
        grid = token_grid(shape[1] - prefix, spec.input_size[1], spec.input_size[2])
        if grid is None:
            raise ValueError(f"cannot lay {shape[1]} tokens of {path!r} ({prefix} prefix "
                             "tokens) on a grid: pass prefix_tokens=")
    else:
        raise ValueError(f"{path!r} outputs {shape}: expected (B, tokens, C) or (B, H, W, C)")
    index = ffn_order.index(path) if path in ffn_order else 0
    return FFNLayer(index=index, module=path, call=0, stage=0, prefix_tokens=prefix,
                    grid=tuple(grid), units=shape[-1])


def _prefix_tokens(model: nn.Module, path: str, name: str) -> int:
    """The registry's rule for a supported family (ConViT's differ by block), else the
    model's ``num_prefix_tokens``, else 0."""
    from pipeline.models.registry import family_of

    try:
        return int(family_of(name).prefix_tokens(model, path))
    except AtlasError:
        return int(getattr(model, "num_prefix_tokens", 0))


def _device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return next(model.parameters()).device


def render(model: nn.Module, layer: str | nn.Module, units: Sequence[int] | int, *,
           recipe: Recipe | str | None = None, steps: int | None = None, seed: int = 0,
           objective: Objective | None = None, stats: UnitStats | None = None,
           images: torch.Tensor | None = None, name: str | None = None,
           prior: ImagePrior | None = None,
           seeds: torch.Tensor | np.ndarray | None = None,
           input_size: tuple[int, int, int] | None = None,
           mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
           prefix_tokens: int | None = None, diversity: int = 1,
           device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimize one image per unit of the FFN activation ``layer`` of ``model`` (``diversity``
    N > 1: N images per unit, optimized together with the recipe's diversity term, each
    unit's N consecutive in what is returned).

    Returns ``(images (N, 3, H, W) in [0, 1], activations (N,))``: the stored (8-bit)
    images and each unit's mean-over-patch activation on its image. Deterministic per
    ``seed`` (and ``name``, see ``describe_model``). ``recipe``: a ``Recipe`` or a name
    (default: the atlas default); ``objective`` replaces the recipe's (objectives compose:
    ``unit_mean() - 0.05 * total_variation()``). A recipe's selectivity term (the default's)
    needs the units' dataset statistics: ``stats``, or ``images`` (N, 3, H, W) in [0, 1] to
    measure them on; without either the term is left out, with a warning saying so. A
    recipe on a Fourier or phase basis (the default's) is shaped by the dataset's spectrum and
    colours: ``prior`` (``ImagePrior``), else measured on ``images``, else a generic 1/f
    spectrum with ImageNet's colours. A
    recipe that starts from seed images (``"accent"``, feature accentuation) needs ``seeds``:
    one image per unit, uint8 or float in [0, 1], ``(N, 3, H, W)`` or ``(N, H, W, 3)``,
    resized to the input size if need be. The model is put in eval mode without weight
    gradients, then restored.

    >>> import timm
    >>> m = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2)
    >>> imgs, acts = render(m, "blocks.1.mlp.act", [0, 5], recipe="fast", steps=4)
    >>> tuple(imgs.shape), tuple(acts.shape), bool(imgs.min() >= 0 and imgs.max() <= 1)
    ((2, 3, 32, 32), (2,), True)
    >>> seeds = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    >>> imgs, acts = render(m, "blocks.1.mlp.act", [0, 5], recipe="accent", steps=2, seeds=seeds)
    >>> bool((imgs - seeds.permute(0, 3, 1, 2) / 255).abs().mean() < 0.1)
    True
    >>> imgs, acts = render(m, "blocks.1.mlp.act", [0, 5], recipe="fast", steps=2, diversity=3)
    >>> tuple(imgs.shape), tuple(acts.shape)
    ((6, 3, 32, 32), (6,))
    """
    units = [units] if isinstance(units, int) else [int(u) for u in units]
    if isinstance(recipe, str):
        recipe = get_recipe(recipe)
    recipe = (recipe or DEFAULT).with_steps(steps)
    device = _device(model, device)
    spec = describe_model(model, name=name, input_size=input_size, mean=mean, std=std)
    with frozen(model):
        ffn = ffn_layer(model, layer, spec, prefix_tokens=prefix_tokens)
        bad = [u for u in units if not 0 <= u < ffn.units]
        if bad:
            raise ValueError(f"units {bad} are outside {ffn.module}'s 0..{ffn.units - 1}")
        if recipe.needs_unit_stats and objective is None and stats is None:
            if images is None:
                warnings.warn(f"recipe {recipe.name!r} without its selectivity term (it needs "
                              "the units' dataset statistics): pass stats= (UnitStats) or "
                              "images= (dataset images to measure them on) to add it",
                              stacklevel=2)
                recipe = dataclasses.replace(recipe, selectivity=0.0)
            else:
                stats = measure_unit_stats(model, spec, ffn, images.to(device))
        if seeds is not None:
            seeds = as_seed_images(seeds, tuple(spec.input_size[1:]))
        if prior is None and images is not None and recipe.param != "pixels":
            prior = ImagePrior.of_images(images.float())
        out = render_features(model, spec, ffn, units, recipe, seed, device, stats=stats,
                              objective=objective, seeds=seeds, prior=prior,
                              diversity=diversity)
    return from_uint8(out.images), out.activations


@dataclass
class LayerTopK:
    """``index_topk``'s result for one layer (rows: units, best first)."""

    ids: np.ndarray  # (units, k) int64 positions in the image stream; -1 = empty
    scores: np.ndarray  # (units, k) float32 mean-over-patch activations
    maps: np.ndarray  # (units, k, rows, cols) float32 patch-wise activations


def _batches(images: torch.Tensor | Iterable) -> Iterator[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        for lo in range(0, len(images), 64):
            yield images[lo:lo + 64]
        return
    for batch in images:
        yield batch[0] if isinstance(batch, list | tuple) else batch


def index_topk(model: nn.Module, layers: Sequence[str | nn.Module],
               images: torch.Tensor | Iterable, k: int = 16, *,
               device: torch.device | str | None = None,
               prefix_tokens: int | None = None) -> dict[str, LayerTopK]:
    """Exact top-``k`` images per unit of each FFN activation in ``layers``, with patch maps.

    ``images``: model-ready (normalized) inputs ``(N, 3, H, W)``, or an iterable of such
    batches (a DataLoader; ``(inputs, labels)`` pairs are fine), read twice (scores, then
    the maps of the selected images). Ids are positions in that stream. Ties go to the lower
    id, as in an atlas's index.

    >>> import timm
    >>> m = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2)
    >>> top = index_topk(m, ["blocks.0.mlp.act"], torch.randn(10, 3, 32, 32), k=3)
    >>> top["blocks.0.mlp.act"].ids.shape, top["blocks.0.mlp.act"].maps.shape
    ((768, 3), (768, 3, 4, 4))
    """
    from pipeline.index.scan import Scanner

    device = _device(model, device)
    with frozen(model):
        first = next(_batches(images))
        spec = describe_model(model, input_size=tuple(first.shape[1:]))
        ffns = [ffn_layer(model, layer, spec, prefix_tokens=prefix_tokens) for layer in layers]
        ffns = [FFNLayer(**{**f.__dict__, "index": i}) for i, f in enumerate(ffns)]
        units = {f.index: list(range(f.units)) for f in ffns}
        with Scanner(model, ffns, units, k, device) as scanner:
            seen = 0
            for batch in _batches(images):
                numbers = np.arange(seen, seen + len(batch))
                scanner.update(batch, numbers, np.full(len(batch), -1))
                seen += len(batch)
            results = {f.index: scanner.stats[f.index].topk.result() for f in ffns}
            maps = {f.index: np.zeros((*results[f.index][0].shape, *f.grid), np.float32)
                    for f in ffns}
            seen = 0
            for batch in _batches(images):
                numbers = np.arange(seen, seen + len(batch))
                seen += len(batch)
                acts = scanner.activations(batch)
                for f in ffns:
                    ids = results[f.index][0]
                    rows, slots = np.nonzero((ids >= numbers[0]) & (ids <= numbers[-1]))
                    if len(rows) == 0:
                        continue
                    a = acts[f.index].float().cpu().numpy()  # (B, rows*cols, units)
                    local = ids[rows, slots] - numbers[0]
                    maps[f.index][rows, slots] = a[local, :, rows].reshape(len(rows), *f.grid)
    return {f.module: LayerTopK(results[f.index][0], results[f.index][1], maps[f.index])
            for f in ffns}


def build(config=None, *, stages: Sequence[str] | None = None, **options):
    """The CLI's pipeline from Python: every stage of ``vit-atlas build`` (or ``stages``) on
    ``config`` (an ``AtlasConfig``; default: the offline demo) with the flat ``options``
    replaced (``out="atlas-x"``, ``layers="0:2"``, ...: ``AtlasConfig.replace``, an unknown
    option being an error); returns the atlas (``pipeline.open``).

    >>> import tempfile
    >>> atlas = build(out=tempfile.mkdtemp(), layers="0", channels="0:2", max_images=64,
    ...               probe_images=64, stats_images=64, labeler=None, steps=2,
    ...               stages=["index", "visualize", "site"])  # doctest: +SKIP
    """
    from pipeline.config import demo_config
    from pipeline.reader import open as open_atlas
    from pipeline.stages import run_stages, stages_for

    config = (demo_config() if config is None else config).replace(**options)
    run_stages(config, stages if stages is not None else stages_for("build", config))
    return open_atlas(config.runtime.out)

"""The render loop: optimize one image per (layer, unit) for a batch of units of one layer.

``render_features`` takes every piece from its recipe (parameterization, transforms,
objective, optimizer) and returns the stored images, their objective, every unit's score on
them (for fidelity) and an attribution map (MACO's: accumulated input-gradient magnitudes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.capture import LayerCapture
from pipeline.index.pooled import patch_mean
from pipeline.models.spec import FFNLayer, ModelSpec
from pipeline.precision import autocast
from pipeline.visualize.accent import check_seeds, start_from
from pipeline.visualize.objectives import Objective, UnitStats, Views, gram_similarity
from pipeline.visualize.param import PARAMETERIZATIONS, from_uint8, to_uint8
from pipeline.visualize.prior import ImagePrior
from pipeline.visualize.recipe import Recipe
from pipeline.visualize.transforms import augment, plan, shown


def feature_seed(seed: int, model: str, layer: int, unit: int, image: int = 0) -> int:
    """A 63-bit seed that depends only on (seed, model, layer, unit) and, for a unit's
    further images (``diversity``), the image's index (image 0: the unit's one image).

    >>> feature_seed(0, "m", 1, 2) == feature_seed(0, "m", 1, 2, 0) != feature_seed(0, "m", 1, 2, 1)
    True
    """
    key = f"{seed}/{model}/{layer}/{unit}" + (f"/{image}" if image else "")
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class Normalize(nn.Module):
    def __init__(self, spec: ModelSpec, device: torch.device):
        super().__init__()
        self.mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@torch.no_grad()
def layer_scores(model: nn.Module, spec: ModelSpec, layer: FFNLayer,
                 images: torch.Tensor) -> torch.Tensor:
    """Mean-over-patch-tokens activation of every unit of ``layer``: (B, 3, H, W) → (B, C)."""
    return patch_mean(layer_acts(model, spec, layer, images))


@torch.no_grad()
def layer_acts(model: nn.Module, spec: ModelSpec, layer: FFNLayer,
               images: torch.Tensor) -> torch.Tensor:
    """The patch-token activations of ``layer``: (B, 3, H, W) in [0, 1] → (B, patches, C)."""
    device = images.device
    with LayerCapture(model, [layer]) as capture, autocast(device):
        return capture(Normalize(spec, device)(images))[layer.index]


def measure_unit_stats(model: nn.Module, spec: ModelSpec, layer: FFNLayer,
                       images: torch.Tensor) -> UnitStats:
    """Per-unit mean and std of ``layer_scores`` over ``images`` ``(N, 3, H, W)`` in [0, 1]:
    the statistics the selectivity term needs, where no index holds them (a notebook).

    >>> from pipeline.config import demo_config
    >>> from pipeline.models import create_model, spec_for
    >>> m = demo_config().model
    >>> model = create_model(m.name, m.weights, m.kwargs)
    >>> spec = spec_for(model, m.name, m.kwargs)
    >>> measure_unit_stats(model, spec, spec.layers[0], torch.rand(8, 3, 64, 64)).std.shape
    torch.Size([384])
    """
    scores = layer_scores(model, spec, layer, images).double()
    return UnitStats(scores.mean(0).float(), scores.std(0).float())


def contrast_stretch(images: torch.Tensor, quantile: float) -> torch.Tensor:
    """Map each image's ``[quantile, 1 - quantile]`` pixel-value range to [0, 1] (clipped);
    ``quantile`` 0 leaves the images as they are.

    >>> x = torch.tensor([[[[0.4, 0.5], [0.5, 0.6]]]]).expand(1, 3, 2, 2)
    >>> contrast_stretch(x, 0.0).equal(x), contrast_stretch(x, 0.01).amax().item()
    (True, 1.0)
    """
    if quantile <= 0:
        return images
    flat = images.flatten(1)
    lo = flat.quantile(quantile, dim=1)[:, None, None, None]
    hi = flat.quantile(1 - quantile, dim=1)[:, None, None, None]
    return ((images - lo) / (hi - lo).clamp(min=1e-6)).clamp(0, 1)


@dataclass
class Rendering:
    """What ``render_features`` made: with ``diversity`` N > 1, B = units × N rows, each
    unit's N images consecutive (image 0 first)."""

    images: torch.Tensor  # (B, H, W, 3) uint8, what is stored
    activations: torch.Tensor  # (B,) each unit's score on its stored image
    scores: torch.Tensor  # (B, C) every unit of the layer on each stored image
    attributions: torch.Tensor  # (B, H, W) uint8 accumulated |input gradient|, max = 255
    # (units, N, N) cosine similarity of the Gram matrices of the stored images' patch-token
    # activations (``objectives.gram_similarity``), None with one image per unit
    similarity: torch.Tensor | None = None


def _optimizer(recipe: Recipe, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    if recipe.optimizer == "nadam":
        return torch.optim.NAdam(params, lr=recipe.lr, betas=recipe.betas)
    return torch.optim.Adam(params, lr=recipe.lr, betas=recipe.betas)


def _attribution_uint8(total: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` gradient magnitudes → uint8, each image scaled by its 99th percentile."""
    flat = total.flatten(1)
    top = flat.quantile(0.99, dim=1).clamp(min=1e-12)[:, None, None]
    return (total / top).clamp(0, 1).mul(255).round().to(torch.uint8)


def render_features(model: nn.Module, spec: ModelSpec, layer: FFNLayer, units: Sequence[int],
                    recipe: Recipe, seed: int, device: torch.device, *,
                    prior: ImagePrior | None = None, stats: UnitStats | None = None,
                    objective: Objective | None = None,
                    seeds: torch.Tensor | None = None, diversity: int = 1) -> Rendering:
    """Optimize one image per unit of ``layer`` with ``recipe`` (``objective`` overrides the
    recipe's). ``prior``: the dataset's spectrum and colours (Fourier/phase parameterizations;
    a 1/f prior without it). ``stats``: the layer's dataset statistics (selectivity term).
    ``seeds``: each unit's seed image ``(B, 3, H, W)`` in [0, 1], for a recipe that starts
    from one (``Recipe.needs_seeds``: feature accentuation, see ``accent``).

    ``diversity`` N > 1: N images per unit, optimized together with the recipe's diversity
    term (``Recipe.objective``); image k of unit u draws its random numbers from its own
    generator, seeded by (seed, model, layer, u, k), so a unit's images are the same whatever
    else is in the batch. Image 0's seed is the unit's one image's seed.

    >>> from pipeline.config import demo_config
    >>> from pipeline.models import create_model, spec_for
    >>> from pipeline.visualize.recipe import Recipe
    >>> m = demo_config().model
    >>> model = create_model(m.name, m.weights, m.kwargs)
    >>> spec = spec_for(model, m.name, m.kwargs)
    >>> out = render_features(model, spec, spec.layers[0], [3, 7], Recipe("r", steps=2),
    ...                       0, torch.device("cpu"), diversity=2)
    >>> tuple(out.images.shape), tuple(out.similarity.shape)
    ((4, 64, 64, 3), (2, 2, 2))
    """
    if diversity < 1:
        raise ValueError(f"diversity must be at least 1, not {diversity}")
    size = tuple(spec.input_size[1:])
    if recipe.needs_unit_stats and stats is None and objective is None:
        raise ValueError(f"recipe {recipe.name!r} needs the index's per-unit statistics")
    seeds = check_seeds(recipe, seeds, len(units), size)
    if diversity > 1:  # every unit's N images, consecutive
        seeds = None if seeds is None else seeds.repeat_interleave(diversity, 0)
    generators = [torch.Generator().manual_seed(feature_seed(seed, spec.name, layer.index, u, k))
                  for u in units for k in range(diversity)]
    units = [u for u in units for _ in range(diversity)]
    canvas = recipe.canvas_size(size)  # the optimized image's size (MACO's canvas)
    param = PARAMETERIZATIONS[recipe.param](generators, canvas, device, prior,
                                            **recipe.param_options())
    if seeds is not None:
        seeds = seeds.to(device)
        start_from(param, seeds)
    aug = plan(generators, recipe, canvas).to(device)
    objective = objective or recipe.objective(diversity)
    if stats is not None:
        stats = UnitStats(stats.mean.to(device), stats.std.to(device))
    normalize = Normalize(spec, device)
    unit_index = torch.tensor(list(units), device=device)
    optimizer = _optimizer(recipe, param.parameters())
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=recipe.steps)
    attribution = torch.zeros(len(units), *canvas, device=device)
    with LayerCapture(model, [layer], truncate=recipe.truncate) as capture:
        for step in range(recipe.steps):
            image = param.image()
            if not image.requires_grad:
                raise RuntimeError("parameterization image does not depend on its parameters")
            image.retain_grad()
            x = augment(image, aug, step, recipe, size)
            with autocast(device):
                acts = capture(normalize(x))[layer.index]
            views = Views(x, acts, unit_index, recipe.copies, stats, image, seeds, diversity)
            # A sum of per-feature losses: each image's gradient is its own feature's alone.
            loss = -objective(views).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            attribution += image.grad.detach().abs().sum(1)
            optimizer.step()
            schedule.step()
            param.after_step()
    with torch.no_grad():
        stored = to_uint8(contrast_stretch(shown(param.image(), recipe, size),
                                           recipe.stretch)).cpu()
        attribution = shown(attribution[:, None], recipe, size)[:, 0]
    similarity = None
    if diversity == 1:
        scores = layer_scores(model, spec, layer, from_uint8(stored).to(device))
    else:
        acts = layer_acts(model, spec, layer, from_uint8(stored).to(device))
        scores = patch_mean(acts)
        similarity = gram_similarity(acts.view(-1, diversity, *acts.shape[1:])).cpu()
    activation = scores.gather(1, unit_index[:, None])[:, 0]
    return Rendering(stored, activation.cpu(), scores.cpu(),
                     _attribution_uint8(attribution).cpu(), similarity)


def render(model: nn.Module, spec: ModelSpec, layer: FFNLayer, units: Sequence[int],
           recipe: Recipe, seed: int, device: torch.device,
           **options) -> tuple[torch.Tensor, torch.Tensor]:
    """``render_features``' uint8 images ``(B, H, W, 3)`` (CPU) and each unit's objective on
    its stored (quantized, un-augmented) image ``(B,)``."""
    out = render_features(model, spec, layer, units, recipe, seed, device, **options)
    return out.images, out.activations

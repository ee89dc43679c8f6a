"""Augmentations of each step's images, with every random draw made ahead of time per feature.

The paper's: per-copy colour jitter ``(x - m) / s``, a per-copy colour offset annealed to 0, and
a roll (translation). Added here: random crops (zoom) resized back to the input, MACO-style,
and Gaussian pixel noise; MACO's canvas (the crops come from an image larger than the input,
``shown`` is what is stored of it) and Plug-In Inversion's Zoom (resolution growing over the
first half of the steps).

Drawing a feature's whole random stream from its own generator before optimizing makes its
image independent of which other features share the batch, of the batch size and of sharding.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from pipeline.visualize.recipe import Recipe


@dataclass
class AugmentationPlan:
    """Random draws of B features for all steps: tensors shaped (B, steps, copies, ...)."""

    jitter_mean: torch.Tensor  # (B, S, C, 3)
    jitter_scale: torch.Tensor  # (B, S, C, 3)
    offset: torch.Tensor  # (B, S, C, 3)  N(0, 1) draws, scaled at use
    shift: torch.Tensor  # (B, S, 2) int64 roll in pixels (shared by a feature's copies)
    crop: torch.Tensor  # (B, S, C, 3) crop side (fraction of the image), centre y, centre x
    noise_seed: torch.Tensor  # (B,) int64 seed of each feature's pixel-noise stream

    def to(self, device: torch.device) -> AugmentationPlan:
        return AugmentationPlan(*(getattr(self, f.name).to(device) for f in fields(self)))


def plan(generators: list[torch.Generator], recipe: Recipe,
         size: tuple[int, int]) -> AugmentationPlan:
    s, c = recipe.steps, recipe.copies
    max_shift = round(recipe.roll * min(size))
    lo, hi = recipe.crop or (1.0, 1.0)
    parts = []
    for g in generators:
        mean = torch.rand(s, c, 3, generator=g) * 2 - 1
        scale = torch.exp(torch.rand(s, c, 3, generator=g) * 2 - 1)
        offset = torch.randn(s, c, 3, generator=g)
        shift = torch.randint(-max_shift, max_shift + 1, (s, 2), generator=g)
        side = lo + (hi - lo) * torch.rand(s, c, 1, generator=g)
        centre = 0.5 + 0.15 * torch.randn(s, c, 2, generator=g)
        centre = torch.minimum(torch.maximum(centre, side / 2), 1 - side / 2)  # crop inside
        noise_seed = torch.randint(0, 2**62, (), generator=g)
        parts.append((mean, scale, offset, shift, torch.cat([side, centre], -1), noise_seed))
    return AugmentationPlan(*(torch.stack(p) for p in zip(*parts, strict=True)))


def roll_each(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Roll image i of ``x`` (N, C, H, W) by ``shift[i] = (dy, dx)`` with one gather."""
    n, _, h, w = x.shape
    rows = (torch.arange(h, device=x.device)[None, :] - shift[:, :1]) % h  # (N, H)
    cols = (torch.arange(w, device=x.device)[None, :] - shift[:, 1:]) % w  # (N, W)
    x = x.gather(2, rows[:, None, :, None].expand(-1, x.shape[1], -1, w))
    return x.gather(3, cols[:, None, None, :].expand(-1, x.shape[1], h, -1))


def crop_each(x: torch.Tensor, crop: torch.Tensor,
              size: tuple[int, int] | None = None) -> torch.Tensor:
    """Crop image i of ``x`` to the square ``crop[i] = (side, cy, cx)`` (fractions of the
    image) and resize it to ``size`` (default: back to the full size) (bilinear), in one
    ``grid_sample``. To another size (a canvas's crops), sampled at twice ``size`` and
    averaged 2×2 down, so that a crop larger than ``size`` is not aliased."""
    side, cy, cx = crop.unbind(1)
    theta = torch.zeros(x.shape[0], 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = side, side
    theta[:, 0, 2], theta[:, 1, 2] = 2 * cx - 1, 2 * cy - 1
    resize = size is not None and tuple(size) != tuple(x.shape[-2:])
    out = [2 * s for s in size] if resize else list(x.shape[-2:])
    grid = F.affine_grid(theta, [x.shape[0], x.shape[1], *out], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return F.avg_pool2d(x, 2) if resize else x


def shown(images: torch.Tensor, recipe: Recipe, size: tuple[int, int]) -> torch.Tensor:
    """What is stored of ``(B, 3, h, w)`` optimized images for a model input of ``size``: the
    images themselves, or, for a canvas, the whole canvas resized down (area) or its central
    1 / canvas (``recipe.canvas_view``)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    if recipe.canvas_view == "centre":
        h, w = images.shape[-2:]
        top, left = (h - size[0]) // 2, (w - size[1]) // 2
        return images[..., top:top + size[0], left:left + size[1]]
    return F.interpolate(images, size=tuple(size), mode="area")


def zoom_each(x: torch.Tensor, step: int, recipe: Recipe) -> torch.Tensor:
    """Plug-In Inversion's Zoom: ``x`` at ``zoom_start`` of its resolution at step 0, growing
    linearly to full resolution at ``zoom_end`` of the steps (area down, bilinear back up)."""
    progress = min(1.0, step / max(1.0, recipe.steps * recipe.zoom_end))
    fraction = recipe.zoom_start + (1 - recipe.zoom_start) * progress
    size = x.shape[-2:]
    low = tuple(max(1, round(fraction * s)) for s in size)
    if low == tuple(size):
        return x
    x = F.interpolate(x, size=low, mode="area")
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def pixel_noise(aug: AugmentationPlan, step: int, copies: int,
                shape: tuple[int, int, int]) -> torch.Tensor:
    """``(B * copies, 3, H, W)`` N(0, 1) noise of ``step``, from each feature's own stream."""
    draws = []
    for seed in aug.noise_seed.tolist():
        g = torch.Generator().manual_seed(int(seed) + step)
        draws.append(torch.randn(copies, *shape, generator=g))
    return torch.cat(draws)


def augment(images: torch.Tensor, aug: AugmentationPlan, step: int, recipe: Recipe,
            size: tuple[int, int] | None = None) -> torch.Tensor:
    """``(B, 3, h, w)`` → ``(B * copies, 3, H, W)`` augmented views for ``step``, at the model
    input's ``size`` (default: the images'; smaller for a canvas)."""
    size = tuple(size or images.shape[-2:])
    b, c = images.shape[0], recipe.copies
    if step >= recipe.steps * (1 - recipe.polish):  # the last steps: translation at most
        x = shown(images, recipe, size).repeat_interleave(c, dim=0)
        if recipe.polish_roll and recipe.roll:
            shift = (aug.shift[:, step] * (recipe.polish_roll / recipe.roll)).round().long()
            x = roll_each(x, shift.repeat_interleave(c, dim=0))
        return x
    x = images.repeat_interleave(c, dim=0)
    if recipe.zoom_start < 1:
        x = zoom_each(x, step, recipe)
    remaining = (recipe.steps - step) / recipe.steps
    if recipe.colour_jitter:
        m = aug.jitter_mean[:, step].reshape(b * c, 3, 1, 1)
        s = aug.jitter_scale[:, step].reshape(b * c, 3, 1, 1)
        if recipe.anneal_jitter:
            strength = remaining**recipe.anneal_jitter
            m, s = m * strength, s**strength
        x = (x - m) / s
    if recipe.offset:
        x = x + aug.offset[:, step].reshape(b * c, 3, 1, 1) * (recipe.offset * remaining)
    if recipe.roll:
        x = roll_each(x, aug.shift[:, step].repeat_interleave(c, dim=0))
    if recipe.crop:
        x = crop_each(x, aug.crop[:, step].reshape(b * c, 3), size)
    if recipe.noise:
        noise = pixel_noise(aug, step, c, tuple(x.shape[1:])).to(x.device, x.dtype)
        x = x + recipe.noise * noise
    return x

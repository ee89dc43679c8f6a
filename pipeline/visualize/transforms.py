"""The paper's augmentations, with every random draw made ahead of time per feature.

Drawing a feature's whole random stream from its own generator before optimizing makes its
image independent of which other features share the batch, of the batch size and of sharding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline.visualize.recipe import Recipe


@dataclass
class AugmentationPlan:
    """Random draws of B features for all steps: tensors shaped (B, steps, copies, ...)."""

    jitter_mean: torch.Tensor  # (B, S, C, 3)
    jitter_scale: torch.Tensor  # (B, S, C, 3)
    offset: torch.Tensor  # (B, S, C, 3)  N(0, 1) draws, scaled at use
    shift: torch.Tensor  # (B, S, 2) int64 roll in pixels (shared by a feature's copies)

    def to(self, device: torch.device) -> AugmentationPlan:
        return AugmentationPlan(*(t.to(device) for t in
                                  (self.jitter_mean, self.jitter_scale, self.offset, self.shift)))


def plan(generators: list[torch.Generator], recipe: Recipe,
         size: tuple[int, int]) -> AugmentationPlan:
    s, c = recipe.steps, recipe.copies
    max_shift = round(recipe.roll * min(size))
    parts = []
    for g in generators:
        mean = torch.rand(s, c, 3, generator=g) * 2 - 1
        scale = torch.exp(torch.rand(s, c, 3, generator=g) * 2 - 1)
        offset = torch.randn(s, c, 3, generator=g)
        shift = torch.randint(-max_shift, max_shift + 1, (s, 2), generator=g)
        parts.append((mean, scale, offset, shift))
    return AugmentationPlan(*(torch.stack(p) for p in zip(*parts, strict=True)))


def roll_each(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Roll image i of ``x`` (N, C, H, W) by ``shift[i] = (dy, dx)`` with one gather."""
    n, _, h, w = x.shape
    rows = (torch.arange(h, device=x.device)[None, :] - shift[:, :1]) % h  # (N, H)
    cols = (torch.arange(w, device=x.device)[None, :] - shift[:, 1:]) % w  # (N, W)
    x = x.gather(2, rows[:, None, :, None].expand(-1, x.shape[1], -1, w))
    return x.gather(3, cols[:, None, None, :].expand(-1, x.shape[1], h, -1))


def augment(images: torch.Tensor, aug: AugmentationPlan, step: int, recipe: Recipe) -> torch.Tensor:
    """``(B, 3, H, W)`` → ``(B * copies, 3, H, W)`` augmented views for ``step``."""
    b, c = images.shape[0], recipe.copies
    x = images.repeat_interleave(c, dim=0)
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
    return x

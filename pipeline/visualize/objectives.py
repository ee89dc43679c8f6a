"""Objectives, lucent-style: small functions of the render step's ``Views`` wrapped in an
``Objective`` that adds, subtracts, scales and sums, and carries a readable description.

Each objective returns one value per feature ``(B,)`` (the mean over that feature's augmented
copies), so a batch of features is a sum of independent problems: each image's gradient is its
own feature's alone.

>>> objective = unit_mean() - 0.004 * total_variation()
>>> objective.description
'unit_mean - 0.004 * total_variation'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from pipeline.index.pooled import patch_mean


@dataclass(frozen=True)
class UnitStats:
    """A layer's per-unit dataset statistics (from the index): mean and std of the score."""

    mean: torch.Tensor  # (C,)
    std: torch.Tensor  # (C,)

    def z(self, scores: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` scores → z-scores against the dataset."""
        return (scores - self.mean) / self.std.clamp(min=1e-6)


@dataclass
class Views:
    """What an objective sees at one step: ``B`` features × ``copies`` augmented views."""

    images: torch.Tensor  # (B * copies, 3, H, W) the augmented views fed to the model
    acts: torch.Tensor  # (B * copies, patches, C) the target layer's FFN activation
    units: torch.Tensor  # (B,) each feature's unit
    copies: int
    stats: UnitStats | None = None
    image: torch.Tensor | None = None  # (B, 3, H, W) the bare images (before augmentation)
    seeds: torch.Tensor | None = None  # (B, 3, H, W) each feature's seed image (accentuation)

    @property
    def scores(self) -> torch.Tensor:
        """``(B * copies, C)`` every unit's patch mean (computed once per step)."""
        if not hasattr(self, "_scores"):
            self._scores = patch_mean(self.acts)
        return self._scores

    def per_feature(self, values: torch.Tensor) -> torch.Tensor:
        """``(B * copies,)`` → ``(B,)`` mean over each feature's copies."""
        return values.view(-1, self.copies).mean(1)


class Objective:
    """A per-feature objective ``Views → (B,)`` to maximize; composes with +, -, * and sum."""

    def __init__(self, fn: Callable[[Views], torch.Tensor], description: str):
        self.fn, self.description = fn, description

    def __call__(self, views: Views) -> torch.Tensor:
        return self.fn(views)

    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, int | float):
            if other == 0:
                return self
            return Objective(lambda v: self(v) + other, f"{self.description} + {other}")
        return Objective(lambda v: self(v) + other(v), f"{self.description} + {other.description}")

    __radd__ = __add__  # sum([...]) starts from 0

    def __neg__(self) -> Objective:
        return -1 * self

    def __sub__(self, other: Objective) -> Objective:
        return Objective(lambda v: self(v) - other(v),
                         f"{self.description} - {_grouped(other.description)}")

    def __mul__(self, scale: float) -> Objective:
        return Objective(lambda v: scale * self(v), f"{scale:g} * {_grouped(self.description)}")

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return f"Objective({self.description})"


def _grouped(description: str) -> str:
    """Parenthesize a sum or difference so that it reads right inside a product or after -."""
    return f"({description})" if " + " in description or " - " in description else description


def unit_mean() -> Objective:
    """The paper's objective: the unit's activation averaged over patch tokens."""
    def fn(v: Views) -> torch.Tensor:
        own = v.scores.gather(1, v.units.repeat_interleave(v.copies)[:, None])[:, 0]
        return v.per_feature(own)

    return Objective(fn, "unit_mean")


def total_variation() -> Objective:
    """TV of the augmented views (the paper's regularizer; subtract it)."""
    return Objective(lambda v: v.per_feature(total_variation_of(v.images)), "total_variation")


def selectivity(temperature: float = 1.0) -> Objective:
    """How far the unit's z-score leads its layer's: ``z_u - T · logsumexp(z / T)`` (≤ 0; near
    0 when the unit's z-score is the layer's highest by a margin). Needs the index's stats."""
    def fn(v: Views) -> torch.Tensor:
        if v.stats is None:
            raise ValueError("the selectivity objective needs the index's per-unit statistics")
        z = v.stats.z(v.scores)
        own = z.gather(1, v.units.repeat_interleave(v.copies)[:, None])[:, 0]
        lead = own - temperature * torch.logsumexp(z / temperature, dim=1)
        return v.per_feature(lead)

    return Objective(fn, f"selectivity(T={temperature:g})")


def total_variation_of(x: torch.Tensor) -> torch.Tensor:
    """Per image: L2 norms (over H, W) of horizontal, vertical and both diagonal differences,
    averaged over channels and summed over the four directions. ``(N, C, H, W)`` → ``(N,)``."""
    diffs = (
        x[..., :, 1:] - x[..., :, :-1],
        x[..., 1:, :] - x[..., :-1, :],
        x[..., 1:, 1:] - x[..., :-1, :-1],
        x[..., 1:, :-1] - x[..., :-1, 1:],
    )
    return sum(d.flatten(2).norm(dim=2).mean(dim=1) for d in diffs)


def tv_per_pixel(x: torch.Tensor) -> torch.Tensor:
    """Smoothness figure for reports: mean absolute neighbour difference per pixel, ``(N,)``."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    return (dx + dy) / 2

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
    # images optimized together per unit (``diversity``): the B rows are units × this many
    # consecutive images (unit-major); 1: one image per unit, every row its own problem
    images_per_unit: int = 1

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


def diversity() -> Objective:
    """Olah et al.'s (2017) diversity term, to subtract: per image, its share of the mean
    pairwise cosine similarity between the Gram matrices of its unit's images' patch-token
    activations at the target layer (``gram_similarity``), so that the unit's images' terms
    sum to that mean (``images_per_unit`` images per unit; 0 for a lone image). With several
    augmented copies per image, copy c of one image is compared with copy c of another.

    >>> acts = torch.rand(4, 3, 2)  # 2 units x 2 images, 1 copy, 3 patches, 2 channels
    >>> views = Views(torch.zeros(4, 3, 1, 1), acts, torch.tensor([0, 0, 1, 1]), 1,
    ...               images_per_unit=2)
    >>> d = diversity()(views)
    >>> d.shape, bool(torch.allclose(d[0] + d[1], gram_similarity(acts[:2])[0, 1]))
    (torch.Size([4]), True)
    """
    def fn(v: Views) -> torch.Tensor:
        n = v.images_per_unit
        rows = v.acts.shape[0] // v.copies  # units × images
        if n == 1:
            return v.acts.new_zeros(rows, dtype=torch.float32)
        acts = v.acts.view(rows // n, n, v.copies, *v.acts.shape[1:]).transpose(1, 2)
        sim = gram_similarity(acts)  # (units, copies, n, n)
        others = (sim.sum(-1) - sim.diagonal(dim1=-2, dim2=-1)) / (n - 1)  # (units, copies, n)
        return (others / n).mean(1).reshape(rows)

    return Objective(fn, "diversity")


def gram_similarity(acts: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of the (uncentred) Gram matrices ``G = Aᵀ A`` (channels × channels)
    of activations ``A`` (patches × channels), between every two of ``n`` images:
    ``(..., n, P, C)`` → ``(..., n, n)``, in float32. ``<G_i, G_j> = ||A_i A_jᵀ||²`` (the
    Frobenius norm), so the smaller of the two sides (P × P or C × C) is what is formed.

    >>> a = torch.rand(3, 5, 4)
    >>> g = (a.transpose(1, 2) @ a).flatten(1)
    >>> hand = torch.nn.functional.cosine_similarity(g[:, None], g[None], dim=2)
    >>> bool(torch.allclose(gram_similarity(a), hand, atol=1e-6))
    True
    """
    a = acts.float()
    patches, channels = a.shape[-2:]
    if patches <= channels:
        cross = torch.einsum("...ipc,...jqc->...ijpq", a, a)  # (..., n, n, P, P)
        inner = cross.square().sum((-2, -1))
    else:
        gram = (a.transpose(-2, -1) @ a).flatten(-2)  # (..., n, C * C)
        inner = gram @ gram.transpose(-2, -1)
    norm = inner.diagonal(dim1=-2, dim2=-1).clamp(min=1e-24).sqrt()
    return inner / (norm[..., :, None] * norm[..., None, :])


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

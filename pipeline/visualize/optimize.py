"""The render loop: optimize one image per (layer, unit) for a batch of units of one layer."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence

import torch
from torch import nn

from pipeline.capture import LayerCapture
from pipeline.models.spec import FFNLayer, ModelSpec
from pipeline.visualize.objectives import total_variation, unit_mean
from pipeline.visualize.param import PixelParam, from_uint8, to_uint8
from pipeline.visualize.recipe import Recipe
from pipeline.visualize.transforms import augment, plan


def feature_seed(seed: int, model: str, layer: int, unit: int) -> int:
    """A 63-bit seed that depends only on (seed, model, layer, unit)."""
    digest = hashlib.sha256(f"{seed}/{model}/{layer}/{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def autocast(device: torch.device):
    """bf16 autocast on CUDA; plain float32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


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
    device = images.device
    with LayerCapture(model, [layer]) as capture, autocast(device):
        acts = capture(Normalize(spec, device)(images))[layer.index]
    return acts.float().mean(dim=1)


def render(model: nn.Module, spec: ModelSpec, layer: FFNLayer, units: Sequence[int],
           recipe: Recipe, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimize one image per unit. Returns uint8 images ``(B, H, W, 3)`` (CPU) and each unit's
    objective on its stored (quantized, un-augmented) image, ``(B,)``."""
    size = tuple(spec.input_size[1:])
    generators = [torch.Generator().manual_seed(feature_seed(seed, spec.name, layer.index, u))
                  for u in units]
    param = PixelParam(generators, size, device)
    aug = plan(generators, recipe, size).to(device)
    normalize = Normalize(spec, device)
    unit_index = torch.tensor(list(units), device=device).repeat_interleave(recipe.copies)
    optimizer = torch.optim.Adam(param.parameters(), lr=recipe.lr, betas=recipe.betas)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=recipe.steps)
    b = len(units)
    with LayerCapture(model, [layer], truncate=recipe.truncate) as capture:
        for step in range(recipe.steps):
            x = augment(param.image(), aug, step, recipe)
            with autocast(device):
                acts = capture(normalize(x))[layer.index]
            objective = unit_mean(acts, unit_index).view(b, recipe.copies).mean(1)
            tv = total_variation(x).view(b, recipe.copies).mean(1)
            # A sum of per-feature losses: each image's gradient is its own feature's alone.
            loss = (recipe.tv * tv - objective).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            param.after_step()
    with torch.no_grad():
        stored = to_uint8(param.image()).cpu()
    scores = layer_scores(model, spec, layer, from_uint8(stored).to(device))
    activation = scores.gather(1, torch.tensor(list(units), device=device)[:, None])[:, 0]
    return stored, activation.cpu()

"""Feature accentuation (Hamblin, Fel et al. 2024): start from a natural seed image, raise the
unit, and stay close to the seed, with transformation robustness.

The atlas's seed is the unit's best dataset example (its top-1 thumbnail from the index). The
image is optimized in plain pixels, initialised to the seed (not to noise), under the recipe's
augmentations; the objective gains ``- seed_distance * distance_to_seed``: the mean squared
pixel difference between the bare image and its seed (``horama.accentuation``'s L2 penalty;
``faccent`` also offers a distance in a layer's activations). The result answers "what in this
image excites the unit", and stays recognisable by construction.

Pieces: ``distance_to_seed`` (an ``Objective``), ``as_seed_images`` (uint8 or float images
of any layout → the model's input size), ``start_from`` (a parameterization set to the seeds),
``index_seeds`` (each unit's top-1 example of an atlas) and ``seed_scores``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import AtlasError
from pipeline.visualize.objectives import Objective, Views

SEED_IMAGES = ("noise", "best_example")  # what a recipe's image starts from


def distance_to_seed() -> Objective:
    """Mean squared pixel difference between each bare image and its seed, ``(B,)`` (subtract
    it). Needs ``Views.image`` and ``Views.seeds`` (the render loop sets them for a seeded
    recipe).

    >>> x = torch.zeros(2, 3, 4, 4)
    >>> v = Views(x, torch.zeros(2, 16, 8), torch.tensor([0, 1]), 1,
    ...           image=x, seeds=torch.full_like(x, 0.5))
    >>> distance_to_seed()(v)
    tensor([0.2500, 0.2500])
    """
    def fn(v: Views) -> torch.Tensor:
        if v.image is None or v.seeds is None:
            raise ValueError("the distance_to_seed objective needs seed images (seeds=)")
        return (v.image - v.seeds).square().flatten(1).mean(1)

    return Objective(fn, "distance_to_seed")


def as_seed_images(images: torch.Tensor | np.ndarray | Sequence[np.ndarray],
                   size: tuple[int, int]) -> torch.Tensor:
    """Seed images as the render loop takes them: ``(N, 3, H, W)`` float32 in [0, 1] at the
    model's input ``size``. Accepts uint8 (0-255) or float ([0, 1]) images, channels first
    ``(N, 3, h, w)`` or last ``(N, h, w, 3)``, or a list of ``(h, w, 3)`` arrays; other sizes
    are resized (bilinear, antialiased).

    >>> as_seed_images(np.full((2, 8, 8, 3), 255, np.uint8), (4, 4)).shape
    torch.Size([2, 3, 4, 4])
    >>> float(as_seed_images(torch.ones(1, 3, 4, 4), (4, 4)).max())
    1.0
    """
    if isinstance(images, list | tuple):
        images = np.stack([np.asarray(im) for im in images])
    x = torch.from_numpy(np.array(images)) if isinstance(images, np.ndarray) \
        else torch.as_tensor(images)  # a copy: read-only arrays (decoded PNGs) are fine
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or 3 not in (x.shape[1], x.shape[-1]):
        raise ValueError(f"seed images must be (N, 3, H, W) or (N, H, W, 3), got {tuple(x.shape)}")
    if x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    if x.dtype == torch.uint8:
        x = x.float() / 255
    elif x.is_floating_point():
        x = x.float()
        if x.min() < 0 or x.max() > 1:
            raise ValueError("float seed images must lie in [0, 1] (or pass uint8 images)")
    else:
        raise ValueError(f"seed images must be uint8 or float, got {x.dtype}")
    if tuple(x.shape[2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False,
                          antialias=True).clamp(0, 1)
    return x.contiguous()


def check_seeds(recipe, seeds: torch.Tensor | None, n: int,
                size: tuple[int, int]) -> torch.Tensor | None:
    """The render loop's seeds for ``recipe``: ``seeds`` as given (``(n, 3, *size)`` float in
    [0, 1]), or None for a recipe that starts from noise; a mismatch is a ``ValueError``.

    >>> from pipeline.visualize.recipe import ACCENT, DEFAULT
    >>> check_seeds(DEFAULT, None, 2, (8, 8)) is None
    True
    >>> check_seeds(ACCENT, None, 2, (8, 8))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: recipe 'accent' starts from each unit's seed image (best_example): pass seeds=...
    """
    if not recipe.needs_seeds:
        if seeds is not None:
            raise ValueError(f"recipe {recipe.name!r} starts from noise: seeds= is for a "
                             "recipe with a seed_image (e.g. 'accent')")
        return None
    if seeds is None:
        raise ValueError(f"recipe {recipe.name!r} starts from each unit's seed image "
                         f"({recipe.seed_image}): pass seeds= (N, 3, H, W), one per unit, "
                         "or run it on an atlas with an index")
    if tuple(seeds.shape) != (n, 3, *size) or not seeds.is_floating_point():
        raise ValueError(f"seeds must be float (N, 3, H, W) = {(n, 3, *size)} in [0, 1], got "
                         f"{seeds.dtype} {tuple(seeds.shape)} (see as_seed_images)")
    return seeds


def start_from(param, seeds: torch.Tensor) -> None:
    """Set a parameterization's images to ``seeds`` ``(B, 3, H, W)`` in [0, 1] (plain pixels
    only: the spectral ones cannot hold an arbitrary image exactly)."""
    from pipeline.visualize.param import PixelParam

    if not isinstance(param, PixelParam):
        raise ValueError(f"{type(param).__name__} cannot start from seed images: "
                         "use the pixels parameterization")
    with torch.no_grad():
        param.pixels.copy_(seeds.to(param.pixels.device, param.pixels.dtype))


@dataclass(frozen=True)
class SeedSet:
    """Seeds of a batch of units: the images and where each came from in the index."""

    images: torch.Tensor  # (B, 3, H, W) float in [0, 1], the model's input size
    examples: list[str]  # each seed's example id (examples.json)
    numbers: list[int]  # each seed's example number


def index_seeds(store, index, layer: int, units: Sequence[int],
                size: tuple[int, int]) -> SeedSet:
    """Each unit's best dataset example (``index.top_ids[row, 0]``, ``index`` being layer
    ``layer``'s ``LayerIndex``), from the index's thumbnails, at the model's input ``size``.
    An atlas without them is an ``AtlasError`` saying what to run."""
    from PIL import Image

    from pipeline.index.results import load_examples

    examples = load_examples(store)
    if examples is None:
        raise AtlasError(f"seeded recipes start from each unit's best dataset example, and "
                         f"{store.root} has no index examples: run `vit-atlas index` first")
    images, ids, numbers = [], [], []
    for unit in units:
        row = index.unit_row(unit)
        number = -1 if row is None else int(index.top_ids[row, 0])
        path = examples.thumb_path(number) if number >= 0 else None
        if path is None or not path.is_file():
            raise AtlasError(f"unit {unit} of layer {layer} has no best-example thumbnail "
                             "in the index (index its channels first: `vit-atlas index`)")
        with Image.open(path) as im:
            images.append(np.asarray(im.convert("RGB")))
        ids.append(str(examples.ids[number]))
        numbers.append(number)
    sized = [as_seed_images(im[None], size)[0] for im in images]
    return SeedSet(torch.stack(sized), ids, numbers)


@torch.no_grad()
def seed_scores(model: nn.Module, spec, layer, units: Sequence[int],
                seeds: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Each unit's score (mean over patch tokens) on its own seed image, ``(B,)`` (CPU)."""
    from pipeline.capture import LayerCapture
    from pipeline.index.pooled import patch_mean
    from pipeline.precision import autocast

    x = seeds.to(device)
    mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)
    with LayerCapture(model, [layer]) as capture, autocast(device):
        scores = patch_mean(capture((x - mean) / std)[layer.index])
    return scores.gather(1, torch.tensor(list(units), device=device)[:, None])[:, 0].cpu()


def seed_records(model: nn.Module, spec, layer, units: Sequence[int], seeds: SeedSet,
                 device: torch.device) -> list[dict]:
    """Per unit, what a chunk records of its seed: ``{"example": id, "number": int,
    "activation": the unit's score on the seed image as used}``."""
    scores = seed_scores(model, spec, layer, units, seeds.images, device)
    return [{"example": e, "number": n, "activation": float(a)}
            for e, n, a in zip(seeds.examples, seeds.numbers, scores.tolist(), strict=True)]

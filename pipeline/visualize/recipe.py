"""Visualization recipes as data: a recipe names its parameterization, transforms, objective
terms and optimizer, and is saved (``to_dict``) with every chunk of images it made.

``RECIPES`` holds the named ones (``--recipe default,paper``); a JSON file of ``Recipe`` fields
is a recipe too (``--recipe my-recipe.json``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from pipeline.errors import AtlasError
from pipeline.visualize.accent import SEED_IMAGES, distance_to_seed
from pipeline.visualize.objectives import (
    Objective,
    diversity,
    selectivity,
    total_variation,
    unit_mean,
)

PARAM_NAMES = ("pixels", "fourier", "phase", "maco")
CANVAS_VIEWS = ("whole", "centre")
OPTIMIZERS = ("adam", "nadam")
# Chosen on the demo model (the Method page's "Several images per unit"): with N = 2, the
# images' Gram similarity falls from 0.97 (weight 0) to 0.66 and each keeps 93% of its unit's
# activation on average (0.1: 0.85, 101%; 1: 0.25, 59%); on the second, 0.97 -> 0.47 at 91%.
DIVERSITY_WEIGHT = 0.25


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a visualization besides the model and the seed.

    >>> Recipe("mine", param="fourier", tv=0.004).objective().description
    'unit_mean - 0.004 * total_variation'
    """

    name: str
    steps: int = 400
    lr: float = 0.1
    betas: tuple[float, float] = (0.5, 0.99)
    optimizer: str = "adam"  # adam | nadam (MACO's), cosine-annealed to 0 over the steps
    param: str = "pixels"  # pixels | fourier | phase | maco (see ``param``)
    copies: int = 8  # augmented views of each image per step
    colour_jitter: bool = True  # per-copy per-channel (x - m) / s, m ~ U(-1, 1), s = e^U(-1, 1)
    anneal_jitter: float = 0.0  # > 0: scale m and log s by (remaining / total) ** anneal_jitter
    offset: float = 0.5  # per-copy per-channel N(0, 1) * offset * remaining / total
    roll: float = 32 / 224  # max translation as a fraction of the side (32 px at 224)
    crop: tuple[float, float] | None = None  # random square crop side (fraction), resized back
    noise: float = 0.0  # std of Gaussian pixel noise added to every view
    # MACO's canvas (Fel et al. 2023): > 1 optimizes an image this many times the model
    # input's side; each view is a random ``crop`` of it (fractions of the canvas side),
    # resized to the input. The stored image is the canvas as ``canvas_view`` shows it:
    # "whole" (the authors' display: the whole canvas, resized down) or "centre" (its central
    # 1 / canvas, at the scale the crops show the model). Polish steps see the stored view.
    # Fourier: the DC coefficient's amplitude, in multiples of the lowest frequency's (one
    # cycle per image). 0 (lucent's practice with a spectrum prior that has no DC) fixes every
    # image's mean colour at the dataset's, so a unit that responds to a colour over an area
    # cannot be shown its colour; > 1 lets the mean move more freely than the 1/f fall-off.
    dc: float = 0.0
    # Fourier: the coefficients' scale is the dataset's amplitude spectrum to this power
    # (lucent's ``decay_power`` for its 1/f): 1 is the spectrum itself; below 1 flattens it,
    # so that with Adam's step size per coefficient the higher frequencies (stripes, edges)
    # move faster relative to the lowest ones.
    spectrum_power: float = 1.0
    canvas: float = 1.0
    canvas_view: str = "whole"
    # Plug-In Inversion's Zoom (Ghiasi et al. 2022): < 1 shows the model the image at this
    # fraction of its resolution at step 0 (area down, bilinear up), growing linearly to full
    # resolution at ``zoom_end`` of the steps (the authors': half).
    zoom_start: float = 1.0
    zoom_end: float = 0.5
    polish: float = 0.0  # fraction of final steps without colour, crop and noise augmentation
    polish_roll: float = 0.0  # max translation while polishing (fraction of the side)
    tv: float = 0.0005  # weight of the total-variation term (the paper: 0.0005 * tv, tv = 1)
    selectivity: float = 0.0  # weight of the z-score lead over the layer (needs the index)
    temperature: float = 1.0  # of the selectivity term's logsumexp
    truncate: bool = True  # stop the forward at the target FFN
    # > 0: the stored image is contrast-stretched (MACO's display step): each image's
    # [stretch, 1 - stretch] quantiles of its pixel values map to [0, 1]. Every figure is
    # measured on the stored, stretched image.
    stretch: float = 0.0
    # Feature accentuation (``accent``): start from a seed image instead of noise, and
    # subtract seed_distance * the mean squared pixel difference to it (pixels param only).
    seed_image: str = "noise"  # noise | best_example (the unit's top-1 dataset example)
    seed_distance: float = 0.0  # weight of the distance-to-seed term
    # Several images per unit (the stage's ``diversity`` option, N > 1; Olah et al. 2017): the
    # unit's N images are optimized together, their objectives summed minus this weight times
    # the mean pairwise cosine similarity of their Gram matrices (``objectives.diversity``).
    # Without it (N = 1) the weight decides nothing, and ``to_dict`` leaves it out.
    diversity_weight: float = DIVERSITY_WEIGHT

    def __post_init__(self) -> None:
        if self.param not in PARAM_NAMES:
            raise ValueError(f"recipe {self.name!r}: unknown param {self.param!r} "
                             f"(choose from {', '.join(PARAM_NAMES)})")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"recipe {self.name!r}: unknown optimizer {self.optimizer!r}")
        if self.steps < 1 or self.copies < 1 or self.lr <= 0:
            raise ValueError(f"recipe {self.name!r}: steps, copies and lr must be positive")
        if self.crop is not None:
            lo, hi = self.crop
            if not 0 < lo <= hi <= 1:
                raise ValueError(f"recipe {self.name!r}: crop must satisfy 0 < lo <= hi <= 1")
        if not 0 <= self.stretch < 0.5:
            raise ValueError(f"recipe {self.name!r}: stretch must be in [0, 0.5)")
        if not 0 < self.spectrum_power <= 2 or (self.spectrum_power != 1.0
                                                 and self.param != "fourier"):
            raise ValueError(f"recipe {self.name!r}: spectrum_power must be in (0, 2], and "
                             "other than 1 only with param 'fourier'")
        if not 0 <= self.polish < 1:
            raise ValueError(f"recipe {self.name!r}: polish must be in [0, 1)")
        if self.diversity_weight < 0:
            raise ValueError(f"recipe {self.name!r}: diversity_weight must be >= 0")
        if self.selectivity < 0 or self.tv < 0 or self.noise < 0 or self.temperature <= 0:
            raise ValueError(f"recipe {self.name!r}: weights must be >= 0, temperature > 0")
        if self.dc < 0 or (self.dc and self.param != "fourier"):
            raise ValueError(f"recipe {self.name!r}: dc must be >= 0, and > 0 only with "
                             "param 'fourier'")
        if self.canvas < 1:
            raise ValueError(f"recipe {self.name!r}: canvas must be >= 1 (times the input side)")
        if self.canvas > 1 and self.crop is None:
            raise ValueError(f"recipe {self.name!r}: a canvas > 1 needs crop (the model sees "
                             "crops of the canvas)")
        if self.canvas > 1 and self.seed_image != "noise":
            raise ValueError(f"recipe {self.name!r}: a canvas > 1 cannot start from a seed")
        if self.canvas_view not in CANVAS_VIEWS:
            raise ValueError(f"recipe {self.name!r}: unknown canvas_view {self.canvas_view!r} "
                             f"(choose from {', '.join(CANVAS_VIEWS)})")
        if not 0 < self.zoom_start <= 1:
            raise ValueError(f"recipe {self.name!r}: zoom_start must be in (0, 1]")
        if not 0 < self.zoom_end <= 1:
            raise ValueError(f"recipe {self.name!r}: zoom_end must be in (0, 1]")
        if self.seed_image not in SEED_IMAGES:
            raise ValueError(f"recipe {self.name!r}: unknown seed_image {self.seed_image!r} "
                             f"(choose from {', '.join(SEED_IMAGES)})")
        if self.seed_distance < 0 or (self.seed_distance and not self.needs_seeds):
            raise ValueError(f"recipe {self.name!r}: seed_distance must be >= 0, and needs a "
                             "seed_image other than 'noise'")
        if self.needs_seeds and self.param != "pixels":
            raise ValueError(f"recipe {self.name!r}: a seed image needs param 'pixels'")

    @property
    def needs_unit_stats(self) -> bool:
        return self.selectivity > 0

    @property
    def needs_seeds(self) -> bool:
        """Whether each unit's image starts from a seed image (``seeds=``, or the index's)."""
        return self.seed_image != "noise"

    def param_options(self) -> dict[str, float]:
        """The parameterization's own options from the recipe (``PARAMETERIZATIONS``).

        >>> Recipe("m", param="fourier", dc=2.0).param_options(), Recipe("m").param_options()
        ({'dc': 2.0}, {})
        >>> Recipe("m", param="fourier", spectrum_power=0.5).param_options()
        {'dc': 0.0, 'spectrum_power': 0.5}
        """
        if self.param != "fourier":
            return {}
        power = {} if self.spectrum_power == 1.0 else {"spectrum_power": self.spectrum_power}
        return {"dc": self.dc, **power}

    def canvas_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The optimized image's size for a model input of ``size``.

        >>> Recipe("m", canvas=2.0, crop=(0.5, 0.6)).canvas_size((64, 64))
        (128, 128)
        """
        return tuple(round(self.canvas * s) for s in size)

    def objective(self, images_per_unit: int = 1) -> Objective:
        """The quantity each step maximizes, built from the recipe's weights; with several
        images per unit, less ``diversity_weight`` times their diversity term.

        >>> Recipe("mine", tv=0.0, diversity_weight=0.5).objective(2).description
        'unit_mean - 0.5 * diversity'
        """
        objective = unit_mean()
        if self.tv:
            objective = objective - self.tv * total_variation()
        if self.selectivity:
            objective = objective + self.selectivity * selectivity(self.temperature)
        if self.seed_distance:
            objective = objective - self.seed_distance * distance_to_seed()
        if images_per_unit > 1 and self.diversity_weight:
            objective = objective - self.diversity_weight * diversity()
        return objective

    def to_dict(self, images_per_unit: int = 1) -> dict[str, Any]:
        """The recipe's fields and objective, as saved with its images; ``diversity_weight``
        only where it counts (``images_per_unit`` > 1), so one image per unit saves what it
        saved before the field existed.

        >>> "diversity_weight" in Recipe("m").to_dict(), Recipe("m").to_dict(2)["objective"]
        (False, 'unit_mean - 0.0005 * total_variation - 0.25 * diversity')
        """
        d = asdict(self)
        d["betas"] = list(self.betas)
        d["crop"] = None if self.crop is None else list(self.crop)
        if images_per_unit <= 1:
            del d["diversity_weight"]
        if not self.dc:  # saved only where set: a recipe without it saves what it saved before
            del d["dc"]
        if self.spectrum_power == 1.0:  # the same
            del d["spectrum_power"]
        d["objective"] = self.objective(images_per_unit).description
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names - {"objective"})
        if unknown:
            raise ValueError(f"unknown recipe fields: {', '.join(unknown)}")
        d = {k: v for k, v in d.items() if k in names}
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        if d.get("crop") is not None:
            d["crop"] = tuple(d["crop"])
        return cls(**d)

    def with_steps(self, steps: int | None) -> Recipe:
        return self if steps is None else replace(self, steps=steps)


# Ghiasi et al. 2022, as published: 8 augmented copies, 400 steps of Adam on plain pixels.
# (The published code's TV weight is effectively 8x this: see the Method page.)
PAPER = Recipe(name="paper", truncate=False)

# The previous default (atlas 0.x): one view per step, annealed jitter, the paper's TV weight.
FAST = Recipe(name="fast", steps=256, copies=1, lr=0.1, anneal_jitter=2.0)

# Chosen for recognisability (issue 21; the Method page has the measured trade-off), judged by
# the demo labeler (a CLIP ViT) and a CNN trained on the demo's generator, tuned on the demo and
# checked on the second bundled model: FAST's single annealed view per step on lucent's Fourier
# basis shaped by the dataset's own spectrum and colours (the index's image prior), with a DC
# term 4x the lowest frequency's so that the image's mean colour moves (without it, colour-field
# and gradient units got grey fields: ``scripts/recipes/no-dc.json``, the default before), a
# light TV term, and the last 10% of the steps on the bare image. The 0.2 default (pixels, TV
# 0.06, half the steps polished) won the objective with pale fields on the patch grid that both
# judges and a person read worse; no selectivity term (it rewarded idiosyncratic patterns).
DEFAULT = Recipe(name="default", steps=256, copies=1, lr=0.02, param="fourier", dc=4.0,
                 anneal_jitter=2.0, tv=0.002, polish=0.1)

RECIPES = {r.name: r for r in (DEFAULT, PAPER, FAST)}

# Feature accentuation (Hamblin et al. 2024): from the unit's best dataset example, raise the
# unit and stay near the seed (mean squared pixel distance), under small translations, crops
# and pixel noise (no colour jitter: it would pull colours off the seed's). Chosen on the demo
# model (5 units per layer): the unit at 1.07-1.5x its seed's score (median per layer), the
# image within 11-19 / 255 of its seed (median mean absolute difference); see pipeline.accent.
ACCENT = Recipe(name="accent", steps=128, copies=4, lr=0.02, colour_jitter=False, offset=0.0,
                roll=4 / 64, crop=(0.85, 1.0), noise=0.02, tv=0.0, seed_image="best_example",
                seed_distance=3.0)
RECIPES[ACCENT.name] = ACCENT


def get_recipe(spec: str, steps: int | None = None) -> Recipe:
    """A named recipe or a JSON file of recipe fields, with ``steps`` overriding its own.

    >>> get_recipe("paper").steps, get_recipe("paper", 100).steps
    (400, 100)
    """
    spec = spec.strip()
    if spec in RECIPES:
        return RECIPES[spec].with_steps(steps)
    path = Path(spec)
    if path.suffix == ".json" and path.is_file():
        try:
            d = json.loads(path.read_text())
            d.setdefault("name", path.stem)
            return Recipe.from_dict(d).with_steps(steps)
        except (ValueError, TypeError) as exc:
            raise AtlasError(f"bad recipe file {path}: {exc}") from None
    raise AtlasError(f"unknown recipe '{spec}' (choose from {', '.join(RECIPES)}, "
                     "or give a .json file of recipe fields)")


def get_recipes(specs: str, steps: int | None = None) -> list[Recipe]:
    """``"default,paper"`` → both recipes; names must be distinct."""
    recipes = [get_recipe(s, steps) for s in specs.split(",") if s.strip()]
    names = [r.name for r in recipes]
    if not recipes or len(set(names)) != len(names):
        raise AtlasError(f"bad recipe '{specs}': give one or more distinct recipes")
    return recipes

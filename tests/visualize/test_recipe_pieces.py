"""Each piece a recipe can name (parameterizations, crops, noise, polish, selectivity, MACO's
canvas, Plug-In Inversion's zoom) keeps a feature's image independent of its batch, and raises
its objective; recipes round-trip."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from pipeline.errors import AtlasError
from pipeline.models import create_model, spec_for
from pipeline.visualize.objectives import UnitStats
from pipeline.visualize.optimize import (
    feature_seed,
    layer_scores,
    measure_unit_stats,
    render,
    render_features,
)
from pipeline.visualize.param import FourierParam, MacoParam, initial_images
from pipeline.visualize.prior import ImagePrior
from pipeline.visualize.recipe import DEFAULT, FAST, PAPER, Recipe, get_recipe
from pipeline.visualize.transforms import augment, plan, shown, zoom_each
from tests.conftest import TINY_KWARGS, TINY_MODEL, synthetic_unit_stats

CPU = torch.device("cpu")
BASE = Recipe("piece", copies=2, steps=12, anneal_jitter=2.0)
PIECES = {
    "fourier": replace(BASE, param="fourier", lr=0.05),
    "phase": replace(BASE, param="phase", optimizer="nadam", lr=0.2),
    "crop+noise": replace(BASE, crop=(0.6, 1.0), noise=0.05),
    "polish": replace(BASE, polish=0.5, tv=0.06),
    "selectivity": replace(BASE, selectivity=0.1),
    "maco": replace(BASE, param="maco", optimizer="nadam", lr=1.0, betas=(0.9, 0.999)),
    # MACO as Horama runs it: phase on a canvas twice the input side, crops of it, noise
    "maco-canvas": replace(BASE, param="maco", optimizer="nadam", lr=1.0, betas=(0.9, 0.999),
                           canvas=2.0, crop=(0.5, 0.6), colour_jitter=False, offset=0.0,
                           roll=0.0, noise=0.025, stretch=0.01),
    "canvas-centre+polish": replace(BASE, param="fourier", lr=0.05, canvas=2.0, crop=(0.4, 0.6),
                                    canvas_view="centre", polish=0.25),
    "zoom": replace(BASE, param="fourier", lr=0.05, zoom_start=0.25),
    "fourier-dc": replace(BASE, param="fourier", lr=0.05, dc=1.0),
    "fourier-flat": replace(BASE, param="fourier", lr=0.05, dc=4.0, spectrum_power=0.5),
}


@pytest.fixture(scope="module")
def tiny():
    model = create_model(TINY_MODEL, "random", TINY_KWARGS)
    spec = spec_for(model, TINY_MODEL, TINY_KWARGS)
    images = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return model, spec, measure_unit_stats(model, spec, spec.layers[1], images)


@pytest.mark.parametrize("recipe", PIECES.values(), ids=PIECES.keys())
def test_each_piece_is_independent_of_the_batch(tiny, recipe):
    model, spec, stats = tiny
    prior = ImagePrior.natural((32, 32))
    options = {"prior": prior, "stats": stats}
    alone, a_alone = render(model, spec, spec.layers[1], [5], recipe, 0, CPU, **options)
    batch, a_batch = render(model, spec, spec.layers[1], [9, 5, 0, 33], recipe, 0, CPU,
                            **options)
    diff = (alone[0].int() - batch[1].int()).abs()
    assert diff.max() <= 2 and diff.float().mean() < 0.05
    assert float(a_alone[0]) == pytest.approx(float(a_batch[1]), abs=1e-3)
    again, _ = render(model, spec, spec.layers[1], [5], recipe, 0, CPU, **options)
    assert torch.equal(again, alone)  # and the same on a rerun (a resumed chunk)


@pytest.mark.parametrize("name", ["fourier", "fourier-dc", "phase", "polish", "selectivity",
                                  "maco"])
def test_each_piece_raises_the_objective_on_the_demo_model(demo, name):
    model, spec = demo
    layer, units = spec.layers[2], list(range(0, 384, 48))
    stats = synthetic_unit_stats(model, spec, layer, 256)
    recipe = replace(PIECES[name], copies=1, steps=40)
    gens = [torch.Generator().manual_seed(feature_seed(0, spec.name, 2, u)) for u in units]
    canvas = recipe.canvas_size((64, 64))
    start = shown(initial_images(recipe.param, gens, canvas, ImagePrior.natural(canvas)),
                  recipe, (64, 64))
    before = layer_scores(model, spec, layer, start)[:, units].diagonal()
    out = render_features(model, spec, layer, units, recipe, 0, CPU, stats=stats)
    assert (out.activations > before).float().mean() >= 0.75
    assert out.activations.mean() > before.mean() + 0.05
    assert out.scores.shape == (len(units), 384)
    assert out.attributions.shape == (len(units), 64, 64) and out.attributions.max() == 255


def test_selectivity_makes_the_unit_lead_its_layer(demo):
    """With the selectivity term, more units rank first in their layer by z-score on their own
    image (measured: 6% without, 38% with, at 120 steps)."""
    model, spec = demo
    layer, units = spec.layers[2], list(range(0, 384, 24))
    stats = synthetic_unit_stats(model, spec, layer, 256)

    def top1(recipe: Recipe) -> float:
        out = render_features(model, spec, layer, units, recipe, 0, CPU, stats=stats)
        return float((stats.z(out.scores).argmax(1) == torch.tensor(units)).float().mean())

    plain = replace(FAST, steps=120, tv=0.02, polish=0.25)
    assert top1(replace(plain, selectivity=0.3)) >= top1(plain) + 0.15


def test_dc_lets_the_fourier_image_take_a_colour():
    """Without a DC term the image's mean colour is pinned near the dataset's (a colour can
    only come from contrast through the sigmoid); with it, an objective that wants a red field
    gets a redder one (a colour-field unit's image)."""
    prior = ImagePrior.natural((32, 32))

    def redness(dc: float) -> float:
        param = FourierParam([torch.Generator().manual_seed(0)], (32, 32), CPU, prior, dc=dc)
        optimizer = torch.optim.Adam(param.parameters(), lr=0.02)
        for _ in range(100):
            image = param.image()
            loss = image[:, 1:].mean() - image[:, 0].mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        image = param.image().detach()
        return float(image[:, 0].mean() - image[:, 1:].mean())

    assert redness(4.0) > 0.65 > 0.5 > redness(0.0)  # measured: 0.72, 0.45 (dc 1: 0.53)
    assert "dc" not in Recipe("d").to_dict()  # saved only where set
    assert Recipe.from_dict(Recipe("d", param="fourier", dc=2.0).to_dict()).dc == 2.0
    recipes = Path(__file__).resolve().parents[2] / "scripts" / "recipes"
    assert get_recipe(str(recipes / "dc1.json")).param_options() == {"dc": 1.0}
    with pytest.raises(ValueError, match="dc"):
        Recipe("d", param="pixels", dc=1.0)


def test_spectrum_power_below_one_gives_the_higher_frequencies_more_room():
    """The same coefficients and the same optimization, a flatter scale: the image ends with
    more of its power at the higher frequencies (stripes), where an objective wants them."""
    prior = ImagePrior.natural((32, 32))
    y = torch.arange(32.0).view(1, 1, 32, 1)
    stripes = torch.cos(2 * torch.pi * y / 4)  # 8 cycles an image: a mid-high frequency

    def stripe_share(power: float) -> float:
        param = FourierParam([torch.Generator().manual_seed(0)], (32, 32), CPU, prior,
                             dc=4.0, spectrum_power=power)
        optimizer = torch.optim.Adam(param.parameters(), lr=0.02)
        for _ in range(60):
            loss = -(param.image() * stripes).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        image = param.image().detach()[0].mean(0)
        power_2d = torch.fft.rfft2(image - image.mean()).abs().pow(2)
        return float(power_2d[8, 0] + power_2d[24, 0]) / float(power_2d.sum())

    assert stripe_share(0.5) > stripe_share(1.0)
    assert "spectrum_power" not in Recipe("d").to_dict()  # saved only where set
    flat = Recipe("d", param="fourier", spectrum_power=0.5)
    assert Recipe.from_dict(flat.to_dict()).spectrum_power == 0.5
    recipes = Path(__file__).resolve().parents[2] / "scripts" / "recipes"
    assert get_recipe(str(recipes / "dc4-spec05.json")).param_options() == {
        "dc": 4.0, "spectrum_power": 0.5}
    with pytest.raises(ValueError, match="spectrum_power"):
        Recipe("d", param="pixels", spectrum_power=0.5)


def test_polish_steps_see_the_bare_image():
    recipe = Recipe("p", steps=10, copies=3, polish=0.3, crop=(0.5, 0.8), noise=0.1)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    x = torch.rand(2, 3, 16, 16)
    aug = plan(gens, recipe, (16, 16))
    assert not torch.equal(augment(x, aug, 6, recipe), x.repeat_interleave(3, 0))
    for step in (7, 8, 9):  # the last 30%
        assert torch.equal(augment(x, aug, step, recipe), x.repeat_interleave(3, 0))
    rolled = augment(x, aug, 8, replace(recipe, polish_roll=0.25))
    assert rolled.shape == (6, 3, 16, 16) and not torch.equal(rolled, x.repeat_interleave(3, 0))


def test_a_canvas_gives_crops_at_the_input_size_and_stores_its_view():
    recipe = Recipe("c", steps=10, copies=3, canvas=2.0, crop=(0.5, 0.6), polish=0.2)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    x = torch.rand(2, 3, 32, 32)
    aug = plan(gens, recipe, recipe.canvas_size((16, 16)))
    assert augment(x, aug, 0, recipe, (16, 16)).shape == (6, 3, 16, 16)
    whole = shown(x, recipe, (16, 16))  # the authors' display: the canvas, resized down
    assert torch.allclose(whole, torch.nn.functional.avg_pool2d(x, 2), atol=1e-6)
    assert torch.equal(augment(x, aug, 9, recipe, (16, 16)), whole.repeat_interleave(3, 0))
    centre = shown(x, replace(recipe, canvas_view="centre"), (16, 16))
    assert torch.equal(centre, x[..., 8:24, 8:24])
    assert shown(whole, recipe, (16, 16)) is whole  # no canvas: the image itself


def test_zoom_starts_coarse_and_ends_at_full_resolution():
    recipe = Recipe("z", steps=20, zoom_start=0.25)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    coarse = zoom_each(x, 0, recipe)
    low = torch.nn.functional.interpolate(x, size=(4, 4), mode="area")  # a quarter of 16
    assert torch.equal(coarse, torch.nn.functional.interpolate(low, size=(16, 16),
                                                               mode="bilinear"))
    assert (coarse[..., 1:] - coarse[..., :-1]).abs().mean() < 0.3 * (
        x[..., 1:] - x[..., :-1]).abs().mean()
    for step in (10, 15, 19):
        assert torch.equal(zoom_each(x, step, recipe), x)
    early = replace(recipe, zoom_end=0.25)  # full resolution from step 5 of 20
    assert not torch.equal(zoom_each(x, 4, early), x)
    assert torch.equal(zoom_each(x, 5, early), x) and not torch.equal(zoom_each(x, 5, recipe), x)


def test_maco_standardizes_its_phase():
    """Horama's preconditioner: the phase is standardized before use, so scaling or shifting
    the parameters leaves the image as it is; the image spans its own range."""
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    param = MacoParam(gens, (32, 32), CPU, ImagePrior.natural((32, 32)))
    with torch.no_grad():
        before = param.image()
        param.phase.mul_(3.0).add_(0.7)
        assert torch.allclose(param.image(), before, atol=1e-3)
    assert before.shape == (2, 3, 32, 32) and not torch.equal(before[0], before[1])


def test_a_prior_resized_for_a_canvas_keeps_its_spectrum():
    prior = ImagePrior.natural((32, 32))
    assert prior.at_size((32, 32)) is prior
    ratio = prior.at_size((64, 64)).amplitude() / ImagePrior.natural((64, 64)).amplitude()
    ratio[0, 0] = 1.0
    assert ratio.min() > 0.8 and ratio.max() < 1.25


@pytest.mark.parametrize("fields, message", [
    ({"canvas": 0.5, "crop": (0.5, 0.6)}, "canvas must be >= 1"),
    ({"canvas": 2.0}, "needs crop"),
    ({"canvas": 2.0, "crop": (0.5, 0.6), "seed_image": "best_example"}, "cannot start from"),
    ({"canvas": 2.0, "crop": (0.5, 0.6), "canvas_view": "corner"}, "unknown canvas_view"),
    ({"zoom_start": 0.0}, "zoom_start"),
    ({"zoom_start": 1.5}, "zoom_start"),
    ({"zoom_end": 0.0}, "zoom_end"),
    ({"param": "maco-ish"}, "unknown param"),
])
def test_canvas_and_zoom_options_are_checked(fields, message):
    with pytest.raises(ValueError, match=message):
        Recipe("bad", **fields)


def test_a_recipe_needing_stats_says_so(tiny):
    model, spec, _ = tiny
    with pytest.raises(ValueError, match="per-unit statistics"):
        render(model, spec, spec.layers[0], [0], replace(BASE, selectivity=0.1), 0, CPU)


def test_recipes_are_data(tmp_path):
    for recipe in (DEFAULT, PAPER, FAST, *PIECES.values()):
        d = json.loads(json.dumps(recipe.to_dict()))
        assert Recipe.from_dict(d) == recipe
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"param": "fourier", "tv": 0.01, "steps": 50}))
    mine = get_recipe(str(path), steps=20)
    assert (mine.name, mine.param, mine.steps) == ("mine", "fourier", 20)
    path.write_text(json.dumps({"param": "wavelets"}))
    with pytest.raises(AtlasError, match="unknown param"):
        get_recipe(str(path))
    with pytest.raises(AtlasError, match="unknown recipe"):
        get_recipe("no-such-recipe")
    with pytest.raises(ValueError, match="polish"):
        Recipe("bad", polish=1.0)


def test_unit_stats_z():
    stats = UnitStats(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0]))
    z = stats.z(torch.tensor([[3.0, 1.0]]))
    assert z[0, 0] == 1.0 and torch.isfinite(z).all()

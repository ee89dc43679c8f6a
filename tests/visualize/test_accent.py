"""Feature accentuation (the ``accent`` recipe): deterministic, close to its seed, raises the
unit above the seed's score, records its seed in the stage's chunks, and says what it lacks."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.config import demo_config
from pipeline.errors import AtlasError
from pipeline.index.results import load_examples, load_layer_index
from pipeline.index.stage import run_index
from pipeline.models import create_model, spec_for
from pipeline.runtime import prepare
from pipeline.visualize.accent import as_seed_images, seed_scores
from pipeline.visualize.optimize import layer_scores, render
from pipeline.visualize.recipe import ACCENT, DEFAULT, FAST, Recipe, get_recipe
from pipeline.visualize.stage import run_visualize
from tests.conftest import TINY_KWARGS, TINY_MODEL

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny():
    model = create_model(TINY_MODEL, "random", TINY_KWARGS)
    return model, spec_for(model, TINY_MODEL, TINY_KWARGS)


def _random_seeds(n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g).float() / 255


def test_accent_is_a_named_seeded_recipe():
    assert get_recipe("accent") == ACCENT and ACCENT.needs_seeds and not DEFAULT.needs_seeds
    assert "distance_to_seed" in ACCENT.objective().description
    assert Recipe.from_dict(ACCENT.to_dict()) == ACCENT
    with pytest.raises(ValueError, match="seed_image"):
        Recipe("x", seed_distance=1.0)  # a distance to no seed
    with pytest.raises(ValueError, match="pixels"):
        replace(ACCENT, param="fourier")
    with pytest.raises(ValueError, match="unknown seed_image"):
        replace(ACCENT, seed_image="mean_example")


def test_image_bit_identical_whatever_the_batch(tiny):
    model, spec = tiny
    recipe = ACCENT.with_steps(12)
    seeds = _random_seeds(5, 32)
    units = [9, 5, 0, 33, 7]
    batch, a_batch = render(model, spec, spec.layers[1], units, recipe, 0, CPU, seeds=seeds)
    alone, a_alone = render(model, spec, spec.layers[1], [5], recipe, 0, CPU, seeds=seeds[1:2])
    pair, _ = render(model, spec, spec.layers[1], [33, 5], recipe, 0, CPU,
                     seeds=seeds[[3, 1]])
    assert torch.equal(alone[0], batch[1]) and torch.equal(pair[1], batch[1])
    assert torch.equal(pair[0], batch[3])
    assert float(a_alone[0]) == pytest.approx(float(a_batch[1]), abs=1e-5)
    again, _ = render(model, spec, spec.layers[1], units, recipe, 0, CPU, seeds=seeds)
    assert torch.equal(again, batch)


@pytest.fixture(scope="module")
def demo():
    m = demo_config().model
    model = create_model(m.name, m.weights, m.kwargs)
    return model, spec_for(model, m.name, m.kwargs)


def test_accent_stays_near_its_seed_and_raises_the_unit(demo):
    """On the trained demo model: each unit's best of 256 procedural images as its seed."""
    from pipeline.data.synthetic import make_example

    model, spec = demo
    size = spec.input_size[1]
    pixels = np.stack([np.array(make_example(i, seed=5, size=size)[0]) for i in range(256)])
    images = as_seed_images(pixels, (size, size))
    layer, units = spec.layers[1], list(range(3, 384, 48))
    scores = layer_scores(model, spec, layer, images)[:, units]
    best = scores.argmax(0)
    seeds, seed_score = images[best], scores[best, range(len(units))]
    accents, activation = render(model, spec, layer, units, ACCENT.with_steps(64), 0, CPU,
                                 seeds=seeds)
    accents = accents.permute(0, 3, 1, 2).float() / 255
    closeness = (accents - seeds).abs().flatten(1).mean(1) * 255  # mean |difference|, 0-255
    assert closeness.max() < 32 and closeness.median() < 16  # of 255
    assert (activation > seed_score).float().mean() >= 0.75
    assert (activation / seed_score).median() > 1.05
    torch.testing.assert_close(seed_scores(model, spec, layer, units, seeds, CPU), seed_score)


def test_stage_writes_each_units_seed(tiny_config):
    run = prepare(tiny_config.replace(channels="0:6", recipe="default,accent", steps=4))
    run_index(run)
    run_visualize(run)
    store, examples = run.store, load_examples(run.store)
    size = tuple(run.spec.input_size[1:])
    for layer in (0, 1):
        index = load_layer_index(store, layer)
        assert all("seed" not in r for r in store.vis_results(layer, "default").values())
        results = store.vis_results(layer, "accent")
        assert sorted(results) == list(range(6))
        chunk = json.loads((store.vis_dir(layer, "accent") / "chunk-00000.json").read_text())
        assert chunk["recipe"]["seed_image"] == "best_example"
        for unit, r in results.items():
            number = int(index.top_ids[index.unit_row(unit), 0])
            assert r["seed"]["number"] == number
            assert r["seed"]["example"] == examples.ids[number]
            thumb = as_seed_images(np.asarray(Image.open(examples.thumb_path(number)))[None],
                                   size)
            own = seed_scores(run.model, run.spec, run.spec.layers[layer], [unit], thumb, CPU)
            assert r["seed"]["activation"] == pytest.approx(float(own[0]), abs=1e-5)


def test_accent_without_seeds_says_so(tiny, tiny_config):
    model, spec = tiny
    with pytest.raises(ValueError, match="seeds="):
        render(model, spec, spec.layers[0], [0], ACCENT.with_steps(2), 0, CPU)
    with pytest.raises(ValueError, match="starts from noise"):
        render(model, spec, spec.layers[0], [0], FAST.with_steps(2), 0, CPU,
               seeds=_random_seeds(1, 32))
    with pytest.raises(AtlasError, match="index"):
        run_visualize(prepare(tiny_config.replace(recipe="accent", channels="0:2")))


def test_notebook_render_takes_uint8_or_float_seeds(tiny):
    import pipeline

    model, _ = tiny
    float_seeds = _random_seeds(2, 32)
    uint8_hwc = (float_seeds * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    a, acts_a = pipeline.render(model, "blocks.1.mlp.act", [3, 4], recipe="accent", steps=3,
                                seeds=float_seeds)
    b, acts_b = pipeline.render(model, "blocks.1.mlp.act", [3, 4], recipe="accent", steps=3,
                                seeds=uint8_hwc.numpy())
    assert torch.equal(a, b) and torch.equal(acts_a, acts_b)
    big = torch.nn.functional.interpolate(float_seeds, size=(64, 64), mode="nearest")
    c, _ = pipeline.render(model, "blocks.1.mlp.act", [3, 4], recipe="accent", steps=3,
                           seeds=big)  # resized to the input size
    assert c.shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="seeds="):
        pipeline.render(model, "blocks.1.mlp.act", [3], recipe="accent", steps=2)

"""Several images per unit (``--diversity N``): the diversity term, determinism, the store."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.config import VisualizeConfig
from pipeline.errors import AtlasError
from pipeline.index.stage import run_index
from pipeline.models import create_model, spec_for
from pipeline.runtime import prepare
from pipeline.store import AtlasStore
from pipeline.visualize.objectives import Views, diversity, gram_similarity
from pipeline.visualize.optimize import feature_seed, render_features
from pipeline.visualize.recipe import DEFAULT, PAPER, Recipe
from pipeline.visualize.stage import run_visualize
from tests.conftest import TINY_KWARGS, TINY_MODEL
from tests.visualize.conftest import interrupted_visualize
from tests.visualize.test_visualize import _visualized

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny():
    model = create_model(TINY_MODEL, "random", TINY_KWARGS)
    return model, spec_for(model, TINY_MODEL, TINY_KWARGS)


def _hand_similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two (patches, channels) activations' Gram matrices, by loops."""
    ga = [[float(sum(a[p, i] * a[p, j] for p in range(a.shape[0]))) for j in range(a.shape[1])]
          for i in range(a.shape[1])]
    gb = [[float(sum(b[p, i] * b[p, j] for p in range(b.shape[0]))) for j in range(b.shape[1])]
          for i in range(b.shape[1])]
    dot = sum(x * y for ra, rb in zip(ga, gb, strict=True) for x, y in zip(ra, rb, strict=True))
    na = sum(x * x for r in ga for x in r) ** 0.5
    nb = sum(x * x for r in gb for x in r) ** 0.5
    return dot / (na * nb)


@pytest.mark.parametrize("patches,channels", [(2, 3), (4, 2)], ids=["P<=C", "P>C"])
def test_gram_similarity_against_a_hand_computation(patches, channels):
    a = torch.randn(3, patches, channels, generator=torch.Generator().manual_seed(0))
    got = gram_similarity(a)
    for i in range(3):
        for j in range(3):
            assert float(got[i, j]) == pytest.approx(_hand_similarity(a[i], a[j]), abs=1e-5)


def test_diversity_term_against_a_hand_computation():
    """2 units × 3 images × 2 copies: each unit's rows sum to the mean pairwise similarity of
    its images (copy c against copy c, averaged over copies); the objective of a unit's
    images is the sum of their own minus the weight times that mean."""
    gen = torch.Generator().manual_seed(1)
    n, copies, patches, channels = 3, 2, 2, 10
    acts = torch.rand(2 * n * copies, patches, channels, generator=gen)
    units = torch.tensor([4, 4, 4, 9, 9, 9])
    views = Views(torch.zeros(2 * n * copies, 3, 2, 2), acts, units, copies, images_per_unit=n)
    rows = diversity()(views)
    assert rows.shape == (2 * n,)
    for u in range(2):
        pairs = []
        for i in range(n):
            for j in range(i + 1, n):
                per_copy = [_hand_similarity(acts[(u * n + i) * copies + c],
                                             acts[(u * n + j) * copies + c])
                            for c in range(copies)]
                pairs.append(sum(per_copy) / copies)
        mean_pairwise = sum(pairs) / len(pairs)
        assert float(rows[u * n:(u + 1) * n].sum()) == pytest.approx(mean_pairwise, abs=1e-5)
    recipe = Recipe("r", tv=0.0, diversity_weight=0.7)
    total = recipe.objective(n)(views).view(2, n).sum(1)
    own = (acts.mean(1)[torch.arange(12), units.repeat_interleave(copies)]
           .view(2, n, copies).mean(2).sum(1))
    assert torch.allclose(total, own - 0.7 * rows.view(2, n).sum(1), atol=1e-5)
    lone = Views(views.images, acts, torch.arange(12), 1)  # one image per unit: no term
    assert not diversity()(lone).any()


def test_one_image_per_unit_is_unchanged(tiny):
    model, spec = tiny
    key = "0/" + spec.name + "/1/5"
    old_seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") & (2**63 - 1)
    assert feature_seed(0, spec.name, 1, 5) == feature_seed(0, spec.name, 1, 5, 0) == old_seed
    for recipe in (DEFAULT, PAPER):
        assert recipe.objective(1).description == recipe.objective().description
        assert "diversity" not in recipe.objective(1).description
        assert "diversity_weight" not in recipe.to_dict()
        assert "diversity_weight" in recipe.to_dict(2)
    recipe = PAPER.with_steps(3)
    a = render_features(model, spec, spec.layers[1], [5, 7], recipe, 0, CPU)
    b = render_features(model, spec, spec.layers[1], [5, 7], recipe, 0, CPU, diversity=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.activations, b.activations)
    assert a.similarity is None
    with pytest.raises(AtlasError):
        VisualizeConfig(diversity=0)


def test_a_units_images_do_not_depend_on_the_batch(tiny):
    """A unit's N images are optimized together, from generators seeded by (seed, model,
    layer, unit, image): the same alone as among other units."""
    model, spec = tiny
    recipe = PAPER.with_steps(12)
    layer = spec.layers[1]
    alone = render_features(model, spec, layer, [5], recipe, 0, CPU, diversity=2)
    batch = render_features(model, spec, layer, [9, 5, 0], recipe, 0, CPU, diversity=2)
    diff = (alone.images.int() - batch.images[2:4].int()).abs()
    assert diff.max() <= 2 and diff.float().mean() < 0.05
    assert torch.allclose(alone.activations, batch.activations[2:4], atol=1e-3)
    assert torch.allclose(alone.similarity[0], batch.similarity[1], atol=1e-3)
    # image 0 and image 1 start from different noise
    assert (alone.images[0].int() - alone.images[1].int()).abs().float().mean() > 1


def test_the_term_makes_a_units_images_less_alike(demo):
    model, spec = demo
    layer, units = spec.layers[1], [0, 100, 200]
    recipe = PAPER.with_steps(24)
    similarity = {}
    for weight in (0.0, 20.0):
        out = render_features(model, spec, layer, units, Recipe(**{
            **recipe.__dict__, "diversity_weight": weight}), 0, CPU, diversity=2)
        similarity[weight] = float(out.similarity[:, 0, 1].mean())
    assert similarity[20.0] < similarity[0.0]


def _files(store: AtlasStore, layer: int) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(store.vis_dir(layer).iterdir())
            if p.suffix in (".png", ".avif")}


def test_stage_stores_every_image_and_resumes(tiny_config, tmp_path, monkeypatch):
    run = _visualized(tiny_config, channels="0:3", diversity=2, batch_size=4)
    store = run.store
    names = set(_files(store, 0))
    for unit in range(3):
        for stem in (f"u{unit:05d}", f"u{unit:05d}.d1"):
            assert {f"{stem}.png", f"{stem}.avif"} <= names
    assert "u00000.d2.png" not in names and not list(store.root.rglob("*.tmp"))
    chunk = json.loads((store.vis_dir(0) / "chunk-00000.json").read_text())
    assert chunk["diversity"] == 2 and "diversity_weight" in chunk["recipe"]
    assert "diversity" in chunk["recipe"]["objective"]
    result = store.vis_results(0)[1]
    assert result["image"] == "u00001.png"
    assert result["diversity"]["images"] == ["u00001.d1.png"]
    assert len(result["diversity"]["activations"]) == 1
    assert -1 <= result["diversity"]["similarity"] <= 1
    before = {li: _files(store, li) for li in (0, 1)}
    mtimes = {p: p.stat().st_mtime_ns for p in store.root.rglob("chunk-*.json")}
    run_visualize(run)  # finished: nothing to do
    assert {p: p.stat().st_mtime_ns for p in store.root.rglob("chunk-*.json")} == mtimes

    # interrupted after the first chunk, resumed with another batch size: the same images
    other = tiny_config.replace(channels="0:3", diversity=2, batch_size=2,
                                out=str(tmp_path / "interrupted"))
    run2 = prepare(other)
    run_index(run2)
    interrupted_visualize(monkeypatch, run2, at_write=2)
    run_visualize(prepare(other.replace(batch_size=8)))
    for li in (0, 1):
        got = _files(run2.store, li)
        assert got.keys() == before[li].keys()
        for name in before[li]:
            if name.endswith(".png"):
                a = np.asarray(Image.open(run2.store.vis_dir(li) / name))
                b = np.asarray(Image.open(store.vis_dir(li) / name))
                assert np.abs(a.astype(int) - b.astype(int)).max() <= 2, name

    # one image per unit again: the chunks are redone, as they were before the option
    run3 = prepare(run.config.replace(diversity=1))
    run_visualize(run3)
    chunk = json.loads((store.vis_dir(0) / "chunk-00000.json").read_text())
    assert "diversity" not in chunk and "diversity_weight" not in chunk["recipe"]
    assert "diversity" not in store.vis_results(0)[1]

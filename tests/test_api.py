"""The notebook front door: ``render`` and ``index_topk`` on models the user holds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from timm.models.vision_transformer import VisionTransformer

import pipeline
from pipeline.api import index_topk, render
from pipeline.cli import main
from pipeline.errors import AtlasError
from pipeline.index.results import load_image_stats, load_layer_index
from pipeline.models import ModelSpec, create_model
from pipeline.store import AtlasStore
from pipeline.visualize.objectives import total_variation, unit_mean
from pipeline.visualize.prior import ImagePrior
from pipeline.visualize.stage import unit_stats
from tests.conftest import TINY_KWARGS, TINY_MODEL


class MyViT(VisionTransformer):
    """A user's own subclass, built outside timm's registry."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 1.0


def my_vit() -> MyViT:
    """Built directly (no ``pretrained_cfg``: timm's default normalization), with the weights
    the CLI's ``--weights random`` gives."""
    model = MyViT(**TINY_KWARGS)
    model.load_state_dict(create_model(TINY_MODEL, "random", dict(TINY_KWARGS)).state_dict())
    return model


def test_render_on_a_users_subclass_matches_the_cli(tmp_path):
    out = tmp_path / "atlas"
    kwargs = [f"{k}={v}" for k, v in TINY_KWARGS.items()]
    common = ["--model", TINY_MODEL, "--weights", "random", "--model-kwargs", *kwargs,
              "--out", str(out), "--dataset", "synthetic:48", "--layers", "1",
              "--channels", "0:3", "--workers", "0", "--device", "cpu", "--steps", "6"]
    assert main(["index", *common]) == 0
    assert main(["visualize", *common, "--recipe", "default,fast"]) == 0
    store = AtlasStore(out)
    model = my_vit().train()
    stats = unit_stats(load_layer_index(store, 1), 192)
    spec = ModelSpec.from_dict(store.manifest()["model"])  # vit_tiny's cfg: mean = std = 0.5
    prior = ImagePrior.from_stats(load_image_stats(store))  # the index's, as the CLI's
    for recipe in ("default", "fast"):
        images, acts = render(model, "blocks.1.mlp.act", [0, 1, 2], recipe=recipe, steps=6,
                              stats=stats, prior=prior, name=TINY_MODEL, mean=spec.mean,
                              std=spec.std)
        results = store.vis_results(1, recipe)
        for i, unit in enumerate([0, 1, 2]):
            png = np.array(Image.open(store.vis_dir(1, recipe) / results[unit]["image"]))
            got = (images[i].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
            np.testing.assert_array_equal(got, png)
            assert abs(float(acts[i]) - results[unit]["activation"]) < 1e-4
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_render_objectives_compose_and_errors():
    model = my_vit()
    plain, a = render(model, "blocks.0.mlp.act", [3], recipe="fast", steps=4)
    again, b = render(model, model.blocks[0].mlp.act, 3, recipe="fast", steps=4)
    torch.testing.assert_close(plain, again)  # deterministic; a module works as a path
    smooth, _ = render(model, "blocks.0.mlp.act", [3], recipe="fast", steps=4,
                       objective=unit_mean() - 5.0 * total_variation())
    assert not torch.equal(plain, smooth)
    with pytest.raises(KeyError, match="no module 'blocks.9.mlp.act'"):
        render(model, "blocks.9.mlp.act", [0], steps=2)
    with pytest.raises(ValueError, match="outside blocks.0.mlp.act's 0..191"):
        render(model, "blocks.0.mlp.act", [192], recipe="fast", steps=2)
    images, _ = render(model, "blocks.0.mlp.act", [0], steps=2,
                       images=torch.rand(16, 3, 32, 32))
    assert images.shape == (1, 3, 32, 32)


def test_render_without_data_leaves_the_selectivity_term_out():
    """The front door's first call, no dataset statistics: the default recipe needs none; a
    recipe with the selectivity term renders without it, with one warning line."""
    import dataclasses
    import warnings

    from pipeline.visualize.recipe import DEFAULT

    model = my_vit()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default needs no data: no warning
        images, acts = render(model, "blocks.1.mlp.act", [0, 1, 2], steps=4)
    assert images.shape == (3, 3, 32, 32) and acts.shape == (3,)
    selective = dataclasses.replace(DEFAULT, selectivity=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dropped, _ = render(model, "blocks.1.mlp.act", [0, 1, 2], recipe=selective, steps=4)
    assert len(caught) == 1 and caught[0].filename == __file__  # one line, at the caller
    message = str(caught[0].message)
    assert "selectivity" in message and "stats=" in message and "images=" in message
    assert "\n" not in message
    torch.testing.assert_close(images, dropped)  # the default is that recipe without the term
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with statistics: no warning
        render(model, "blocks.1.mlp.act", [0], recipe=selective, steps=2,
               images=torch.rand(8, 3, 32, 32))


def test_visualize_without_an_index_says_what_it_needs_before_the_network(
        tmp_path, monkeypatch, capsys):
    import pipeline.data.sources
    import pipeline.runtime

    def no_network(*args, **kwargs):
        raise AssertionError("the dataset (hub) was touched")

    monkeypatch.setattr(pipeline.data.sources, "open_source", no_network)
    monkeypatch.setattr(pipeline.runtime, "prepare", no_network)
    kwargs = [f"{k}={v}" for k, v in TINY_KWARGS.items()]
    out = tmp_path / "atlas"
    common = ["--model", TINY_MODEL, "--weights", "random", "--model-kwargs", *kwargs,
              "--out", str(out)]  # the default dataset: the ImageNet hub
    assert main(["visualize", *common]) == 2
    err = capsys.readouterr().err
    assert "needs the dataset index" in err and str(out) in err
    assert "vit-atlas index" in err and "--recipe paper" in err
    assert not out.exists()


def test_visualize_with_a_recipe_without_dataset_statistics_needs_no_index(tmp_path):
    kwargs = [f"{k}={v}" for k, v in TINY_KWARGS.items()]
    out = tmp_path / "atlas"
    assert main(["visualize", "--model", TINY_MODEL, "--weights", "random", "--model-kwargs",
                 *kwargs, "--out", str(out), "--recipe", "paper", "--steps", "2",
                 "--layers", "1", "--channels", "0:2", "--device", "cpu"]) == 0
    results = AtlasStore(out).vis_results(1, "paper")
    assert sorted(results) == [0, 1] and results[0]["fidelity"] is None


def test_index_topk_equals_brute_force():
    model = my_vit()
    torch.manual_seed(0)
    x = torch.randn(37, 3, 32, 32)
    loader = [(x[i:i + 10], torch.zeros(10)) for i in range(0, 37, 10)]
    top = index_topk(model, ["blocks.0.mlp.act", "blocks.1.mlp.act"], loader, k=5)
    acts = {}
    hooks = [model.blocks[i].mlp.act.register_forward_hook(
        lambda _m, _i, out, i=i: acts.__setitem__(i, out[:, 1:].detach())) for i in (0, 1)]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    for i in (0, 1):
        full = acts[i].mean(1).numpy()  # (37, units)
        got = top[f"blocks.{i}.mlp.act"]
        want = np.sort(full, axis=0)[::-1][:5].T
        np.testing.assert_allclose(got.scores, want, atol=1e-5)
        u = 7
        np.testing.assert_allclose(got.maps[u, 0].ravel(), acts[i][got.ids[u, 0], :, u].numpy(),
                                   atol=1e-5)


def test_build_from_python_runs_the_clis_stages(tmp_path):
    from pipeline.config import AtlasConfig

    config = AtlasConfig().replace(
        model=TINY_MODEL, weights="random", model_kwargs=dict(TINY_KWARGS),
        dataset="synthetic:40", out=str(tmp_path / "atlas"), workers=0, device="cpu")
    atlas = pipeline.build(config, layers="1", channels="0:2", steps=3, recipe="fast",
                           stages=["index", "visualize"])
    assert atlas.layers == [1] and atlas.units(1) == [0, 1]
    record = atlas.feature(1, 0)
    assert record["unit"] == 0 and record["activation"] is not None
    with pytest.raises(AtlasError, match="unknown option 'stpes' \\(did you mean: steps"):
        pipeline.build(config, stpes=3)

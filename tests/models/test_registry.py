"""The registry finds every FFN of every family, with the right grids and prefix tokens."""

from __future__ import annotations

import pytest
import torch

from pipeline.capture import LayerCapture
from pipeline.errors import AtlasError
from pipeline.models import create_model, family_of, spec_for
from pipeline.models.registry import supported_families


def _spec(name, **kwargs):
    model = create_model(name, "random", kwargs)
    return model, spec_for(model, name, kwargs)


def _assert_consistent(model, spec):
    """Each layer's units match its module's fc1, and grids are what the capture returns."""
    modules = dict(model.named_modules())
    for i, layer in enumerate(spec.layers):
        assert layer.index == i
        mlp = modules[layer.module.rsplit(".", 1)[0]]
        assert layer.units == mlp.fc1.out_features
    x = torch.zeros(1, *spec.input_size)
    with LayerCapture(model, spec.layers, truncate=False) as cap:
        acts = cap(x)
    for layer in spec.layers:
        assert acts[layer.index].shape == (1, layer.grid[0] * layer.grid[1], layer.units)


@pytest.mark.parametrize("name,prefix", [
    ("vit_tiny_patch16_224", 1),
    ("deit_tiny_patch16_224", 1),
    ("deit_tiny_distilled_patch16_224", 2),
])
def test_vit_deit(name, prefix):
    model, spec = _spec(name)
    assert spec.family == ("vit" if name.startswith("vit") else "deit")
    assert len(spec.layers) == len(model.blocks) == 12
    assert all(l.units == 768 and l.grid == (14, 14) and l.prefix_tokens == prefix
               for l in spec.layers)
    assert [l.module for l in spec.layers] == [f"blocks.{i}.mlp.act" for i in range(12)]
    _assert_consistent(model, spec)


def test_clip_quickgelu_small_variant():
    name = "vit_base_patch32_clip_quickgelu_224"
    model, spec = _spec(name, depth=2)
    assert spec.family == "clip-vit"
    assert family_of(name + ".openai").name == "clip-vit"
    assert len(spec.layers) == 2 and spec.layers[0].grid == (7, 7)
    assert spec.layers[0].prefix_tokens == 1 and spec.layers[0].units == 3072
    # OpenAI CLIP normalization comes from timm's pretrained cfg
    assert spec.mean[0] == pytest.approx(0.4815, abs=1e-3)
    _assert_consistent(model, spec)


def test_model_kwargs_change_input_size_and_grid():
    model, spec = _spec("vit_tiny_patch16_224", img_size=64, patch_size=8, depth=3)
    assert spec.input_size == (3, 64, 64)
    assert len(spec.layers) == 3 and spec.layers[0].grid == (8, 8)


def test_convit_has_no_cls_before_local_up_to_layer():
    model, spec = _spec("convit_tiny")
    cut = model.local_up_to_layer
    assert [l.prefix_tokens for l in spec.layers] == [0] * cut + [1] * (12 - cut)
    assert all(l.grid == (14, 14) for l in spec.layers)
    _assert_consistent(model, spec)


@pytest.mark.parametrize("name,prefix", [("pit_ti_224", 1), ("pit_ti_distilled_224", 2)])
def test_pit_grid_shrinks_per_stage(name, prefix):
    model, spec = _spec(name)
    depths = [len(t.blocks) for t in model.transformers]
    assert len(spec.layers) == sum(depths)
    grids = [l.grid for l in spec.layers]
    assert grids == [(27, 27)] * depths[0] + [(14, 14)] * depths[1] + [(7, 7)] * depths[2]
    assert [l.stage for l in spec.layers] == sum(([s] * d for s, d in enumerate(depths)), [])
    assert all(l.prefix_tokens == prefix for l in spec.layers)
    _assert_consistent(model, spec)


def test_swin_grid_per_stage_no_cls():
    model, spec = _spec("swin_tiny_patch4_window7_224")
    depths = [len(s.blocks) for s in model.layers]
    assert depths == [2, 2, 6, 2] and len(spec.layers) == 12
    for layer in spec.layers:
        side = 56 // 2 ** layer.stage
        assert layer.grid == (side, side) and layer.prefix_tokens == 0
        assert layer.module.startswith(f"layers.{layer.stage}.blocks.")
    _assert_consistent(model, spec)


@pytest.mark.parametrize("name", ["twins_svt_small", "twins_pcpvt_small"])
def test_twins_grid_per_stage_no_cls(name):
    model, spec = _spec(name)
    assert len(spec.layers) == sum(len(b) for b in model.blocks)
    for layer in spec.layers:
        side = 56 // 2 ** layer.stage
        assert layer.grid == (side, side) and layer.prefix_tokens == 0
    _assert_consistent(model, spec)


def test_coat_lite_serial_blocks():
    model, spec = _spec("coat_lite_tiny")
    assert len(spec.layers) == 8
    assert [l.grid[0] for l in spec.layers] == [56, 56, 28, 28, 14, 14, 7, 7]
    assert all(l.prefix_tokens == 1 for l in spec.layers)
    _assert_consistent(model, spec)


def test_coat_parallel_blocks_one_layer_per_scale():
    model, spec = _spec("coat_tiny")
    n_serial = sum(len(getattr(model, f"serial_blocks{i}")) for i in range(1, 5))
    n_parallel = len(model.parallel_blocks)
    block = model.parallel_blocks[0]
    assert block.mlp2 is block.mlp3 is block.mlp4  # the shared module that fires three times
    assert len(spec.layers) == n_serial + 3 * n_parallel
    parallel = spec.layers[n_serial:]
    assert [l.call for l in parallel[:3]] == [0, 1, 2]
    assert [l.grid for l in parallel[:3]] == [(28, 28), (14, 14), (7, 7)]
    assert [l.stage for l in parallel[:3]] == [1, 2, 3]
    assert len({l.module for l in parallel[:3]}) == 1
    _assert_consistent(model, spec)


def test_truncated_forward_stops_after_target():
    model, spec = _spec("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=4)
    ran = []
    for i, block in enumerate(model.blocks):
        block.register_forward_hook(lambda *_a, i=i: ran.append(i))
    with LayerCapture(model, [spec.layers[1]]) as cap:
        acts = cap(torch.zeros(2, 3, 32, 32))
    assert set(acts) == {1} and ran == [0]  # block 1 stopped inside its mlp
    ran.clear()
    with LayerCapture(model, [spec.layers[1]], truncate=False) as cap:
        cap(torch.zeros(2, 3, 32, 32))
    assert ran == [0, 1, 2, 3]


def test_unknown_model_names_close_matches():
    with pytest.raises(AtlasError, match="vit_base_patch16_224"):
        create_model("vit_bsae_patch16_224")


def test_unsupported_family():
    with pytest.raises(AtlasError, match="not in a supported family"):
        create_model("resnet18")


def test_random_weights_are_seeded():
    a = create_model("vit_tiny_patch16_224", "random", {"depth": 1}, seed=3)
    b = create_model("vit_tiny_patch16_224", "random", {"depth": 1}, seed=3)
    c = create_model("vit_tiny_patch16_224", "random", {"depth": 1}, seed=4)
    wa, wb, wc = (m.blocks[0].mlp.fc1.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


@pytest.mark.parametrize("family", sorted(supported_families()))
def test_every_family_described_alike_by_registry_and_front_door(family):
    """Driven by the registry: each family's example model has consistent layers, and
    ``pipeline.api.ffn_layer`` (what ``render`` uses on any module) agrees with the registry
    on every layer's index, units, grid and prefix tokens."""
    from pipeline.api import describe_model, ffn_layer

    name = supported_families()[family].example
    assert family_of(name).name == family
    model, spec = _spec(name)
    _assert_consistent(model, spec)
    generic = describe_model(model, name=name)
    firsts = [layer for layer in spec.layers if layer.call == 0]  # CoaT: a module's first
    for layer in {firsts[0].index: firsts[0], firsts[-1].index: firsts[-1]}.values():
        found = ffn_layer(model, layer.module, generic)
        assert (found.index, found.units, found.grid, found.prefix_tokens) == (
            layer.index, layer.units, layer.grid, layer.prefix_tokens), layer.module

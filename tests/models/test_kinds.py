"""Key, query and value channels: each kind's layer is its slice of the attention projection,
checked against a forward hook on the model's own linear, for every family that has them."""

from __future__ import annotations

import pytest
import torch

from pipeline.capture import LayerCapture
from pipeline.errors import AtlasError
from pipeline.index.pooled import PooledCapture
from pipeline.models import create_model, spec_for
from pipeline.models.registry import check_kinds
from pipeline.models.spec import KINDS, ModelSpec

KQV = ("query", "key", "value")
FAMILIES = [  # (model, kwargs) per family with attention projections, kept small
    ("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8, "depth": 2}),
    ("deit_tiny_distilled_patch16_224", {"img_size": 32, "patch_size": 8, "depth": 2}),
    ("vit_base_patch32_clip_quickgelu_224", {"depth": 2, "img_size": 64}),
    ("convit_tiny", {"img_size": 32, "patch_size": 8, "depth": 3, "local_up_to_layer": 2}),
    ("pit_ti_224", {"img_size": 64}),
    ("coat_lite_tiny", {"img_size": 64}),
    ("coat_tiny", {"img_size": 64, "serial_depths": (1, 1, 1, 1), "parallel_depth": 1}),
]


def _direct(model, path, call, x):
    """Every firing's output of module ``path`` through a plain forward hook."""
    outs = []
    h = dict(model.named_modules())[path].register_forward_hook(
        lambda _m, _i, out: outs.append(out.detach().clone()))
    try:
        model(x)
    finally:
        h.remove()
    return outs[call]


@pytest.mark.parametrize("name,kwargs", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_kind_channels_match_a_direct_hook(name, kwargs):
    model = create_model(name, "random", kwargs)
    spec = spec_for(model, name, kwargs, kinds=("ffn", *KQV))
    ffn = [layer for layer in spec.layers if layer.kind == "ffn"]
    assert spec.depth == len(ffn) and spec.kinds == list(KINDS)
    assert [layer.index for layer in spec.layers] == list(range(len(spec.layers)))
    assert len(spec.layers) == 4 * len(ffn)
    torch.manual_seed(0)
    x = torch.randn(2, *spec.input_size)
    with LayerCapture(model, spec.layers, truncate=False) as cap:
        acts = cap(x)
    with PooledCapture(model, spec.layers) as cap:
        pooled = cap(x)
    for layer in spec.layers[len(ffn):]:
        base = ffn[layer.level]
        assert layer.grid == base.grid and layer.prefix_tokens == base.prefix_tokens
        out = _direct(model, layer.module, layer.call, x)
        dim = layer.units
        # timm's layouts: fused qkv = [q | k | v]; ConViT's gated qk = [q | k], v alone
        if layer.module.endswith(".qkv"):
            assert out.shape[-1] == 3 * dim
            assert layer.offset == KQV.index(layer.kind) * dim
        elif layer.module.endswith(".qk"):
            assert layer.offset == ("query", "key").index(layer.kind) * dim
        else:
            assert layer.module.endswith(".v") and layer.kind == "value" and layer.offset == 0
        want = out[:, base.prefix_tokens:, layer.offset:layer.offset + dim]
        torch.testing.assert_close(acts[layer.index], want)
        torch.testing.assert_close(pooled[layer.index], want.mean(1), rtol=1e-5, atol=1e-5)
    spec2 = ModelSpec.from_dict(spec.to_dict())
    assert spec2.layers == spec.layers
    assert spec.layer_of("value", 1).kind == "value"


def test_truncated_capture_of_kinds_alone():
    name, kwargs = FAMILIES[0]
    model = create_model(name, "random", kwargs)
    spec = spec_for(model, name, kwargs, kinds=("key", "value"))
    assert spec.kinds == ["ffn", "key", "value"]
    keys = [layer for layer in spec.layers if layer.kind == "key"]
    x = torch.rand(1, *spec.input_size)
    with LayerCapture(model, keys[:1]) as cap:  # stops after block 0's qkv
        acts = cap(x)
    want = _direct(model, "blocks.0.attn.qkv", 0, x)[:, 1:, keys[0].units:2 * keys[0].units]
    torch.testing.assert_close(acts[keys[0].index], want)


def test_ffn_only_spec_is_unchanged():
    name, kwargs = FAMILIES[0]
    model = create_model(name, "random", kwargs)
    spec = spec_for(model, name, kwargs)
    assert spec.kinds == ["ffn"] and len(spec.layers) == 2
    assert "kind" not in spec.to_dict()["layers"][0]


@pytest.mark.parametrize("name,kwargs", [
    ("swin_tiny_patch4_window7_224", {"depths": (1, 1, 1, 1), "img_size": 64,
                                      "window_size": 2}),
    ("twins_svt_small", {"depths": (1, 1, 1, 1), "img_size": 64}),
])
def test_families_without_patch_projections_say_so(name, kwargs):
    model = create_model(name, "random", kwargs)
    with pytest.raises(AtlasError, match="no key, query or value channels"):
        spec_for(model, name, kwargs, kinds=("ffn", "key"))
    assert spec_for(model, name, kwargs).kinds == ["ffn"]


def test_check_kinds():
    assert check_kinds("key,ffn") == ("ffn", "key")
    with pytest.raises(AtlasError, match="unknown kind"):
        check_kinds("ffn,mlp")


def test_config_selects_each_kind_at_the_same_blocks(tmp_path):
    from pipeline.config import AtlasConfig
    from pipeline.runtime import run_layers, spec_kinds
    from pipeline.store import AtlasStore

    name, kwargs = FAMILIES[0]
    config = AtlasConfig().replace(model=name, model_kwargs=kwargs, layers="1",
                                   kinds="value,ffn")
    assert spec_kinds(config) == KINDS
    spec = spec_for(create_model(name, "random", kwargs), name, kwargs, spec_kinds(config))
    assert run_layers(config, spec) == [1, spec.layer_of("value", 1).index]
    with pytest.raises(AtlasError, match="unknown kind"):
        config.replace(kinds="ffn,keys")
    # a later run of FFN units alone keeps the kinds' layers in atlas.json
    store = AtlasStore(tmp_path)
    store.init(config.to_dict(), spec.to_dict(), "random(seed=0)")
    ffn_only = spec_for(create_model(name, "random", kwargs), name, kwargs)
    store.init(config.to_dict(), ffn_only.to_dict(), "random(seed=0)")
    assert len(store.manifest()["model"]["layers"]) == len(spec.layers)

"""``pipeline.open``: the same feature records from an atlas directory and its built site."""

from __future__ import annotations

import json

import pytest

import pipeline
from pipeline.errors import AtlasError
from pipeline.site import build_site
from pipeline.site.assets import decode_record
from pipeline.testing.fake import make_fake_atlas, tiny_spec


def test_directory_and_site_give_the_same_records(tmp_path):
    spec = tiny_spec(img_size=32, patch_size=8, depth=2, embed_dim=8, num_heads=1)
    store = make_fake_atlas(tmp_path / "atlas", spec, vis_units=6)
    site = build_site(store, workers=1)
    from_dir = pipeline.open(store.root)
    from_site = pipeline.open(site)
    assert from_dir.model == from_site.model == "vit_tiny_patch16_224"
    assert from_dir.layers == from_site.layers == [0, 1]
    for layer in from_dir.layers:
        assert from_dir.units(layer) == from_site.units(layer)
        for unit in from_dir.units(layer)[:3]:
            record = from_site.feature(layer, unit)
            on_disk = json.loads(
                (site / f"{from_site.slug}/{layer}/{unit}/feature.json").read_text())
            assert record == decode_record(on_disk)  # its maps decoded: lists of floats
            assert on_disk["top"]["maps"]["encoding"] == "uint8-base64"
            maps = record["top"]["maps"]
            assert len(maps) == len(record["top"]["id"]) and len(maps[0]) == spec.layers[
                layer].grid[0] and isinstance(maps[0][0][0], float)
            assert from_dir.feature(layer, unit) == record
    assert pipeline.open(store.root / "site").model == from_dir.model  # DIR/site found too
    with pytest.raises(KeyError, match="no unit 99"):
        from_dir.feature(0, 99)
    with pytest.raises(AtlasError, match="neither an atlas directory"):
        pipeline.open(tmp_path)

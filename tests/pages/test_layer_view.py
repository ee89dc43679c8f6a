"""A site worker's view of a layer holds the units' places, not their results: visualization
results are read chunk by chunk as pages ask for units, labels are held as arrays, and the
pages are what they were when every result was held."""

from __future__ import annotations

import json

import pytest

from pipeline import store as store_module
from pipeline.models import create_model, spec_for
from pipeline.site.data import AtlasView
from pipeline.site.feature import FeatureWriter, SiteInfo
from pipeline.site.labels import ConceptTable, clean
from pipeline.store import AtlasStore, ChunkedResults, atomic_write_json
from pipeline.testing.fake import ACCENT_RECIPE, CHUNK, FAKE_RECIPE, make_fake_atlas, pattern

KW = {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 64, "num_heads": 1}


@pytest.fixture(scope="module")
def atlas(tmp_path_factory) -> AtlasStore:
    spec = spec_for(create_model("vit_tiny_patch16_224", "random", KW), "vit_tiny_patch16_224",
                    KW)
    return make_fake_atlas(tmp_path_factory.mktemp("fake"), spec, topk=3, n_examples=16)


def test_results_are_read_chunk_by_chunk_and_equal_the_whole(atlas, monkeypatch):
    whole = atlas.vis_results(0)
    chunks = sorted(atlas.vis_dir(0).glob("chunk-*.json"))
    assert len(chunks) > 2  # else nothing is left out of the cache
    reads = []
    real = store_module.read_json
    monkeypatch.setattr(store_module, "read_json",  # chunks only (not recipes.json)
                        lambda p: (p.name.startswith("chunk-") and reads.append(p)) or real(p))
    lazy = atlas.vis_results(0, lazy=True)
    assert isinstance(lazy, ChunkedResults) and len(reads) == len(chunks)  # the places
    assert list(lazy) == list(whole) and len(lazy) == len(whole)
    reads.clear()
    assert dict(lazy.items()) == whole  # in unit order: each chunk parsed once
    assert len(reads) == len(chunks)
    assert len(lazy._chunks) <= 2  # the last two read, no more
    assert -1 not in lazy and "3" not in lazy and 3 in lazy
    with pytest.raises(KeyError):
        lazy[len(whole) + 5]


def test_a_later_chunk_of_the_same_units_wins(atlas, tmp_path):
    store = AtlasStore(tmp_path)
    for start, value in ((0, 1.0), (5, 2.0)):
        atomic_write_json(store.vis_chunk_path(0, start, "r"), {"recipe": {"name": "r"}, "units": [
            {"unit": u, "activation": value} for u in (2, 1, start + 7)]})
    lazy, whole = store.vis_results(0, "r", lazy=True), store.vis_results(0, "r")
    assert list(lazy) == list(whole) == [2, 1, 7, 12]
    assert lazy[1]["activation"] == whole[1]["activation"] == 2.0


def test_concept_table_gives_the_cleaned_labels(atlas):
    raw = atlas.labels(0)
    table = ConceptTable(raw)
    assert list(table) == list(raw) and len(table) == len(raw) > 0
    assert all(table[u] == clean(raw[u]) for u in raw)
    view = AtlasView(atlas).layer(0)
    assert isinstance(view.labels, ConceptTable)
    assert all(view.concepts(u) == clean(raw.get(u)) for u in view.units)


def test_a_recipes_differing_chunks_are_numbered_in_unit_order(atlas, tmp_path):
    """Chunks of one recipe made with other settings are two recipes on the page, numbered
    as first met in unit order, whatever order the pages read them in."""
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(atlas.root, root)
    store = AtlasStore(root)
    path = store.vis_chunk_path(0, CHUNK, FAKE_RECIPE["name"])  # the second chunk
    chunk = json.loads(path.read_text())
    chunk["recipe"] = {**chunk["recipe"], "steps": 99}
    atomic_write_json(path, chunk)
    view = AtlasView(store).layer(0)
    info = SiteInfo.of(AtlasView(store), {0: view.units}, 2026, None)
    writer = FeatureWriter(info, view, None)
    names = [(name, r.get("steps")) for name, r in writer.recipes]
    assert names[:2] == [("fake", 1), ("fake", 99)]
    later = chunk["units"][0]["unit"]
    assert writer._visualizations(0)[0][0] == 0 and writer._visualizations(later)[0][0] == 1
    assert sum(writer.ties[FAKE_RECIPE["name"]].values()) == sum(
        1 for r in store.vis_results(0).values() if (r.get("fidelity") or {}).get("z_rank"))


def test_thumbnails_of_a_layer_are_its_units_first_visualizations(tmp_path):
    """``AtlasView.thumbnails`` (a byte a unit, ``UnitFiles``) names, for every unit of the
    layer, the file ``LayerView.thumbnail`` names (the primary recipe's first, the
    accentuation only when alone), and nothing for a unit no recipe visualized."""
    spec = spec_for(create_model("vit_tiny_patch16_224", "random", KW), "vit_tiny_patch16_224",
                    KW)
    store = make_fake_atlas(tmp_path, spec, topk=3, n_examples=16, vis_units=150, accent=True)
    alone = 3 * CHUNK  # beyond the other recipes' units (150), within the layer (256)
    store.write_vis_chunk(0, alone, dict(ACCENT_RECIPE),
                          [{"unit": alone, "activation": 1.0}], [pattern(1, 32)], None)
    view = AtlasView(store)
    layer = view.layer(0)
    shown = view.thumbnails(0)
    units = range(spec.layers[0].units)
    assert len(units) > 150 and "accent" in layer.vis
    want = {u: layer.thumbnail(u) for u in units}
    assert {u: shown.get(u) for u in units} == want
    assert dict(shown) == {u: f for u, f in want.items() if f is not None}
    assert want[alone] == layer.files["accent"][0] and want[0] == layer.files[layer.primary][0]
    assert shown.get(-1) is None
    with pytest.raises(KeyError):
        shown[units[-1]]

"""An atlas of a ``--channels`` subset: every page shows its own unit's data."""

from __future__ import annotations

import json

from pipeline.cli import main
from pipeline.index.results import load_layer_index
from pipeline.site.data import AtlasView
from pipeline.store import AtlasStore
from tests.conftest import TINY_KWARGS, TINY_MODEL


def test_subset_pages_show_their_own_units(tmp_path):
    out = tmp_path / "atlas"
    code = main(["build", "--model", TINY_MODEL, "--weights", "random", "--model-kwargs",
                 *[f"{k}={v}" for k, v in TINY_KWARGS.items()], "--out", str(out),
                 "--dataset", "synthetic:30", "--steps", "3", "--topk", "3",
                 "--channels", "5:9", "--workers", "0",
                 "--layer-map", "pca"])  # not UMAP: its JIT alone costs ~10 s
    assert code == 0
    store = AtlasStore(out)
    index = load_layer_index(store, 1)
    assert list(index.units) == [5, 6, 7, 8]
    layer_dir = out / "site" / AtlasView(store).slug / "1"
    pages = sorted(int(p.parent.name) for p in layer_dir.glob("*/feature.json"))
    assert pages == [5, 6, 7, 8]
    for row, unit in enumerate(index.units):
        feature = json.loads((layer_dir / str(unit) / "feature.json").read_text())
        assert feature["unit"] == unit
        assert abs(feature["top"]["score"][0] - float(index.top_scores[row, 0])) < 1e-4
        assert abs(feature["activation"] - store.vis_results(1)[unit]["activation"]) < 1e-4

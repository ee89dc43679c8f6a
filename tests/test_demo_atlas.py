"""The demo atlas: every channel of the shipped demo model gets a page (its visualizations'
strength is tested in test_demo_visualizations, a file of its own so that the two slowest
tests run on different workers)."""

from __future__ import annotations

import json

from pipeline.store import AtlasStore
from tests.conftest import demo_build


def test_demo_atlas_has_a_page_for_every_channel(tmp_path):
    out = tmp_path / "demo"
    concepts = tmp_path / "concepts.txt"  # a short list: the 20,000 default words take ~30 s
    concepts.write_text("circle\nstripes\nring\ncheckerboard\ndots\nred\nblue\nedge\n")
    proc = demo_build(out, "--steps", "2", "--max-images", "300", "--concepts", str(concepts),
                      "--judge-trials", "4",
                      "--layer-map", "pca")  # UMAP's JIT costs ~10 s; test_relations has it
    assert "vit-atlas serve --out" in proc.stdout
    manifest = AtlasStore(out).manifest()
    layers = manifest["model"]["layers"]
    assert len(layers) == 4 and all(layer["units"] == 384 for layer in layers)
    model_dirs = [p for p in (out / "site").iterdir() if (p / "0" / "0").is_dir()]
    assert len(model_dirs) == 1
    for layer in layers:
        for unit in range(layer["units"]):
            page = model_dirs[0] / str(layer["index"]) / str(unit)
            assert (page / "index.html").is_file(), page
            feature = json.loads((page / "feature.json").read_text())
            assert (feature["layer"], feature["unit"]) == (layer["index"], unit)

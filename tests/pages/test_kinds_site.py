"""A demo build of FFN units and attention channels: every kind gets its pages, numbered after
the FFN layers (site/data-format.md), with ``kind`` in feature.json."""

from __future__ import annotations

import json
import subprocess
import sys


def test_demo_build_with_kinds(tmp_path):
    out = tmp_path / "atlas"
    subprocess.run([sys.executable, "-m", "pipeline", "build", "--preset", "demo", "--out",
                    str(out), "--layers", "1", "--channels", "0:2", "--steps", "2",
                    "--dataset", "synthetic:48", "--topk", "4", "--kinds", "ffn,key,value"],
                   check=True, capture_output=True)
    spec = json.loads((out / "atlas.json").read_text())["model"]
    depth = sum(1 for layer in spec["layers"] if layer.get("kind", "ffn") == "ffn")
    slug = next(p for p in (out / "site").iterdir()
                if (p / "1" / "0" / "feature.json").is_file())
    ffn = json.loads((slug / "1" / "0" / "feature.json").read_text())
    assert ffn["kind"] == "ffn" and "depth" not in ffn
    key = json.loads((slug / str(2 * depth + 1) / "1" / "feature.json").read_text())
    value = json.loads((slug / str(3 * depth + 1) / "0" / "feature.json").read_text())
    assert key["kind"] == "key" and key["depth"] == 1 and key["module"] == "blocks.1.attn.qkv"
    dim = spec["layers"][2 * depth + 1]["units"]
    assert key["channel"] == dim + 1 and value["channel"] == 2 * dim
    assert key["top"] and len(key["top"][0]["heatmap"]) == ffn["grid"][0]
    assert not (slug / str(depth + 1)).exists()  # queries were not asked for

"""The Findings page and findings.json of a demo build with attention channels."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from pipeline.index.foreground import normalized_entropy
from pipeline.index.results import load_examples, load_layer_index
from pipeline.site.findings import verdicts
from pipeline.store import AtlasStore


def test_findings_json_and_page(tmp_path):
    out = tmp_path / "atlas"
    subprocess.run([sys.executable, "-m", "pipeline", "build", "--preset", "demo", "--out",
                    str(out), "--layers", "0,3", "--channels", "0:3", "--steps", "2",
                    "--dataset", "synthetic:48", "--topk", "4", "--kinds", "ffn,value"],
                   check=True, capture_output=True)
    found = next((out / "site").glob("*/findings/findings.json"))
    data = json.loads(found.read_text())
    assert [x["kind"] for x in data["layers"]] == ["ffn", "ffn", "value", "value"]
    assert [x["depth"] for x in data["layers"]] == [0, 3, 0, 3]
    store = AtlasStore(out)
    examples = load_examples(store)
    first = data["layers"][0]
    index = load_layer_index(store, first["layer"])
    ents, purs = [], []
    for row in range(3):  # brute force: unit by unit, example by example
        ids = [int(i) for i in index.top_ids[row] if i >= 0]
        ents.append(np.mean([normalized_entropy(index.maps[row, j]) for j in range(len(ids))]))
        labels = [examples.labels[i] for i in ids]
        purs.append(max(labels.count(c) for c in labels) / len(labels))
    assert np.isclose(first["entropy"], np.mean(ents)) and np.isclose(first["purity"],
                                                                        np.mean(purs))
    assert data["verdicts"] == verdicts(data["layers"]) and len(data["verdicts"]) == 2
    page = (found.parent / "index.html").read_text()
    assert "Findings" in page and data["verdicts"][0].split(":")[0] in page

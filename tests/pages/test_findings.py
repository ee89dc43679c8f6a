"""The Findings page and findings.json of a demo build with attention channels."""

from __future__ import annotations

import json

import numpy as np

from pipeline.index.foreground import normalized_entropy
from pipeline.index.results import load_examples, load_layer_index
from pipeline.site.findings import verdicts
from pipeline.store import AtlasStore
from tests.conftest import demo_build


def test_findings_json_and_page(tmp_path):
    out = tmp_path / "atlas"
    demo_build(out, "--layers", "0,3", "--channels", "0:3", "--steps", "2",
               "--dataset", "synthetic:48", "--topk", "4", "--kinds", "ffn,value")
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
    assert data["verdicts"][:2] == verdicts(data["layers"]) and len(data["verdicts"]) >= 3
    # FFN against value channels per block, brute force from the visualize results
    recipe = store.vis_recipes()[0]
    per = {}
    for x in data["layers"]:
        fids = [r.get("fidelity") or {} for r in store.vis_results(x["layer"], recipe).values()]
        afc = [f["recognisability"]["afc"] for f in fids if f.get("recognisability")]
        vs = [f["vs_best_example"] for f in fids if f.get("vs_best_example") is not None]
        per[(x["kind"], x["depth"])] = (np.mean(afc) if afc else None,
                                        np.mean(vs) if vs else None)
    at = 0 if all(v[0] is not None for v in per.values()) else 1
    assert data["recognisability_figure"] == ("afc", "vs_best_example")[at]
    assert [r["depth"] for r in data["by_depth"]] == [0, 3]
    for r in data["by_depth"]:
        assert np.isclose(r["ffn"], per[("ffn", r["depth"])][at])
        assert np.isclose(r["value"], per[("value", r["depth"])][at])
    # the comparison says how far its images were optimized (here 2 steps: barely at all)
    assert data["vis_steps"] == [2]
    assert any("recognisable" in v and "images of 2 optimization steps" in v
               for v in data["verdicts"])
    assert [s["depth"] for s in data["sample"]] == [0, 3]
    for s in data["sample"]:
        assert [u["kind"] for u in s["units"]] == ["ffn", "value"]
        for u in s["units"]:  # the kind's median unit in its block, brute force
            fig = data["recognisability_figure"]
            got = {}
            for unit, r in store.vis_results(u["layer"], recipe).items():
                f = r.get("fidelity") or {}
                v = (f.get("recognisability") or {}).get("afc") if fig == "afc" \
                    else f.get("vs_best_example")
                if v is not None:
                    got[unit] = v
            ranked = sorted(got, key=lambda k: (got[k], k))
            assert u["unit"] == ranked[(len(ranked) - 1) // 2] and u[fig] == got[u["unit"]]
            assert (out / "site" / u["image"]).is_file()
            assert (out / "site" / u["page"] / "index.html").is_file()
    # the index's experiments: the demo model has a CLS token; no masks, no classifier figures
    exp = store.experiments()
    assert data["cls"] == exp["cls"] and data["classifier"] is None
    assert len(data["cls"]["kl"]) == len(data["cls"]["blocks"]) > 1
    assert any(v.startswith(("Holds: the CLS", "Does not hold: the CLS", "Not clear: the CLS"))
               for v in data["verdicts"])
    page = (found.parent / "index.html").read_text()
    assert "Findings" in page and data["verdicts"][0].split(":")[0] in page
    assert "The CLS token replaced by its mean" in page and "atlas-findings-sample" in page


def test_findings_hold_one_layer_index_at_a_time(tmp_path, monkeypatch):
    """``findings.measure`` lets go of a layer's index before it reads the next: a site-stage
    worker then holds one layer's patch maps, not two (at 12,288 units a layer, some 440 MiB
    each)."""
    import gc
    import weakref

    from pipeline.site import findings
    from pipeline.testing.fake import make_fake_atlas, tiny_spec

    kw = {"img_size": 32, "patch_size": 8, "depth": 3, "embed_dim": 8, "num_heads": 1}
    spec = tiny_spec(**kw)
    store = make_fake_atlas(tmp_path / "a", spec, model_kwargs=kw)
    read: list[weakref.ref] = []

    def tracked(store, layer):
        gc.collect()
        assert [r for r in read if r() is not None] == []  # the last layer's is gone
        index = load_layer_index(store, layer)
        read.append(weakref.ref(index))
        return index

    monkeypatch.setattr(findings, "load_layer_index", tracked)
    found = findings.measure(store, spec)
    assert len(read) == 3 and len(found["layers"]) == 3

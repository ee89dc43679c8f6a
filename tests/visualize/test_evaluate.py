"""``vit-atlas evaluate``: the figures follow from what the atlas holds, and the baseline's
best examples score as the index says they do."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.cli import main
from pipeline.index.image_stats import amplitude_spectrum
from pipeline.index.results import load_layer_index, require_index
from pipeline.index.stage import run_index
from pipeline.runtime import prepare
from pipeline.visualize.evaluate import (
    best_example_fidelity,
    evaluate_atlas,
    patch_grid_share,
    spectral_distance,
    write_report,
)
from pipeline.visualize.stage import run_visualize


@pytest.fixture
def atlas(tiny_config):
    run = prepare(tiny_config.replace(channels="0:8", recipe="fast,default", steps=6))
    run_index(run)
    run_visualize(run)
    return run


def test_figures_follow_from_the_atlas(atlas):
    store = atlas.store
    evaluation = evaluate_atlas(store, atlas.model, atlas.spec, atlas.device, reference="fast")
    assert evaluation.layers == [0, 1] and evaluation.units == {0: list(range(8)),
                                                                 1: list(range(8))}
    assert [r.recipe for r in evaluation.recipes] == ["fast", "default"]
    fast, default = evaluation.recipes
    assert fast.objective == pytest.approx(1.0)
    acts = {n: np.mean([store.vis_results(li, n)[u]["activation"] for li in (0, 1)
                        for u in range(8)]) for n in ("fast", "default")}
    assert default.objective == pytest.approx(acts["default"] / acts["fast"], rel=1e-6)
    for figures in evaluation.recipes:
        for li in (0, 1):
            vs = [r["fidelity"]["vs_best_example"] for r in store.vis_results(li, figures.recipe)
                  .values()]
            assert figures.beats_best[li] == pytest.approx(np.mean([v >= 1 for v in vs]))
        assert figures.units == 16 and 0 <= figures.flat <= 1
        assert figures.images.tv_px > 0 and figures.images.spectral_distance > 0
    assert evaluation.dataset.count == len(list((store.root / "index" / "thumbs").glob("*.png")))
    text = evaluation.table()
    assert "best dataset examples" in text and "default" in text


def test_the_baseline_best_examples_score_as_indexed(atlas):
    """The thumbnail of each unit's best example, scored through the visualization's code,
    gives back the index's score (up to uint8 rounding): both use one patch mean."""
    index = require_index(atlas.store, [1])
    fid, pixels = best_example_fidelity(atlas.model, atlas.spec, index, atlas.store, 1,
                                        list(range(8)), atlas.device)
    assert len(fid) == len(pixels) == 8
    for f in fid:
        assert f["vs_best_example"] == pytest.approx(1.0, abs=0.05)
        assert 1 <= f["z_rank"] <= f["of"]


def test_report_and_contact_sheet(atlas):
    evaluation = evaluate_atlas(atlas.store, atlas.model, atlas.spec, atlas.device)
    assert evaluation.reference is None and evaluation.recipes[0].objective is None
    folder = write_report(atlas.store, evaluation)
    report = json.loads((folder / "report.json").read_text())
    assert [r["recipe"] for r in report["recipes"]] == ["fast", "default"]
    sheet = Image.open(folder / "contact_sheet.png")
    assert sheet.size == (80 + 34 * 3, 18 + 34 * 8)  # 4 units x 2 layers; best + 2 recipes
    assert not list(folder.glob("*.tmp"))


def test_cli_evaluate(atlas, capsys):
    assert main(["evaluate", "--out", str(atlas.store.root), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "best dataset examples" in out and "contact sheet" in out
    assert (atlas.store.root / "evaluate" / "contact_sheet.png").is_file()


def test_cli_evaluate_with_a_grey_judge(atlas, capsys):
    """``--judge grey:SPEC`` measures with that judge shown every image in grey, and says so."""
    root = atlas.store.root
    assert main(["evaluate", "--out", str(root), "--device", "cpu", "--judge",
                 "grey:cnn:demo", "--judge-trials", "4"]) == 0
    assert "recognisability, judged by grey:demo-cnn" in capsys.readouterr().out
    report = json.loads((root / "evaluate" / "report.json").read_text())
    assert report["judge"] == "grey:demo-cnn"
    assert main(["evaluate", "--out", str(root), "--judge", "grey:"]) == 2
    assert "grey: takes one judge SPEC" in capsys.readouterr().err


def test_cli_evaluate_errors(tmp_path, tiny_config, capsys):
    assert main(["evaluate", "--out", str(tmp_path / "none")]) == 2
    assert "no atlas" in capsys.readouterr().err
    run = prepare(tiny_config)
    run_index(run)
    assert main(["evaluate", "--out", str(run.store.root), "--device", "cpu"]) == 2
    assert "no visualizations" in capsys.readouterr().err
    assert load_layer_index(run.store, 0) is not None  # nothing lost


def test_spectral_figures():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    own = amplitude_spectrum(x).mean(0)
    assert spectral_distance(x, own).max() < 0.3
    assert spectral_distance(0.25 * x, own).min() > 1.0  # a factor 4 off: ln 4 = 1.39
    tiled = x[:, :, :8, :8].repeat(1, 1, 4, 4)
    assert patch_grid_share(tiled, (8, 8)).min() > 0.99
    assert patch_grid_share(x, (8, 8)).max() < 0.1  # noise: about 1/64 of its power


def test_further_images_are_rows_of_their_own(tiny_config):
    """With --diversity 2, each recipe's second images are evaluated as a row of their own
    ("fast #2"): their objective and beats-best follow from their stored activations and the
    index's best examples, and the contact sheet shows them."""
    run = prepare(tiny_config.replace(channels="0:4", recipe="fast", steps=4, diversity=2))
    run_index(run)
    run_visualize(run)
    store = run.store
    evaluation = evaluate_atlas(store, run.model, run.spec, run.device, reference="fast")
    assert [r.label for r in evaluation.recipes] == ["fast", "fast #2"]
    first, second = evaluation.recipes
    results = {li: store.vis_results(li, "fast") for li in (0, 1)}
    further = [results[li][u]["diversity"]["activations"][0] for li in (0, 1) for u in range(4)]
    own = [results[li][u]["activation"] for li in (0, 1) for u in range(4)]
    assert second.objective == pytest.approx(np.mean(further) / np.mean(own), rel=1e-6)
    for li in (0, 1):
        index = load_layer_index(store, li)
        best = [float(index.top_scores[index.unit_row(u), 0]) for u in range(4)]
        acts = [results[li][u]["diversity"]["activations"][0] for u in range(4)]
        assert second.beats_best[li] == pytest.approx(np.mean(
            [b > 0 and a / b >= 1 for a, b in zip(acts, best, strict=True)]))
    assert second.images.z_top1 is None and first.image == 0 and second.image == 1
    assert "fast #2" in evaluation.table()
    sheet = Image.open(write_report(store, evaluation) / "contact_sheet.png")
    assert sheet.size == (80 + 34 * 3, 18 + 34 * 8)  # 4 units x 2 layers; best + 2 images


def test_the_colour_baseline_is_the_best_examples_flattened(atlas):
    """With a judge, the baselines include each unit's best example flattened to its mean
    colour (what colour alone tells the judge), on the same trials as the others."""
    from pipeline.index.results import load_examples
    from pipeline.judge import ExampleEmbeddings, load_judge, measure_layer
    from pipeline.visualize.evaluate import flat_colour

    judge = load_judge("cnn:demo")
    evaluation = evaluate_atlas(atlas.store, atlas.model, atlas.spec, atlas.device,
                                judge=judge, trials=6)
    assert evaluation.colour is not None and "their mean colours" in evaluation.table()
    index = require_index(atlas.store, [0, 1])
    _, pixels = best_example_fidelity(atlas.model, atlas.spec, index, atlas.store, 0,
                                      list(range(8)), atlas.device)
    flat = flat_colour(np.stack(pixels))
    assert (flat == flat[:, :1, :1]).all()  # one colour per image
    assert np.abs(flat[:, 0, 0].astype(int) - np.stack(pixels).mean((1, 2))).max() <= 0.5
    measured = measure_layer(judge, ExampleEmbeddings(judge, load_examples(atlas.store)),
                             index.layers[0], list(range(8)), flat,
                             f"{atlas.spec.name}/0", 6)
    assert evaluation.colour.afc[0] == pytest.approx(np.mean([m["afc"] for m in measured if m]))

"""The index stage end to end on a tiny random ViT and small local datasets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import AtlasError
from pipeline.index.results import (
    load_examples,
    load_image_stats,
    load_layer_index,
    load_probe,
    require_index,
)
from pipeline.index.stage import IndexJob, run_index
from pipeline.index.topk import brute_force_topk
from pipeline.store import AtlasStore
from tests.index.support import (
    BROKEN,
    HTML_NAME,
    assert_same_index,
    assert_same_probe,
    brute_force_scores,
    tiny_run,
    write_odd_imagefolder,
    write_webdataset,
)

REPO = Path(__file__).resolve().parents[2]


def _layers(run):
    return {i: load_layer_index(run.store, i) for i in run.layers}


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """One uninterrupted index of 60 synthetic images, shared by several tests."""
    out = tmp_path_factory.mktemp("synthetic") / "atlas"
    run = tiny_run(out, "synthetic:60")
    run_index(run)
    return run


def test_topk_equals_brute_force(synthetic_run):
    run = synthetic_run
    scores, skipped, labels = brute_force_scores(run)
    assert skipped == []
    k = run.config.index.topk
    for index, full in scores.items():
        li = load_layer_index(run.store, index)
        ids, top = brute_force_topk(full, k)
        np.testing.assert_allclose(li.top_scores, top, atol=1e-6, rtol=0)
        swapped = li.top_ids != ids  # only allowed between scores within float error
        assert swapped.sum() <= 2 and np.all(np.abs(
            full[li.top_ids[swapped], np.nonzero(swapped)[0]]
            - full[ids[swapped], np.nonzero(swapped)[0]]) <= 1e-6)
        assert (np.diff(li.top_scores, axis=1) <= 0).all()
        # bottom-k: the top-k of the negated scores, least first, ties to the lower number
        low_ids, low = brute_force_topk(-full, k)
        np.testing.assert_allclose(li.bottom_scores, -low, atol=1e-6, rtol=0)
        swapped = li.bottom_ids != low_ids
        assert swapped.sum() <= 2 and np.all(np.abs(
            full[li.bottom_ids[swapped], np.nonzero(swapped)[0]]
            - full[low_ids[swapped], np.nonzero(swapped)[0]]) <= 1e-6)
        assert (np.diff(li.bottom_scores, axis=1) >= 0).all()
        assert li.bottom_maps.shape == li.maps.shape
        np.testing.assert_allclose(li.bottom_maps.mean(axis=(2, 3)), li.bottom_scores,
                                   atol=1e-5)
        np.testing.assert_allclose(li.mean, full.mean(0), atol=1e-6, rtol=0)
        np.testing.assert_array_equal(li.layer_mean, li.mean)  # every channel was selected
        np.testing.assert_allclose(li.std, full.astype(np.float64).std(0), atol=1e-5, rtol=0)
        assert li.std.dtype == np.float32
        np.testing.assert_allclose(li.max, full.max(0), atol=1e-6, rtol=0)
        np.testing.assert_array_equal(li.units, np.arange(full.shape[1]))
        # histogram: every image once, in the bin its score falls in (a score within float
        # error of an edge may sit in the neighbouring bin)
        assert (li.hist_counts.sum(1) == len(full)).all()
        for u in range(full.shape[1]):
            edges = li.hist_edges[u].astype(np.float64)
            expect = np.array([((full[:, u] >= lo) & (full[:, u] < hi)).sum()
                               for lo, hi in zip(edges[:-1], edges[1:], strict=True)])
            assert np.abs(li.hist_counts[u] - expect).sum() <= 2
        # top classes by mean score
        lab = np.array(labels)
        means = np.stack([full[lab == c].mean(0) for c in range(lab.max() + 1)], axis=1)
        best = np.argsort(-means, axis=1, kind="stable")[:, :5]
        np.testing.assert_array_equal(li.top_classes, best)
        np.testing.assert_allclose(li.top_class_means,
                                   np.take_along_axis(means, best, 1), atol=1e-6)
        # patch maps: their mean is the score, grid as the layer's
        layer = run.spec.layers[index]
        assert li.maps.shape == (full.shape[1], k, *layer.grid)
        np.testing.assert_allclose(li.maps.mean(axis=(2, 3)), li.top_scores, atol=1e-5)


def test_probe_profiles_equal_brute_force(synthetic_run, tmp_path):
    """Every unit's scores over the first --probe-images examples, centred, float16."""
    scores, _, _ = brute_force_scores(synthetic_run)
    for index, full in scores.items():
        probe = load_probe(synthetic_run.store, index)
        assert probe.numbers.tolist() == list(range(60))  # the default 10,000 > 60 images
        assert probe.profiles.dtype == np.float16
        np.testing.assert_allclose(probe.mean, full.mean(0), atol=1e-5)
        np.testing.assert_allclose(probe.profiles.astype(np.float32).mean(0), 0, atol=1e-3)
        np.testing.assert_allclose(probe.scores(), full, atol=2e-3, rtol=1e-3)
    few = tiny_run(tmp_path / "atlas", "synthetic:60", probe_images=25, max_images=40)
    run_index(few)
    probe = load_probe(few.store, 0)
    assert probe.numbers.tolist() == list(range(25))
    np.testing.assert_allclose(probe.scores(), scores[0][:25], atol=2e-3, rtol=1e-3)


def assert_same_quantiles(a, b, share: float = 0.97) -> None:
    """Two indexes chose the same quantile examples: the same intervals, and the same
    examples in all but the few intervals where float error moved a score across an edge."""
    np.testing.assert_allclose(a.quantile_edges, b.quantile_edges, rtol=1e-6, equal_nan=True)
    same = (a.quantile_ids == b.quantile_ids).all(axis=-1)
    assert same.mean() >= share, same.mean()
    np.testing.assert_allclose(a.quantile_scores[same], b.quantile_scores[same], atol=1e-5)
    np.testing.assert_allclose(a.quantile_maps[same], b.quantile_maps[same], atol=1e-4)


def test_quantile_examples_lie_in_their_intervals_and_equal_brute_force(synthetic_run):
    """Up to 8 intervals of whole histogram bins from the mean's bin to the max's; in each,
    the 4 examples with the smallest hash of their number, by decreasing score."""
    from pipeline.index.quantiles import brute_force_quantiles, example_key

    run = synthetic_run
    scores, _, _ = brute_force_scores(run)
    ex = load_examples(run.store)
    for index, full in scores.items():
        li = load_layer_index(run.store, index)
        units = full.shape[1]
        assert li.quantile_edges.shape == (units, 9) and li.quantile_ids.shape == (units, 8, 4)
        assert li.quantile_maps.shape == (units, 8, 4, *run.spec.layers[index].grid)
        edges = li.quantile_edges
        count = (~np.isnan(edges)).sum(1) - 1  # intervals per unit
        assert (count >= 1).all() and (count <= 8).all() and (count == 8).mean() > 0.5
        last = edges[np.arange(units), count]
        assert (edges[:, 0] <= li.mean).all() and (last > li.max).all()
        assert (np.nanmax(np.diff(edges, axis=1), axis=1) > 0).all()
        # bins of the histogram, never wider than 1/8 of [mean, max] plus two bins
        width = li.hist_edges[:, 1] - li.hist_edges[:, 0]
        assert (edges[:, 1] - edges[:, 0] <= (li.max - li.mean) / 8 + 2 * width + 1e-6).all()
        ids, got = li.quantile_ids, li.quantile_scores
        filled = ids >= 0
        # every example lies in its interval (by the scan's score; brute force within 1e-5)
        lo, hi = edges[:, :-1, None], edges[:, 1:, None]
        lo, hi = np.broadcast_to(lo, ids.shape)[filled], np.broadcast_to(hi, ids.shape)[filled]
        assert (got[filled] >= lo).all() and (got[filled] < hi).all()
        rows = np.broadcast_to(np.arange(units)[:, None, None], ids.shape)[filled]
        brute = full[ids[filled], rows]
        np.testing.assert_allclose(got[filled], brute, atol=1e-5)
        assert (np.diff(np.where(filled, got, -1e30), axis=-1) <= 0).all()
        assert np.isneginf(got[~filled]).all()
        np.testing.assert_allclose(li.quantile_maps.mean(axis=(-2, -1))[filled], got[filled],
                                   atol=1e-5)
        # the same choice as brute force (as sets; an interval differs only where some score
        # lies within float error of one of its edges)
        want = brute_force_quantiles(full, edges, 4)
        keys = example_key(np.arange(len(full)))
        for u in range(units):
            for j in range(count[u]):
                a = set(ids[u, j][ids[u, j] >= 0].tolist())
                b = set(want[u, j][want[u, j] >= 0].tolist())
                if a != b:
                    near = np.abs(full[:, u, None] - edges[u, [j, j + 1]]).min() < 1e-5
                    assert near, (index, u, j, a, b)
                    continue
                inside = (full[:, u] >= edges[u, j]) & (full[:, u] < edges[u, j + 1])
                assert len(a) == min(4, inside.sum())  # an interval may hold no example
                if a:
                    assert max(keys[list(a)]) <= np.sort(keys[inside])[len(a) - 1]
        # thumbnails of every shown example
        assert all(ex.thumb_path(int(n)) is not None for n in np.unique(ids[filled]))


def test_quantiles_off(tmp_path):
    run = tiny_run(tmp_path / "atlas", "synthetic:30", quantiles=0)
    run_index(run)
    li = load_layer_index(run.store, 0)
    assert li.quantile_ids is None and li.quantiles(0) == [] and li.maps.shape[1] == 4


def test_examples_and_thumbnails(synthetic_run):
    run = synthetic_run
    ex = load_examples(run.store)
    assert len(ex.ids) == 60 and ex.images_seen == 60 and ex.skipped == []
    assert ex.ids[7] == "synthetic-validation-000007" and ex.label_name(7) == "diagonal stripes"
    shown = set()
    for li in _layers(run).values():
        shown |= set(li.top_ids.ravel().tolist())
    for number in range(60):
        path = ex.thumb_path(number)
        assert (path is not None) == (number in shown)
        if path is not None:
            assert path.is_file() and path.name == f"{number:07d}.png"
    from PIL import Image

    with Image.open(ex.thumb_path(min(shown))) as im:
        assert im.size == (32, 32) and im.mode == "RGB"
    assert not run.store.index_work_dir.exists()


def test_finished_index_is_skipped(synthetic_run, capfd):
    run = synthetic_run
    path = run.store.index_dir / "L000.npz"
    before = path.stat().st_mtime_ns
    run_index(run)
    assert path.stat().st_mtime_ns == before
    assert "nothing to do" in capfd.readouterr().err


def test_batch_size_and_workers_do_not_matter(synthetic_run, tmp_path):
    other = tiny_run(tmp_path / "atlas", "synthetic:60", index_batch_size=13, workers=2,
                     checkpoint_every=2)
    run_index(other)
    ref = _layers(synthetic_run)
    for index, li in _layers(other).items():
        assert_same_index(ref[index], li)
        assert np.abs(ref[index].hist_counts - li.hist_counts).sum(1).max() <= 2
        assert_same_quantiles(ref[index], li)
    assert_same_probe(synthetic_run.store, other.store, synthetic_run.layers)
    a, b = load_examples(synthetic_run.store), load_examples(other.store)
    assert a.ids == b.ids and a.thumbs == b.thumbs


def test_resume_after_interruption_equals_uninterrupted(synthetic_run, tmp_path):
    run = tiny_run(tmp_path / "atlas", "synthetic:60", checkpoint_every=2)
    run_index(run, stop_after_batches=3)  # checkpoint after batch 2; batch 3 is lost
    work = run.store.index_work_dir
    assert (work / "r0of1" / "state.npz").is_file()
    assert not run.store.examples_path.exists()
    run_index(run, stop_after_batches=2)  # resumes, stops again
    run_index(run)
    ref = _layers(synthetic_run)
    for index, li in _layers(run).items():
        np.testing.assert_array_equal(li.top_ids, ref[index].top_ids)
        np.testing.assert_array_equal(li.top_scores, ref[index].top_scores)
        np.testing.assert_array_equal(li.bottom_ids, ref[index].bottom_ids)
        np.testing.assert_array_equal(li.bottom_maps, ref[index].bottom_maps)
        np.testing.assert_array_equal(li.hist_counts, ref[index].hist_counts)
        np.testing.assert_allclose(li.mean, ref[index].mean, atol=1e-7)
        np.testing.assert_allclose(li.std, ref[index].std, atol=1e-7)
        np.testing.assert_array_equal(li.maps, ref[index].maps)
        for name in ("edges", "ids", "scores", "maps"):
            np.testing.assert_array_equal(getattr(li, f"quantile_{name}"),
                                          getattr(ref[index], f"quantile_{name}"))
    assert_same_probe(synthetic_run.store, run.store, run.layers, atol=0)
    a = json.loads(run.store.examples_path.read_text())
    b = json.loads(synthetic_run.store.examples_path.read_text())
    assert a["examples"] == b["examples"] and a["images_seen"] == b["images_seen"] == 60


def test_resume_webdataset_from_state_dict(tmp_path):
    """A streaming source resumes from its saved state_dict, mid-shard."""
    wds = write_webdataset(tmp_path / "wds", 40, shards=3)
    ref = tiny_run(tmp_path / "ref", f"webdataset:{wds}")
    run_index(ref)
    run = tiny_run(tmp_path / "atlas", f"webdataset:{wds}", checkpoint_every=1)
    run_index(run, stop_after_batches=2)
    meta = np.load(run.store.index_work_dir / "r0of1" / "state.npz")["meta"]
    state = json.loads(str(meta))
    assert state["consumed"] == 16 and state["source_state"] is not None
    run_index(run)
    ref_layers = _layers(ref)
    for index, li in _layers(run).items():
        np.testing.assert_array_equal(li.top_ids, ref_layers[index].top_ids)
        np.testing.assert_array_equal(li.top_scores, ref_layers[index].top_scores)
        np.testing.assert_array_equal(li.maps, ref_layers[index].maps)  # pass 2 from the start
    a, b = load_examples(run.store), load_examples(ref.store)
    assert a.ids == b.ids and a.thumbs == b.thumbs
    assert all(a.thumb_path(n).is_file() for n in range(len(a.ids)) if a.thumbs[n])


KILL_SCRIPT = """
import sys
from pathlib import Path
from pipeline.index.stage import run_index
from tests.index.support import tiny_run
run_index(tiny_run(Path(sys.argv[1]), "synthetic:240", index_batch_size=8, checkpoint_every=1))
"""


def _kill_9_when(out: Path, ready, timeout: float = 180) -> None:
    """Index ``out`` in a child process and ``kill -9`` it as soon as ``ready()`` holds."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + timeout
        while True:
            assert time.time() < deadline and proc.poll() is None, "no checkpoint to kill at"
            try:
                if ready():
                    break
            except Exception:  # not written yet, or being replaced right now
                pass
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_kill_9_then_rerun_resumes(synthetic_run, tmp_path):
    out = tmp_path / "atlas"
    state = out / "index" / "work" / "r0of1" / "state.npz"
    _kill_9_when(out, lambda: json.loads(str(np.load(state)["meta"]))["consumed"] >= 24)
    assert not (out / "index" / "examples.json").exists()
    run = tiny_run(out, "synthetic:240", fresh=False, index_batch_size=8)
    run_index(run)
    ref = tiny_run(tmp_path / "ref", "synthetic:240", index_batch_size=32, checkpoint_every=100)
    run_index(ref)
    ref_layers = _layers(ref)
    for index, li in _layers(run).items():
        assert_same_index(ref_layers[index], li)
        assert_same_quantiles(ref_layers[index], li)
    assert load_examples(run.store).ids == load_examples(ref.store).ids


def test_broken_files_are_skipped_and_reported(tmp_path, capfd):
    root = write_odd_imagefolder(tmp_path / "odd")
    run = tiny_run(tmp_path / "atlas", f"imagefolder:{root}", workers=2, topk=20)
    run_index(run)
    data = json.loads(run.store.examples_path.read_text())
    skipped = {s["id"].split("/")[-1]: s for s in data["skipped"]}
    assert set(skipped) == BROKEN
    assert "truncated" in skipped["truncated.jpg"]["reason"]
    assert " at 0x" not in json.dumps(data["skipped"])  # reasons are reproducible
    assert data["images_seen"] == 12 - len(BROKEN)
    entries = {e["id"].split("/")[-1]: e for e in data["examples"]}
    assert len(entries) == 12
    for name, entry in entries.items():
        assert entry.get("skipped", False) == (name in BROKEN)
        assert (entry["thumb"] is None) == (name in BROKEN)  # k=20: every good image shown
    assert data["classes"] == ["even", "odd"]
    li = load_layer_index(run.store, 0)
    bad = [s["number"] for s in data["skipped"]]
    assert not np.isin(li.top_ids, bad).any()
    assert (li.top_ids[:, 9:] == -1).all() and np.isneginf(li.top_scores[:, 9:]).all()
    err = capfd.readouterr().err
    assert "3 skipped" in err and "truncated.jpg" in err


def test_html_class_name_survives(tmp_path):
    wds = write_webdataset(tmp_path / "wds", 24, class_names=["plain", HTML_NAME])
    run = tiny_run(tmp_path / "atlas", f"webdataset:{wds}")
    run_index(run)
    raw = run.store.examples_path.read_text(encoding="utf-8")
    data = json.loads(raw)
    assert data["classes"][1] == HTML_NAME and data["classes"][0] == "plain"
    ex = load_examples(run.store)
    assert ex.label_name(1) == HTML_NAME


def test_channel_subset_and_max_images(synthetic_run, tmp_path):
    run = tiny_run(tmp_path / "atlas", "synthetic:60", channels="3:7,10", layers="1",
                   max_images=50)
    run_index(run)
    assert not (run.store.index_dir / "L000.npz").exists()
    li = load_layer_index(run.store, 1)
    np.testing.assert_array_equal(li.units, [3, 4, 5, 6, 10])
    assert li.top_ids.shape == (5, 4) and li.unit_row(10) == 4 and li.unit_row(7) is None
    scores, _, _ = brute_force_scores(synthetic_run)
    ids, top = brute_force_topk(scores[1][:50, [3, 4, 5, 6, 10]], 4)
    np.testing.assert_array_equal(li.top_ids, ids)  # no near-ties among these 5 units
    # the whole layer's statistics, whatever the selection
    assert li.layer_mean.shape == (scores[1].shape[1],)
    np.testing.assert_allclose(li.layer_mean, scores[1][:50].mean(0), atol=1e-6, rtol=0)
    np.testing.assert_array_equal(li.mean, li.layer_mean[[3, 4, 5, 6, 10]])
    np.testing.assert_allclose(li.top_scores, top, atol=1e-6)
    assert len(load_examples(run.store).ids) == 50


def test_new_configuration_replaces_old_index(tmp_path):
    run = tiny_run(tmp_path / "atlas", "synthetic:30", layers="0")
    run_index(run)
    run2 = tiny_run(tmp_path / "atlas", "synthetic:30", fresh=False, layers="1", topk=3)
    run_index(run2)
    root = run.store.index_dir
    assert not (root / "L000.npz").exists()  # stale layer of the old configuration
    assert load_layer_index(run2.store, 1).top_ids.shape[1] == 3


def test_background_statistics_equal_inline(synthetic_run):
    """The CUDA path's overlap (statistics in a background thread) changes nothing."""
    import torch

    from pipeline.data.sources import open_source
    from pipeline.index.scan import Scanner
    from pipeline.models import eval_transform

    run = synthetic_run
    source = open_source("synthetic:40", "validation", 32)
    transform = eval_transform(run.model, run.config.model.kwargs)
    recs = list(source.records())
    x = torch.stack([transform(source.decoder(r).image) for r in recs])
    labels = np.array([r.number % 12 for r in recs])
    layers = [run.spec.layers[i] for i in run.layers]
    units = {layer.index: run.units(layer.index) for layer in layers}
    states = []
    for overlap in (False, True):
        with Scanner(run.model, layers, units, 4, run.device, 12, overlap=overlap) as s:
            for a in range(0, 40, 7):
                s.update(x[a:a + 7], np.arange(a, min(a + 7, 40)), labels[a:a + 7])
            states.append({i: st.state() for i, st in s.stats.items()})
    for index, state in states[0].items():
        for key, value in state.items():
            np.testing.assert_array_equal(states[1][index][key], value)


def test_kill_9_in_the_maps_pass_then_rerun_resumes_it(tmp_path, capfd):
    """The second pass checkpoints too: a rerun keeps the maps found before the kill."""
    out = tmp_path / "atlas"
    state = out / "index" / "work" / "r0of1" / "maps-state.json"
    _kill_9_when(out, lambda: json.loads(state.read_text())["done"] >= 24)
    saved = json.loads(state.read_text())
    assert not saved["finished"] and not (out / "index" / "examples.json").exists()
    capfd.readouterr()
    run = tiny_run(out, "synthetic:240", fresh=False, index_batch_size=8)
    run_index(run)
    assert f"maps: resuming after {saved['consumed']} examples" in capfd.readouterr().err
    ref = tiny_run(tmp_path / "ref", "synthetic:240", index_batch_size=32, checkpoint_every=100)
    run_index(ref)
    ref_layers = _layers(ref)
    for index, li in _layers(run).items():
        assert_same_index(ref_layers[index], li)
        np.testing.assert_allclose(li.maps, ref_layers[index].maps, atol=1e-5)
    assert load_examples(run.store).thumbs == load_examples(ref.store).thumbs


def test_require_index_returns_every_layer_and_the_image_statistics(synthetic_run):
    run = synthetic_run
    got = require_index(run.store, [1, 0], IndexJob.from_run(run).fingerprint)
    assert sorted(got.layers) == [0, 1]
    for index, li in got.layers.items():
        np.testing.assert_array_equal(li.top_ids, load_layer_index(run.store, index).top_ids)
    assert got.image_stats.count == 60 == load_image_stats(run.store).count
    h, w = run.spec.input_size[-2:]
    assert got.image_stats.spectrum.shape == (3, h, w // 2 + 1)


def test_require_index_says_what_is_missing_and_how_to_get_it(synthetic_run, tmp_path):
    empty = AtlasStore(tmp_path / "empty")
    how = r"fidelity is measured against the index; run the index stage on it \(same options\)"
    with pytest.raises(AtlasError, match=r"has no dataset index for layer 3: .*" + how):
        require_index(empty, [3])
    with pytest.raises(AtlasError, match="has no dataset index for layers 2, 5: "):
        require_index(synthetic_run.store, [0, 2, 5])
    with pytest.raises(AtlasError, match="made with other options"):
        require_index(synthetic_run.store, [0], fingerprint="another")
    half = tiny_run(tmp_path / "half", "synthetic:60")
    run_index(half, stop_after_batches=1)
    with pytest.raises(AtlasError, match="has an unfinished dataset index for layers 0, 1: "):
        require_index(half.store, [0, 1])


def test_build_indexes_before_it_visualizes(monkeypatch, tmp_path):
    """``build`` runs index (with the labeler's image side riding along), then label,
    relations and visualize (which read the index), then the site."""
    import types

    import pipeline
    import pipeline.index.stage
    import pipeline.label.labelers
    import pipeline.label.stage
    import pipeline.runtime
    from pipeline import cli

    calls = []
    fake_visualize = types.ModuleType("pipeline.visualize.stage")
    fake_visualize.run_visualize = lambda run: calls.append("visualize")
    fake_visualize.check_options = lambda config, store=None: None
    fake_pages = types.ModuleType("pipeline.site")
    fake_pages.build_site = lambda store: calls.append("site") or tmp_path
    monkeypatch.setitem(sys.modules, "pipeline.visualize.stage", fake_visualize)
    monkeypatch.setitem(sys.modules, "pipeline.site", fake_pages)
    monkeypatch.setattr(pipeline, "site", fake_pages, raising=False)
    monkeypatch.setattr(pipeline.runtime, "prepare",
                        lambda cfg: types.SimpleNamespace(store=AtlasStore(tmp_path),
                                                          device="cpu"))
    monkeypatch.setattr(pipeline.index.stage, "run_index",
                        lambda run, probe_encoder: calls.append(("index", probe_encoder.id)))
    labeler = types.SimpleNamespace(id="demo@x", preprocess=None, encode_images=None)
    monkeypatch.setattr(pipeline.label.labelers, "load_labeler", lambda *a: labeler)
    monkeypatch.setattr(pipeline.label.stage, "check_label_options", lambda label, model: None)
    monkeypatch.setattr(pipeline.label.stage, "run_label",
                        lambda run, lab: calls.append(("label", lab.id)))
    import pipeline.relations.stage

    monkeypatch.setattr(pipeline.relations.stage, "run_relations",
                        lambda run: calls.append("relations"))
    cli.run_command(cli.build_parser().parse_args(["build", "--out", str(tmp_path / "a"),
                                                   "--stats-images", "64"]))
    assert calls == [("index", "demo@x"), ("label", "demo@x"), "relations", "visualize", "site"]
    calls.clear()
    cli.run_command(cli.build_parser().parse_args(["visualize", "--out", str(tmp_path / "a")]))
    assert calls == ["visualize"]
    assert cli.resolve_config({"command": "index", "stats_images": 64}).index.stats_images == 64


def test_layer_index_maps_its_patch_maps_from_the_file(synthetic_run, tmp_path):
    """The patch maps are read-only maps of the index file, equal to the arrays stored; the
    rest is read whole. A map keeps the file it opened when a new one replaces it."""
    import zipfile

    from pipeline.index.results import MAPPED, write_layer_index
    from pipeline.store import atomic_save_npz, read_npz

    index = load_layer_index(synthetic_run.store, 0)
    with np.load(synthetic_run.store.index_layer_path(0)) as z:
        stored = {name: z[name] for name in z.files}
    mapped = [name for name in MAPPED if getattr(index, name) is not None]
    assert "maps" in mapped and "bottom_maps" in mapped
    for name in mapped:
        arr = getattr(index, name)
        assert isinstance(arr.base, np.memmap) and not arr.flags.writeable, name
        np.testing.assert_array_equal(arr, stored[name])
    assert index.top_ids.flags.writeable and not isinstance(index.top_ids.base, np.memmap)

    copy = AtlasStore(tmp_path / "atlas")
    write_layer_index(copy, 0, index)
    held = load_layer_index(copy, 0)
    atomic_save_npz(copy.index_layer_path(0), maps=np.zeros_like(stored["maps"]))
    np.testing.assert_array_equal(held.maps, stored["maps"])

    packed = tmp_path / "packed.npz"  # stored compressed: read whole, the same arrays
    np.savez_compressed(packed, maps=stored["maps"], empty=np.zeros((0, 3), np.float32))
    with zipfile.ZipFile(packed) as archive:
        assert archive.getinfo("maps.npy").compress_type == zipfile.ZIP_DEFLATED
    back = read_npz(packed, mapped={"maps", "empty"})
    assert back["maps"].flags.writeable and back["empty"].shape == (0, 3)
    np.testing.assert_array_equal(back["maps"], stored["maps"])

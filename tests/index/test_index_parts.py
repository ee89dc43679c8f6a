"""The index's streaming pieces against brute force: FAISS heaps (ties to the lower id),
mergeable histograms, per-layer statistics, checkpoints and the patch-map slot table."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from pipeline.index.checkpoint import load_state, save_state
from pipeline.index.histogram import StreamingHistogram
from pipeline.index.image_stats import ImageStats
from pipeline.index.maps import SlotTable, thumbnail
from pipeline.index.stats import LayerStats
from pipeline.index.topk import TopK, brute_force_topk


def _stream(topk: TopK, scores: np.ndarray, batch: int, numbers: np.ndarray | None = None):
    numbers = np.arange(len(scores)) if numbers is None else numbers
    for a in range(0, len(numbers), batch):
        topk.add(scores[numbers[a:a + batch]], numbers[a:a + batch])


def test_faiss_min_heap_would_keep_the_higher_id_on_ties():
    """Why TopK stores -score in FAISS' max-heap: when a better score arrives, FAISS'
    min-heap (keep_max=True) evicts the *lowest* id among tied worst scores."""
    heap = faiss.ResultHeap(nq=1, k=2, keep_max=True)
    heap.add_result(np.ones((1, 2), np.float32), np.array([[0, 1]]))
    heap.add_result(np.full((1, 1), 5, np.float32), np.array([[2]]))
    heap.finalize()
    assert heap.I[0].tolist() == [2, 1]  # id 0 was dropped
    ours = TopK(1, 2)
    ours.add(np.ones((2, 1), np.float32), np.array([0, 1]))
    ours.add(np.full((1, 1), 5, np.float32), np.array([2]))
    assert ours.result()[0].tolist() == [[2, 0]]


@pytest.mark.parametrize("seed", range(6))
def test_topk_equals_brute_force_with_ties_any_batching_and_sharding(seed):
    rng = np.random.default_rng(seed)
    n, units, k = int(rng.integers(1, 150)), int(rng.integers(1, 12)), int(rng.integers(1, 9))
    scores = rng.integers(0, 4, size=(n, units)).astype(np.float32)  # many ties
    ref_ids, ref_scores = brute_force_topk(scores, k)
    m = min(n, k)
    for batch in (1, 5, n):
        t = TopK(units, k)
        _stream(t, scores, batch)
        ids, top = t.result()
        np.testing.assert_array_equal(ids[:, :m], ref_ids)
        np.testing.assert_array_equal(top[:, :m], ref_scores)
        assert (ids[:, m:] == -1).all() and np.isneginf(top[:, m:]).all()
    for world in (2, 3):
        parts = []
        for rank in range(world):
            t = TopK(units, k)
            _stream(t, scores, 4, np.arange(rank, n, world))
            parts.append(t)
        ids, top = TopK.merge(parts).result()
        np.testing.assert_array_equal(ids[:, :m], ref_ids)
        np.testing.assert_array_equal(top[:, :m], ref_scores)


def test_topk_state_round_trip_keeps_streaming():
    rng = np.random.default_rng(0)
    scores = rng.random((50, 6)).astype(np.float32)
    a = TopK(6, 5)
    _stream(a, scores[:20], 7)
    b = TopK(6, 5)
    b.load(a.state())
    _stream(b, scores, 7, np.arange(20, 50))
    np.testing.assert_array_equal(b.result()[0], brute_force_topk(scores, 5)[0])


@pytest.mark.parametrize("seed", range(8))
def test_histogram_is_exact_and_independent_of_batching_and_sharding(seed):
    rng = np.random.default_rng(seed)
    n, units, bins = int(rng.integers(1, 300)), int(rng.integers(1, 6)), int(rng.integers(2, 70))
    scale = 10.0 ** rng.uniform(-5, 3)
    scores = (rng.standard_normal((n, units)) * scale + rng.uniform(-2, 2) * scale)
    scores = scores.astype(np.float32)
    if seed == 0:
        scores[:] = 0.0  # dead unit
    if seed == 1:
        scores[:] = 0.37  # constant unit: edges must still be exact in float32
    if seed == 2:
        scores = np.round(scores)  # values on bin edges
    ref = StreamingHistogram(units, bins)
    ref.add(scores)
    edges = ref.edges().astype(np.float64)
    for u in range(units):
        assert (np.diff(edges[u]) > 0).all()
        expect = [((scores[:, u] >= lo) & (scores[:, u] < hi)).sum()
                  for lo, hi in zip(edges[u, :-1], edges[u, 1:], strict=True)]
        np.testing.assert_array_equal(ref.counts[u], expect)
        used = np.flatnonzero(ref.counts[u])
        if scores[:, u].max() > scores[:, u].min():
            assert used[-1] - used[0] + 1 >= (bins - 2) // 2  # the range fills the bins
    for batch in (1, 3, 64):
        h = StreamingHistogram(units, bins)
        for a in range(0, n, batch):
            h.add(scores[a:a + batch])
        np.testing.assert_array_equal(h.counts, ref.counts)
        np.testing.assert_array_equal(h.edges(), ref.edges())
    parts = []
    for rank in range(3):
        h = StreamingHistogram(units, bins)
        h.add(scores[rank::3])
        parts.append(h)
    merged = StreamingHistogram.merge(parts + [StreamingHistogram(units, bins)])
    np.testing.assert_array_equal(merged.counts, ref.counts)
    np.testing.assert_array_equal(merged.edges(), ref.edges())


def test_layer_stats_merge_and_top_classes():
    rng = np.random.default_rng(3)
    scores = rng.random((40, 7)).astype(np.float32)
    labels = rng.integers(-1, 5, 40)  # -1: unlabelled
    whole = LayerStats(7, 3)
    whole.update(scores, np.arange(40), labels)
    parts = []
    for rank in range(2):
        s = LayerStats(7, 3)
        s.update(scores[rank::2], np.arange(rank, 40, 2), labels[rank::2])
        parts.append(s)
    merged = LayerStats.merge(parts)
    for got in (whole, merged):
        np.testing.assert_allclose(got.mean(), scores.mean(0), rtol=1e-6)
        np.testing.assert_allclose(got.std(), scores.astype(np.float64).std(0), rtol=1e-5)
        assert got.std().dtype == np.float32
        np.testing.assert_array_equal(got.max(), scores.max(0))
        classes, means = got.top_classes(c=5)
        seen = [c for c in range(5) if (labels == c).any()]
        avg = np.stack([scores[labels == c].mean(0) for c in seen], 1)
        order = np.argsort(-avg, axis=1, kind="stable")
        np.testing.assert_array_equal(classes[:, :len(seen)], np.array(seen)[order])
        np.testing.assert_allclose(means[:, :len(seen)], np.take_along_axis(avg, order, 1),
                                   rtol=1e-6)
        assert (classes[:, len(seen):] == -1).all()


def test_checkpoint_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    s = LayerStats(5, 2)
    s.update(rng.random((9, 5)).astype(np.float32), np.arange(9), np.arange(9) % 3)
    images = ImageStats((4, 6), limit=5)
    images.update(torch.rand(7, 3, 4, 6), np.arange(7))
    save_state(tmp_path / "state.npz", {"consumed": 9, "x": [1, "a"]}, {3: s}, images)
    state = load_state(tmp_path / "state.npz")
    assert state.meta == {"consumed": 9, "x": [1, "a"]} and set(state.stats) == {3}
    t = LayerStats(5, 2)
    t.load(state.stats[3])
    for key, value in s.state().items():
        np.testing.assert_array_equal(t.state()[key], value)
    back = ImageStats((4, 6))
    back.load(state.images)
    assert back.limit == 5 and back.count == 5
    for key, value in images.state().items():
        np.testing.assert_array_equal(back.state()[key], value)
    (tmp_path / "bad.npz").write_bytes(b"half a file")
    assert load_state(tmp_path / "bad.npz") is None


def test_slot_table_finds_every_slot_of_a_batch():
    ids = np.array([[5, 2, -1], [2, 9, 5], [7, 7, 2]])
    table = SlotTable(ids)
    pos, rows, slots = table.lookup(np.array([2, 5, 8]))
    got = sorted(zip(pos.tolist(), rows.tolist(), slots.tolist(), strict=True))
    assert got == [(0, 0, 1), (0, 1, 3), (0, 2, 8), (1, 0, 0), (1, 1, 5)]
    keep = SlotTable(ids, (ids >= 0) & (ids % 2 == 1))
    assert sorted(keep.lookup(np.array([5, 7, 9]))[2].tolist()) == [0, 4, 5, 6, 7]


def test_thumbnail_undoes_normalization_and_caps_size():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    pixels = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    import torch

    x = (torch.from_numpy(pixels) - torch.tensor(mean)[:, None, None]) / \
        torch.tensor(std)[:, None, None]
    out = thumbnail(x, mean, std)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out, np.round(pixels.transpose(1, 2, 0) * 255), atol=1)
    big = thumbnail(torch.zeros(3, 300, 450), mean, std)
    assert big.shape == (149, 224, 3)


SMALL = {
    "coat_tiny": {},
    "swin_tiny_patch4_window7_224": {"embed_dim": 24, "depths": (1, 1, 2, 1),
                                     "num_heads": (1, 1, 1, 1)},
    "pit_ti_distilled_224": {},
    "convit_tiny": {"depth": 4, "local_up_to_layer": 2, "embed_dim": 48},
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_pooled_scores_equal_the_mean_of_captured_patch_tokens(name):
    """Shared modules firing several times (CoaT), (B, H, W, C) outputs (Swin), prefix
    tokens (PiT distilled, ConViT): the in-hook pooling equals the plain patch mean."""
    import torch

    from pipeline.capture import LayerCapture
    from pipeline.index.pooled import PooledCapture
    from pipeline.models import create_model, spec_for

    model = create_model(name, "random", SMALL[name])
    spec = spec_for(model, name, SMALL[name])
    layers = spec.layers[-4:] if name == "coat_tiny" else spec.layers[::3]
    x = torch.randn(2, *spec.input_size)
    select = {layers[0].index: torch.tensor([5, 1, 2])}
    with torch.inference_mode():
        with LayerCapture(model, layers) as cap:
            full = cap(x)
        with PooledCapture(model, layers, select) as pooled_cap:
            pooled = pooled_cap(x)
    assert set(pooled) == {layer.index for layer in layers}
    for layer in layers:
        expect = full[layer.index].double().mean(1)
        if layer.index in select:
            expect = expect[:, select[layer.index]]
        torch.testing.assert_close(pooled[layer.index].double(), expect, atol=1e-5, rtol=1e-5)


def test_selected_rows_keep_whole_layer_statistics_and_merge_exactly():
    """Statistics of a subset of units: moments and histogram of every unit of the layer,
    top-k / bottom-k / quantile samples of the selected ones, equal to a whole-layer run's
    rows; two shards merge to the same."""
    rng = np.random.default_rng(5)
    scores = rng.normal(size=(50, 9)).astype(np.float32)
    numbers, labels = np.arange(50), np.arange(50) % 3
    rows = [2, 5, 7]
    whole = LayerStats(9, 4, quantile_k=2)
    whole.update(scores, numbers, labels)
    parts = []
    for rank in range(2):
        s = LayerStats(9, 4, quantile_k=2, rows=rows)
        s.update(scores[rank::2], numbers[rank::2], labels[rank::2])
        parts.append(s)
    merged = LayerStats.merge(parts)
    single = LayerStats(9, 4, quantile_k=2, rows=rows)
    for start in range(0, 50, 7):
        single.update(scores[start:start + 7], numbers[start:start + 7], labels[start:start + 7])
    for got in (single, merged):
        np.testing.assert_array_equal(got.hist.counts, whole.hist.counts)
        np.testing.assert_allclose(got.mean(), whole.mean(), rtol=1e-6)
        np.testing.assert_allclose(got.std(), whole.std(), rtol=1e-6)
        for a, b in zip(got.topk.result(), whole.topk.result(), strict=True):
            np.testing.assert_array_equal(a, b[rows])
        for a, b in zip(got.bottomk_result(), whole.bottomk_result(), strict=True):
            np.testing.assert_array_equal(a, b[rows])
        q, qw = got.quantiles(3), whole.quantiles(3)
        np.testing.assert_array_equal(q.ids, qw.ids[rows])
        np.testing.assert_array_equal(got.top_classes()[0], whole.top_classes()[0][rows])
    low_ids, _ = brute_force_topk(-scores, 4)
    np.testing.assert_array_equal(whole.bottomk_result()[0], low_ids)

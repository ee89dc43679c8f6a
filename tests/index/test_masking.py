"""The masking experiment and foreground figures the index measures with masks: against brute
force (one image at a time, pixel loops for the replacement), and the same whatever the batch
size, after a crash in the maps pass, and over 2 processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.data.sources import open_source
from pipeline.data.synthetic import export_imagefolder
from pipeline.index import maps as maps_module
from pipeline.index.foreground import FIGURES, load_mask, unit_foreground
from pipeline.index.results import load_examples, load_layer_index
from pipeline.index.scan import Scanner
from pipeline.index.stage import run_index
from pipeline.models import eval_transform
from pipeline.models.load import data_config
from tests.index.support import tiny_run

REPO = Path(__file__).resolve().parents[2]
N = 30
CHANNELS = "0:12"


@pytest.fixture(scope="module")
def masked(tmp_path_factory):
    """An image folder of ``N`` demo images with their masks, and one index of it."""
    root = tmp_path_factory.mktemp("masked")
    export_imagefolder(root / "img", N, "validation", 40, masks=root / "masks")
    run = tiny_run(root / "atlas", f"imagefolder:{root / 'img'}", masks=str(root / "masks"),
                   channels=CHANNELS)
    run_index(run)
    return root, run


def _brute_replace(x: np.ndarray, mask: np.ndarray, region: str) -> np.ndarray:
    out = x.copy()
    mean = [float(np.mean(x[c], dtype=np.float64)) for c in range(x.shape[0])]
    for y in range(mask.shape[0]):
        for xx in range(mask.shape[1]):
            if (not mask[y, xx]) == (region == "background"):
                out[:, y, xx] = mean
    return out


def _brute_figures(run, root) -> dict[int, np.ndarray]:
    """Per layer (units, k, 5): each top example on its own through the model, three times."""
    cfg = run.config.index
    source = open_source(cfg.dataset, cfg.split)
    transform = eval_transform(run.model, run.config.model.kwargs)
    mcfg = data_config(run.model, run.config.model.kwargs)
    recs = {r.number: r for r in source.records()}
    layers = [run.spec.layers[i] for i in run.layers]
    units = {layer.index: run.units(layer.index) for layer in layers}
    out = {}
    with Scanner(run.model, layers, units, 1, run.device) as scanner:
        for layer in layers:
            index = load_layer_index(run.store, layer.index)
            figs = np.full((*index.top_ids.shape, len(FIGURES)), np.nan)
            for row in range(index.top_ids.shape[0]):
                for slot, number in enumerate(index.top_ids[row]):
                    dec = source.decoder(recs[int(number)])
                    mask = load_mask((root / "masks" / dec.id), mcfg)
                    if mask is None:
                        continue
                    x = transform(dec.image).numpy()
                    rows, cols = layer.grid
                    maps = []
                    for img in (x, _brute_replace(x, mask, "background"),
                                _brute_replace(x, mask, "foreground")):
                        a = scanner.activations(torch.as_tensor(img)[None])[layer.index]
                        maps.append(a[0, :, row].double().numpy().reshape(rows, cols))
                    ph, pw = mask.shape[0] // rows, mask.shape[1] // cols
                    fg = np.array([[mask[r * ph:(r + 1) * ph, c * pw:(c + 1) * pw].mean() >= 0.5
                                    for c in range(cols)] for r in range(rows)])
                    pos = np.clip(maps[0], 0, None)
                    if pos.sum() > 0:
                        figs[row, slot, 0] = (pos * fg).sum() / pos.sum()
                        figs[row, slot, 1] = fg.mean()
                    figs[row, slot, 2:] = [m.mean() for m in maps]
            out[layer.index] = figs
    return out


def _figures(run) -> dict[int, np.ndarray]:
    return {i: load_layer_index(run.store, i).top_foreground for i in run.layers}


def test_figures_equal_brute_force(masked):
    root, run = masked
    want = _brute_figures(run, root)
    for index, got in _figures(run).items():
        assert got is not None and got.shape == want[index].shape
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want[index]))
        np.testing.assert_allclose(got, want[index], atol=2e-5, rtol=1e-4)
        some = ~np.isnan(got[..., 2])
        assert some.mean() > 0.5  # most demo images have an object
        # masking changes the activation somewhere (the experiment is not a no-op)
        assert np.abs(got[..., 3] - got[..., 2])[some].max() > 1e-3
        for row in range(len(got)):  # the unit's ratios: mean masked / mean unmasked
            f = unit_foreground(got[row])
            w = want[index][row]
            has = ~np.isnan(w[:, 2])
            plain = w[has, 2].mean()
            if plain <= 0:  # no ratio of a unit whose top examples do not excite it
                assert f.background_masked is None and f.foreground_masked is None
            else:
                assert f.background_masked == pytest.approx(w[has, 3].mean() / plain, rel=1e-4)
                assert f.foreground_masked == pytest.approx(w[has, 4].mean() / plain, rel=1e-4)
            assert f.examples == int((~np.isnan(w[:, 0])).sum())


def test_without_masks_no_figures(tmp_path):
    run = tiny_run(tmp_path / "atlas", "synthetic:12")
    run_index(run)
    assert all(f is None for f in _figures(run).values())


def _same(a: dict[int, np.ndarray], b: dict[int, np.ndarray], atol: float = 1e-5) -> None:
    for index in a:
        np.testing.assert_array_equal(np.isnan(a[index]), np.isnan(b[index]))
        np.testing.assert_allclose(a[index], b[index], atol=atol, rtol=1e-4)


def test_batch_size_does_not_matter(masked, tmp_path):
    root, run = masked
    other = tiny_run(tmp_path / "atlas", run.config.index.dataset, masks=str(root / "masks"),
                     index_batch_size=3, checkpoint_every=2, channels=CHANNELS)
    run_index(other)
    for index in run.layers:
        np.testing.assert_array_equal(load_layer_index(other.store, index).top_ids,
                                      load_layer_index(run.store, index).top_ids)
    _same(_figures(run), _figures(other))


def test_crash_in_the_maps_pass_then_resume(masked, tmp_path, monkeypatch):
    root, run = masked
    resumed = tiny_run(tmp_path / "atlas", run.config.index.dataset, masks=str(root / "masks"),
                       index_batch_size=4, checkpoint_every=1, channels=CHANNELS)
    real, calls = maps_module.masked_figures, []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(maps_module, "masked_figures", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        run_index(resumed)
    assert not resumed.store.examples_path.exists()
    monkeypatch.setattr(maps_module, "masked_figures", real)
    run_index(resumed)
    _same(_figures(run), _figures(resumed))


SCRIPT = """
import sys
from pathlib import Path
from pipeline import distributed
from pipeline.index.stage import run_index
from pipeline.runtime import prepare
from tests.index.support import tiny_config

out, img, masks = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
run_index(prepare(tiny_config(out, f"imagefolder:{img}", index_batch_size=5, masks=masks,
                                channels="0:12")))
assert distributed.world_size() == 2
"""


def test_two_processes_equal_one(masked, tmp_path):
    root, run = masked
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "--no-python", sys.executable, "-c", SCRIPT, str(tmp_path / "multi"),
         str(root / "img"), str(root / "masks")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    multi = tiny_run(tmp_path / "multi", run.config.index.dataset, fresh=False,
                     masks=str(root / "masks"), channels=CHANNELS)
    assert load_examples(multi.store).ids == load_examples(run.store).ids
    _same(_figures(run), _figures(multi))

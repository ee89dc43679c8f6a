"""The dataset's image statistics (mean amplitude spectrum, colour mean and covariance),
measured in the index scan: against brute force, merged across ranks, resumed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.data.sources import open_source
from pipeline.index import checkpoint as ckpt
from pipeline.index.image_stats import ImageStats, amplitude_spectrum, unnormalize
from pipeline.index.results import load_image_stats
from pipeline.index.stage import run_index
from pipeline.models import eval_transform
from tests.index.support import tiny_run


def _dataset_images(run, n: int) -> np.ndarray:
    """The first ``n`` examples as the model sees them, un-normalized in float64 with numpy:
    ``(n, 3, H, W)`` in [0, 1]."""
    cfg = run.config.index
    source = open_source(cfg.dataset, cfg.split, image_size=run.spec.input_size[-1])
    transform = eval_transform(run.model, run.config.model.kwargs)
    mean = np.asarray(run.spec.mean, np.float64)[:, None, None]
    std = np.asarray(run.spec.std, np.float64)[:, None, None]
    out = []
    for rec in source.records():
        if rec.number >= n:
            break
        x = transform(source.decoder(rec).image).numpy().astype(np.float64)
        out.append(np.clip(x * std + mean, 0, 1))
    return np.stack(out)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """An index of 60 synthetic images whose first 37 are measured."""
    run = tiny_run(tmp_path_factory.mktemp("img") / "atlas", "synthetic:60", stats_images=37)
    run_index(run)
    return run


def test_spectrum_and_colour_equal_brute_force(measured):
    stats = load_image_stats(measured.store)
    images = _dataset_images(measured, 37)
    h, w = measured.spec.input_size[-2:]
    assert stats.count == 37
    assert stats.spectrum.shape == (3, h, w // 2 + 1) and stats.spectrum.dtype == np.float32
    expect = np.abs(np.fft.rfft2(images, norm="ortho")).mean(0)
    np.testing.assert_allclose(stats.spectrum, expect, rtol=1e-4, atol=1e-5)
    pixels = images.transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(stats.colour_mean, pixels.mean(1), atol=1e-6)
    np.testing.assert_allclose(stats.colour_cov, np.cov(pixels), atol=1e-6)
    assert stats.colour_cov.dtype == np.float32 and stats.colour_mean.shape == (3,)


def test_resume_after_interruption_gives_the_same_statistics(measured, tmp_path):
    run = tiny_run(tmp_path / "atlas", "synthetic:60", stats_images=37, checkpoint_every=2)
    run_index(run, stop_after_batches=3)  # checkpoint after batch 2 (16 images); 3 is lost
    saved = ckpt.load_state(ckpt.rank_dir(tmp_path / "atlas" / "index" / "work", 0, 1)
                            / "state.npz")
    assert int(saved.images["count"]) == 16
    run_index(run, stop_after_batches=2)  # resumes after 16, checkpoints at 32, stops
    run_index(run)
    a, b = load_image_stats(run.store), load_image_stats(measured.store)
    assert a.count == b.count == 37
    for key in ("spectrum", "colour_mean", "colour_cov"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))


def test_two_ranks_merged_equal_one():
    images = torch.rand(30, 3, 8, 6, dtype=torch.float64).float()
    numbers = np.arange(30)
    whole = ImageStats((8, 6), limit=25)
    for start in range(0, 30, 7):
        whole.update(images[start:start + 7], numbers[start:start + 7])
    parts = []
    for rank in range(2):
        part = ImageStats((8, 6), limit=25)
        mine = numbers[rank::2]
        for start in range(0, len(mine), 4):  # another batching on each rank
            part.update(images[mine[start:start + 4]], mine[start:start + 4])
        restored = ImageStats((8, 6), limit=25)  # as rank 0 receives it: a state
        restored.load(part.state())
        parts.append(restored)
    merged = ImageStats.merge(parts).result()
    single = whole.result()
    assert merged.count == single.count == 25
    for key in ("spectrum", "colour_mean", "colour_cov"):
        np.testing.assert_allclose(getattr(merged, key), getattr(single, key), rtol=1e-6,
                                   atol=1e-7)


def test_horizontal_stripes_put_their_energy_on_their_frequency():
    h, w, cycles = 32, 24, 5  # 5 dark-light cycles from top to bottom
    y = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    stripes = 0.5 + 0.5 * torch.cos(2 * torch.pi * cycles * y / h)
    rng = torch.Generator().manual_seed(0)
    images = (0.8 * stripes + 0.2 * torch.rand(16, 3, h, w, generator=rng)).clamp(0, 1)
    stats = ImageStats((h, w), limit=100)
    stats.update(images, np.arange(16))
    spectrum = stats.result().spectrum.mean(0)  # (h, w//2+1)
    spectrum[0, 0] = 0  # the DC term (mean brightness)
    peak = np.unravel_index(np.argmax(spectrum), spectrum.shape)
    assert peak in {(cycles, 0), (h - cycles, 0)}  # vertical frequency 5, horizontal 0
    assert spectrum[cycles, 0] > 10 * np.median(spectrum)


def test_amplitude_spectrum_is_parseval_and_unnormalize_inverts():
    x = torch.rand(2, 3, 10, 7, dtype=torch.float64)
    a = amplitude_spectrum(x)
    assert a.shape == (2, 3, 10, 4)
    full = torch.fft.fft2(x, norm="ortho").abs()  # the half-spectrum is the full one's half
    torch.testing.assert_close(a, full[..., :4])
    torch.testing.assert_close((full ** 2).sum((-2, -1)), (x ** 2).sum((-2, -1)))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    normed = (x - torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)) / \
        torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    torch.testing.assert_close(unnormalize(normed, mean, std), x)


def test_no_images_measured_gives_zeros():
    stats = ImageStats((4, 4), limit=0)
    stats.update(torch.rand(3, 3, 4, 4), np.arange(3))
    r = stats.result()
    assert r.count == 0 and not r.spectrum.any() and not r.colour_cov.any()
    with pytest.raises(ValueError, match="expect"):
        ImageStats((4, 4)).update(torch.rand(1, 3, 5, 4), np.arange(1))

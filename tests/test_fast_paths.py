"""The optional fast paths: regional torch.compile and channels-last give eager's results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from pipeline.capture import LayerCapture
from pipeline.cli import build_parser, resolve_config
from pipeline.compilation import compile_blocks
from pipeline.errors import AtlasError
from pipeline.models import create_model, spec_for
from pipeline.runtime import apply_fast_paths, prepare
from pipeline.visualize.optimize import render
from pipeline.visualize.recipe import DEFAULT
from tests.conftest import TINY_KWARGS, TINY_MODEL, synthetic_unit_stats

CPU = torch.device("cpu")
KWARGS = {**TINY_KWARGS, "depth": 3}


def _tiny():
    model = create_model(TINY_MODEL, "random", KWARGS)
    return model, spec_for(model, TINY_MODEL, KWARGS)


def test_compiled_blocks_capture_the_layer_and_truncate():
    torch._dynamo.reset()
    counters.clear()
    model, spec = _tiny()
    x = torch.rand(2, 3, 32, 32)
    with LayerCapture(model, [spec.layers[1]]) as capture:
        expected = capture(x)[1]
    assert compile_blocks(model, spec) == 3
    ran_after = []
    model.blocks[2].register_forward_pre_hook(lambda *_: ran_after.append(True))
    with LayerCapture(model, [spec.layers[1]]) as capture:
        got = capture(x)[1]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert not ran_after  # truncated: the block after the target never ran
    assert counters["frames"]["ok"] >= 1  # block 0 ran compiled (block 1, hooked, eagerly)
    # and with no hook anywhere every block runs compiled, hooks added later included
    with LayerCapture(model, [spec.layers[2]], truncate=False) as capture:
        assert capture(x)[2].shape == (2, 16, 192)


@pytest.mark.parametrize("use_compile,use_channels_last",
                         [(True, False), (False, True), (True, True)],
                         ids=["compile", "channels-last", "both"])
def test_fast_paths_render_the_eager_images(use_compile, use_channels_last):
    torch._dynamo.reset()
    model, spec = _tiny()
    recipe = DEFAULT.with_steps(10)
    stats = synthetic_unit_stats(model, spec, spec.layers[1], 16)
    eager, a_eager = render(model, spec, spec.layers[1], [0, 5, 9], recipe, 0, CPU, stats=stats)
    apply_fast_paths(model, spec, use_compile, use_channels_last)
    fast, a_fast = render(model, spec, spec.layers[1], [0, 5, 9], recipe, 0, CPU, stats=stats)
    diff = (fast.int() - eager.int()).abs()
    assert diff.max() <= 4 and diff.float().mean() < 0.1
    torch.testing.assert_close(a_fast, a_eager, atol=1e-2, rtol=1e-2)


def test_cli_flags_reach_the_model(tmp_path):
    args = build_parser().parse_args(
        ["visualize", "--model", TINY_MODEL, "--weights", "random", "--model-kwargs",
         *[f"{k}={v}" for k, v in KWARGS.items()], "--out", str(tmp_path / "a"),
         "--compile", "--channels-last"])
    config = resolve_config(vars(args))
    assert config.runtime.compile and config.runtime.channels_last
    run = prepare(config)
    assert type(run.model.blocks[0].forward).__name__ == "_EagerWhenHooked"
    weight = run.model.patch_embed.proj.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert not resolve_config(vars(build_parser().parse_args(
        ["visualize", "--model", TINY_MODEL, "--no-compile"]))).runtime.compile


def test_compile_without_a_cpp_compiler_is_a_clear_error(monkeypatch):
    model, spec = _tiny()
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(AtlasError, match="needs a C\\+\\+ compiler"):
        compile_blocks(model, spec)
    assert type(model.blocks[0].forward).__name__ == "method"  # the model is left as it was


# -- the CUDA path's precision, emulated on the CPU ---------------------------------------------
# On CUDA the forward runs under bf16 autocast. No GPU runs here, so the same code runs under the
# CPU's bf16 autocast: the recipe must still reach fp32's objective, and the index must still
# pick fp32's examples.
def _cpu_bf16(*_args):
    return torch.autocast("cpu", dtype=torch.bfloat16)


def test_bf16_visualization_reaches_the_fp32_objective(monkeypatch):
    from pipeline.config import demo_config
    from pipeline.visualize import optimize

    config = demo_config()
    m = config.model
    model = create_model(m.name, m.weights, m.kwargs)
    spec = spec_for(model, m.name, m.kwargs)
    units = list(range(0, 384, 24))
    for layer in (spec.layers[0], spec.layers[3]):
        stats = synthetic_unit_stats(model, spec, layer)
        _, fp32 = render(model, spec, layer, units, DEFAULT.with_steps(40), 0, CPU, stats=stats)
        with monkeypatch.context() as m:
            m.setattr(optimize, "autocast", _cpu_bf16)
            _, bf16 = render(model, spec, layer, units, DEFAULT.with_steps(40), 0, CPU,
                             stats=stats)
        assert not torch.equal(bf16, fp32)  # bf16 did run
        # the typical unit reaches fp32's objective: the median change, against the mean
        # objective, measured -0.0001 (layer 0) and -0.018 (layer 3) on an AMD EPYC without
        # AVX512-BF16; the mean alone moves with the one or two units that take another path
        # (0.99 and 0.98 of fp32's on an Intel Xeon, 0.995 and 0.944 on that AMD EPYC)
        assert (bf16 - fp32).median() > -0.05 * fp32.abs().mean()
        assert bf16.mean() > 0.9 * fp32.mean()
        # per unit, bf16 may send a few optimizations down another path, a better one as
        # often as not: on a CPU with native bf16 (AVX512-BF16) 9 of 16 layer-3 units ended
        # 8-30% above fp32, none more than the band below (the test's two-sided band, which 14
        # of 16 layer-0 units met on a CPU without it, failed there)
        reached = bf16 >= fp32 - (0.05 + 0.1 * fp32.abs())
        assert reached.float().mean() >= 0.75


def test_bf16_index_picks_the_fp32_examples(tmp_path, monkeypatch):
    from pipeline.index import scan
    from pipeline.index.results import load_layer_index
    from pipeline.index.stage import run_index
    from tests.index.support import tiny_run

    fp32 = tiny_run(tmp_path / "fp32", "synthetic:64")
    run_index(fp32)
    monkeypatch.setattr(scan, "autocast", _cpu_bf16)
    bf16 = tiny_run(tmp_path / "bf16", "synthetic:64")
    run_index(bf16)
    for layer in fp32.layers:
        a, b = load_layer_index(fp32.store, layer), load_layer_index(bf16.store, layer)
        assert not np.array_equal(a.top_scores, b.top_scores)  # bf16 did run
        assert (a.top_ids[:, 0] == b.top_ids[:, 0]).mean() >= 0.9  # measured 0.99
        shared = [len(set(x) & set(y)) / len(x)
                  for x, y in zip(a.top_ids, b.top_ids, strict=True)]
        assert np.mean(shared) >= 0.8
        np.testing.assert_allclose(b.top_scores[:, 0], a.top_scores[:, 0], rtol=0.05,
                                   atol=0.02)

"""Optional regional ``torch.compile`` of the blocks that hold an FFN.

Blocks of one class share their compiled code (regional compilation), so a 24-block model
costs about one block's compile. Dynamo does not guard on module hooks, so compiled code must
never meet a hook it was not traced with: a block whose FFN activation carries a hook (the
target of ``LayerCapture``) runs eagerly, the blocks before it run compiled. So compilation
can only help visualization (truncated forward + backward, many steps), not the index, whose
every layer is hooked. Whether it helps is measured by ``scripts/bench_fast_paths.py``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable

import torch
from torch import nn

from pipeline.errors import AtlasError
from pipeline.models.spec import ModelSpec


class _EagerWhenHooked:
    """A block's ``forward``: compiled, unless one of ``watched`` carries a forward hook."""

    def __init__(self, eager: Callable, compiled: Callable, watched: list[nn.Module]):
        self.eager, self.compiled, self.watched = eager, compiled, watched

    def __call__(self, *args, **kwargs):
        if any(m._forward_hooks for m in self.watched):
            return self.eager(*args, **kwargs)
        return self.compiled(*args, **kwargs)


def block_path(act_path: str) -> str:
    """The block an FFN activation belongs to: ``blocks.3.mlp.act`` → ``blocks.3``."""
    return act_path.rsplit(".", 2)[0] if act_path.count(".") >= 2 else ""


def missing_compiler(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot generate code for ``device`` here, or None."""
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "compile on CUDA needs Triton (pip install triton), or leave compile off"
    if device.type == "cpu":
        compilers = [os.environ.get("CXX"), "g++", "c++", "clang++"]
        if not any(shutil.which(c) for c in compilers if c):
            return ("compile on the CPU needs a C++ compiler (g++ or clang++; Debian: "
                    "apt install g++), or leave compile off")
    return None


def compile_blocks(model: nn.Module, spec: ModelSpec, mode: str | None = None) -> int:
    """Give each FFN block a compiled ``forward``; returns the number of blocks."""
    param = next(model.parameters(), None)
    problem = missing_compiler(param.device if param is not None else torch.device("cpu"))
    if problem:
        raise AtlasError(problem)
    # One compiled variant per stage shape, grad mode and batch shape: a multi-stage model
    # (Swin, PiT, CoaT) passes Dynamo's default of 8 per code object and would fall back to
    # eager without a word.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    modules = dict(model.named_modules())
    acts_by_block: dict[str, list[nn.Module]] = {}
    for layer in spec.layers:
        acts = acts_by_block.setdefault(block_path(layer.module), [])
        if modules[layer.module] not in acts:
            acts.append(modules[layer.module])
    for path, acts in acts_by_block.items():
        block = modules[path]
        eager = block.forward
        block.forward = _EagerWhenHooked(eager, torch.compile(eager, mode=mode), acts)
    return len(acts_by_block)

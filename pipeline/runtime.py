"""Everything a stage needs, prepared once from an ``AtlasConfig``: model, spec, store, device."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline import distributed
from pipeline.compilation import compile_blocks
from pipeline.config import AtlasConfig
from pipeline.models import ModelSpec, create_model, spec_for
from pipeline.models.load import weights_id
from pipeline.store import AtlasStore


@dataclass
class Run:
    config: AtlasConfig
    model: nn.Module
    spec: ModelSpec
    store: AtlasStore
    device: torch.device
    weights_id: str

    @property
    def layers(self) -> list[int]:
        """Layer indices selected by the ``layers`` option (FFN layers; those of each other
        kind of the ``kinds`` option at the same blocks after them)."""
        return run_layers(self.config, self.spec)

    def units(self, layer: int) -> list[int]:
        """Unit indices of ``layer`` selected by the ``channels`` option."""
        return self.config.model.channels.resolve(self.spec.layers[layer].units)


def run_layers(config: AtlasConfig, spec: ModelSpec) -> list[int]:
    """The layer indices ``config`` selects of ``spec``: its ``layers`` (FFN layers) for each
    of its ``kinds``, kind by kind."""
    depths = config.model.layers.resolve(spec.depth)
    return [spec.layer_of(kind, d).index for kind in config.model.kind_list for d in depths]


def spec_kinds(config: AtlasConfig) -> tuple[str, ...]:
    """The kinds the spec describes: FFN alone, or all four as soon as one other is asked for
    (so each kind's layer indices stay the same whichever are run)."""
    from pipeline.models.spec import KINDS

    return ("ffn",) if config.model.kind_list == ("ffn",) else KINDS


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", distributed.local_rank())
        return torch.device("cpu")
    return torch.device(name)


def apply_fast_paths(model: nn.Module, spec: ModelSpec, use_compile: bool,
                     use_channels_last: bool) -> None:
    """The optional speed-ups: neither changes results beyond float rounding."""
    if use_channels_last:  # convolutions follow their weight's memory format
        model.to(memory_format=torch.channels_last)
    if use_compile:
        compile_blocks(model, spec)


def prepare(config: AtlasConfig) -> Run:
    """Load the model, describe it, and open (or start) the atlas directory."""
    distributed.init_from_env()
    m, rt = config.model, config.runtime
    device = resolve_device(rt.device)
    model = create_model(m.name, m.weights, m.kwargs, config.seed)
    spec = spec_for(model, m.name, m.kwargs, spec_kinds(config))
    model.to(device)
    apply_fast_paths(model, spec, rt.compile, rt.channels_last)
    store = AtlasStore(rt.out)
    wid = weights_id(m.weights, config.seed)
    if distributed.is_main():
        store.init(config.to_dict(), spec.to_dict(), wid)
    distributed.barrier()
    return Run(config, model, spec, store, device, wid)

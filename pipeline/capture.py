"""FFN activation hooks and the truncated forward.

``LayerCapture`` hooks the activation modules of the requested layers, keeps each layer's
patch-token activations as ``(batch, rows * cols, units)`` (prefix tokens dropped; a key,
query or value layer is its slice of the projection's output channels), and stops
the forward as soon as the deepest requested layer has fired: nothing past it is computed.

The hooks run eagerly: ``pipeline.compilation`` runs a block whose FFN carries a hook without
its compiled code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import nn

from pipeline.models.spec import FFNLayer


class _StopForward(Exception):
    pass


class LayerCapture:
    """Use as ``with LayerCapture(model, layers) as cap: acts = cap(x)``.

    ``reduce(layer, patch_acts)``, if given, is applied inside the hook the moment a layer
    fires (e.g. a mean over patches), so the full activation is never kept.
    """

    def __init__(self, model: nn.Module, layers: Sequence[FFNLayer], truncate: bool = True,
                 reduce: Callable[[FFNLayer, torch.Tensor], torch.Tensor] | None = None):
        self.model = model
        self.layers = list(layers)
        self.truncate = truncate
        self.reduce = reduce
        # module path -> call -> the layers read from that firing (query, key and value of
        # a fused qkv linear share one)
        self._by_path: dict[str, dict[int, list[FFNLayer]]] = {}
        for layer in self.layers:
            self._by_path.setdefault(layer.module, {}).setdefault(layer.call, []).append(layer)
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        self._calls: dict[str, int] = {}
        self._out: dict[int, torch.Tensor] = {}

    def __enter__(self) -> LayerCapture:
        modules = dict(self.model.named_modules())
        for path in self._by_path:
            self._hooks.append(modules[path].register_forward_hook(self._hook(path)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def _hook(self, path: str):
        wanted = self._by_path[path]

        def hook(_module: nn.Module, _inputs, output: torch.Tensor) -> None:
            call = self._calls.get(path, 0)
            self._calls[path] = call + 1
            for layer in wanted.get(call, ()):
                acts = patch_tokens(output, layer)
                self._out[layer.index] = acts if self.reduce is None else self.reduce(layer, acts)
            if wanted.get(call) and self.truncate and len(self._out) == len(self.layers):
                raise _StopForward

        return hook

    def __call__(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Run the (truncated) forward; returns {layer index: (B, rows*cols, units)}."""
        self._calls = {}
        self._out = {}
        with contextlib.suppress(_StopForward):
            self.model(x)
        out, self._out = self._out, {}
        return out


def patch_tokens(output: torch.Tensor, layer: FFNLayer) -> torch.Tensor:
    """``(B, tokens, C)`` or ``(B, H, W, C)`` activations to ``(B, rows*cols, units)`` patch
    tokens: prefix tokens dropped, and the layer's own channels of a shared projection.

    >>> from pipeline.models.spec import FFNLayer
    >>> key = FFNLayer(2, "blocks.0.attn.qkv", 0, 0, 1, (2, 2), 4, "key", 4, 0)
    >>> patch_tokens(torch.arange(60.).reshape(1, 5, 12), key)[0, 0].tolist()
    [16.0, 17.0, 18.0, 19.0]
    """
    output = output.flatten(1, 2) if output.dim() == 4 else output[:, layer.prefix_tokens:, :]
    if layer.offset or layer.units != output.shape[-1]:
        output = output[..., layer.offset:layer.offset + layer.units]
    return output

"""What the registry finds in a model: its FFN layers and input format (no torch needed).

``ModelSpec`` is saved in ``atlas.json``, so the site reads it without loading the model.

Units of other *kinds* (``--kinds``): the key, query or value channels of a block's attention
are layers too, appended after the FFN layers (kind by kind, in forward order), each a slice
``[offset, offset + units)`` of its projection's output (timm's fused ``qkv`` linear: query
``c``, key ``c + dim``, value ``c + 2 dim``). ``depth`` is the FFN layer of the same block, the
number a reader sees (``key 3`` is the key of the block whose FFN is layer 3).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

KINDS = ("ffn", "query", "key", "value")  # the unit kinds, FFN first


@dataclass(frozen=True)
class FFNLayer:
    """One FFN hidden layer: ``units`` channels after the activation of ``module``."""

    index: int  # flat index in forward order: the atlas' "layer"
    module: str  # dotted module path of the activation (hook point)
    call: int  # which firing of ``module`` within one forward (CoaT parallel blocks: 0..2)
    stage: int  # resolution stage (0 for single-stage models)
    prefix_tokens: int  # CLS / distillation tokens before the patch tokens
    grid: tuple[int, int]  # patch-token grid (rows, cols)
    units: int
    kind: str = "ffn"  # ffn | query | key | value
    offset: int = 0  # first output channel of ``module`` that belongs to this layer
    depth: int | None = None  # the FFN layer of the same block (None: ``index``, an FFN)

    @property
    def level(self) -> int:
        """The FFN layer of this layer's block: its own index for an FFN layer.

        >>> FFNLayer(5, "blocks.1.attn.qkv", 0, 0, 1, (4, 4), 96, "key", 96, 1).level
        1
        """
        return self.index if self.depth is None else self.depth

    def to_dict(self) -> dict:
        """The fields, those of an FFN layer's defaults left out (atlas.json as before kinds)."""
        d = asdict(self)
        if self.kind == KINDS[0]:
            for name in ("kind", "offset", "depth"):
                d.pop(name)
        return d


@dataclass
class ModelSpec:
    name: str
    family: str
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    layers: list[FFNLayer] = field(default_factory=list)
    parameters: int | None = None  # parameter count (None: not recorded, older atlases)
    pretrained_tag: str | None = None  # timm's pretrained tag of the weights' config

    @property
    def total_units(self) -> int:
        return sum(layer.units for layer in self.layers)

    @property
    def depth(self) -> int:
        """The number of FFN layers (the layers of kind ``ffn`` come first)."""
        return sum(1 for layer in self.layers if layer.kind == "ffn")

    @property
    def kinds(self) -> list[str]:
        """The kinds of unit this spec has layers of, in ``KINDS`` order."""
        have = {layer.kind for layer in self.layers}
        return [k for k in KINDS if k in have]

    def layer_of(self, kind: str, depth: int) -> FFNLayer:
        """The layer of ``kind`` in the block of FFN layer ``depth``."""
        for layer in self.layers:
            if layer.kind == kind and layer.level == depth:
                return layer
        raise KeyError(f"{self.name} has no {kind} layer at depth {depth}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = [layer.to_dict() for layer in self.layers]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        layers = [FFNLayer(**{**x, "grid": tuple(x["grid"])}) for x in d["layers"]]
        return cls(
            name=d["name"],
            family=d["family"],
            input_size=tuple(d["input_size"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            layers=layers,
            parameters=d.get("parameters"),
            pretrained_tag=d.get("pretrained_tag"),
        )

"""What the registry finds in a model: its FFN layers and input format (no torch needed).

``ModelSpec`` is saved in ``atlas.json``, so the site reads it without loading the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


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

    def to_dict(self) -> dict:
        return asdict(self)

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

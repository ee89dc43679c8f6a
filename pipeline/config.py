"""One ``AtlasConfig`` for every stage, with presets; saved in ``atlas.json`` beside the atlas."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from pipeline.errors import AtlasError
from pipeline.resources import bundled_model_dir

DEFAULT_DATASET = "hf:timm/imagenet-1k-wds"


@dataclass
class AtlasConfig:
    model: str = "vit_base_patch16_224"
    weights: str = "hub"  # hub | random | PATH
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # hf:<id>[:<config>] | imagefolder:<dir> | webdataset:<dir> | synthetic:<n>
    dataset: str = DEFAULT_DATASET
    split: str = "validation"
    out: str = "atlas"
    layers: str | None = None  # "2,5" | "0:6" | None = all
    channels: str | None = None  # "0:16" | None = all
    recipe: str = "default"  # default | paper
    steps: int | None = None  # overrides the recipe's step count
    topk: int = 16
    seed: int = 0
    batch_size: int = 0  # features per visualization batch; 0 = sized to the device
    index_batch_size: int = 64  # images per index batch
    workers: int = 2  # DataLoader workers for decoding
    max_images: int | None = None  # stop the index pass after this many images
    stats_images: int = 1024  # first N dataset images measured for spectrum and colour stats
    probe_images: int = 10000  # first N dataset images whose scores every unit keeps (profiles)
    labeler: str | None = None  # CLIP-Dissect labeler: demo | open_clip:<model>/<tag> | DIR
    concepts: str | None = None  # concepts file (one per line); None = common English words
    label_scale: float = 10.0  # SoftWPMI: softmax scale of the image-concept similarities
    label_topk: int = 100  # SoftWPMI: top probe images per unit
    label_lambda: float | None = None  # SoftWPMI prior weight; None = the labeler's (see label)
    quantiles: int = 8  # intervals between each unit's mean and max with examples (0 = none)
    quantile_k: int = 4  # examples kept per interval
    similar_k: int = 8  # most correlated units kept per unit and layer (relations)
    layer_map: str = "umap"  # 2-D map of each layer's units: umap | pca
    checkpoint_every: int = 50  # index batches between checkpoints
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    compile: bool = False  # regional torch.compile of the FFN blocks (visualization)
    channels_last: bool = False  # channels-last memory format for the model's convolutions

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AtlasConfig:
        """A saved config (``atlas.json``); keys of other versions are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def replace(self, **options: Any) -> AtlasConfig:
        """A copy with ``options`` changed; an unknown option is an error, not a new field.

        >>> AtlasConfig().replace(topk=4).topk
        4
        >>> AtlasConfig().replace(top_k=4)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        pipeline.errors.AtlasError: unknown option 'top_k' (did you mean: topk?)
        """
        import difflib

        names = [f.name for f in fields(self)]
        for key in options:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=3)
                hint = f" (did you mean: {', '.join(close)}?)" if close else ""
                raise AtlasError(f"unknown option {key!r}{hint}")
        return dataclasses.replace(self, **options)


def bundled_config(name: str, **overrides: Any) -> AtlasConfig:
    """An offline atlas of a model bundled in ``data/<name>`` (trained here on procedural
    images), indexed over 2,000 held-out synthetic images."""
    folder = bundled_model_dir(name)
    card_path = folder / "model.json"
    if not card_path.is_file():
        raise AtlasError(f"the bundled model {name!r} is missing ({card_path}); reinstall "
                         "from a full checkout")
    card = json.loads(card_path.read_text())
    cfg = AtlasConfig(
        model=card["model"],
        weights=str(folder / card["weights"]),
        model_kwargs=dict(card["model_kwargs"]),
        dataset="synthetic:2000",
        split="validation",
        out=f"atlas-{name}",
        topk=12,
        index_batch_size=128,
        workers=1,
        labeler="demo" if name == "demo" else None,
    )
    return cfg.replace(**overrides)


def demo_config(**overrides: Any) -> AtlasConfig:
    """The offline demo: the small ViT trained on procedural images shipped in ``data/demo``.

    >>> demo_config().dataset
    'synthetic:2000'
    """
    return bundled_config("demo", **overrides)


def second_config(**overrides: Any) -> AtlasConfig:
    """The second bundled model (``data/second``), kept for checking recipes off the demo."""
    return bundled_config("second", **overrides)


PRESETS = {"demo": demo_config, "second": second_config}


def parse_selection(spec: str | None, n: int, what: str) -> list[int]:
    """``None``/"all" → all of range(n); "2,5" → [2, 5]; "0:6" → 0..5; mixes like "0:3,7"."""
    if spec is None or spec.strip() in ("", "all"):
        return list(range(n))
    chosen: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if ":" in part:
                lo, _, hi = part.partition(":")
                start = int(lo) if lo else 0
                stop = int(hi) if hi else n
                chosen.extend(range(start, min(stop, n)))
                if start >= n or start < 0 or stop < start:
                    raise ValueError
            else:
                value = int(part)
                if not 0 <= value < n:
                    raise ValueError
                chosen.append(value)
        except ValueError:
            raise AtlasError(f"bad {what} '{spec}': expected e.g. '2,5' or '0:6' "
                             f"within 0..{n - 1}") from None
    return sorted(set(chosen))

"""The atlas's configuration: typed parts, one per stage that reads them, with presets.

``AtlasConfig`` is parsed once at the edge (the CLI, ``pipeline.build``, a saved
``atlas.json``) into frozen parts, each validated when it is made:

=============  ===================  ========================================================
part           class                read by
=============  ===================  ========================================================
``model``      ``ModelConfig``      every stage: the model, its weights, and which of its
                                    layers and units the atlas covers (``Selection``)
``index``      ``IndexConfig``      the index pass: the dataset and what it keeps per unit
``label``      ``LabelConfig``      the label stage (CLIP-Dissect's SoftWPMI)
``relations``  ``RelationsConfig``  the relations stage (similar units, layer maps)
``visualize``  ``VisualizeConfig``  the visualize stage (recipes, steps, batch size)
``runtime``    ``RuntimeConfig``    where and how it runs: ``out``, device, fast paths
``seed``       ``int``              the base seed of random weights, of every unit's
                                    visualization and of the layer maps
=============  ===================  ========================================================

The site stage reads only the atlas directory (``runtime.out``), so it has no part.

Every field is also a flat *option* with one name across the package (``topk``,
``index_batch_size``, ``label_lambda``, ...; ``OPTIONS`` maps each to its part and field):
``atlas.json`` saves the options flat (``to_dict``), ``from_dict`` reads them back and
``replace(**options)`` changes them, an unknown option being an error.

>>> c = demo_config(layers="0:2", topk=4)
>>> c.model.layers.resolve(4), c.index.topk, c.to_dict()["layers"]
([0, 1], 4, '0:2')
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from pipeline.errors import AtlasError
from pipeline.resources import bundled_model_dir

DEFAULT_DATASET = "hf:timm/imagenet-1k-wds"
LAYER_MAPS = ("umap", "pca")


# -- selections -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Selection:
    """Indices chosen out of ``range(n)``: ``"2,5"``, ``"0:6"``, mixes such as ``"0:3,7"``,
    or all of them (``None``, ``""`` or ``"all"``).

    The text is parsed once, when the selection is made (bad syntax or a negative index is
    an error then), and resolved against a size ``n`` once per size (an index beyond it is
    an error then; a range is cut at ``n``). ``text`` is the source as given, which is what
    ``atlas.json`` saves; ``what`` names the option in error messages.

    >>> s = Selection("0:3,7", "layers")
    >>> s.resolve(10), s.text, Selection("0:6").resolve(4)
    ([0, 1, 2, 7], '0:3,7', [0, 1, 2, 3])
    >>> s.resolve(7)
    Traceback (most recent call last):
    ...
    pipeline.errors.AtlasError: bad layers '0:3,7': expected e.g. '2,5' or '0:6' within 0..6
    >>> Selection.parse([5, 2], "channels").text, Selection().resolve(3)
    ('5,2', [0, 1, 2])
    """

    text: str | None = None
    what: str = field(default="selection", compare=False)
    # parsed once: a single index as an int, a range as (start, stop or None for "to the end")
    items: tuple[int | tuple[int, int | None], ...] | None = field(
        init=False, compare=False, repr=False)
    _resolved: dict[int, tuple[int, ...]] = field(
        init=False, compare=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", self._parse())

    @classmethod
    def parse(cls, value: Selection | str | int | Iterable[int] | None,
              what: str = "selection") -> Selection:
        """A ``Selection`` from its text, one index, indices, or another selection.

        >>> Selection.parse(3, "layers").resolve(5), Selection.parse(None).text is None
        ([3], True)
        """
        if isinstance(value, Selection):
            return value if value.what == what else cls(value.text, what)
        if value is None or isinstance(value, str):
            return cls(value, what)
        if isinstance(value, int):
            return cls(str(value), what)
        return cls(",".join(str(int(v)) for v in value), what)

    @property
    def is_all(self) -> bool:
        """Whether it selects everything (no text, ``""`` or ``"all"``)."""
        return self.items is None

    def _error(self, n: int | None = None) -> AtlasError:
        within = "" if n is None else f" within 0..{n - 1}"
        return AtlasError(f"bad {self.what} '{self.text}': expected e.g. '2,5' or '0:6'{within}",
                          option=self.what)

    def _parse(self) -> tuple[int | tuple[int, int | None], ...] | None:
        if self.text is None or self.text.strip() in ("", "all"):
            return None
        items: list[int | tuple[int, int | None]] = []
        for part in self.text.split(","):
            part = part.strip()
            try:
                if ":" in part:
                    lo, _, hi = part.partition(":")
                    start = int(lo) if lo else 0
                    stop = int(hi) if hi else None
                    if start < 0 or (stop is not None and stop < start):
                        raise ValueError
                    items.append((start, stop))
                else:
                    value = int(part)
                    if value < 0:
                        raise ValueError
                    items.append(value)
            except ValueError:
                raise self._error() from None
        return tuple(items)

    def resolve(self, n: int) -> list[int]:
        """The selected indices of ``range(n)``, sorted, each once."""
        if n not in self._resolved:
            if self.items is None:
                chosen: Iterable[int] = range(n)
            else:
                picked: set[int] = set()
                for item in self.items:
                    if isinstance(item, int):
                        if item >= n:
                            raise self._error(n)
                        picked.add(item)
                    else:
                        start, stop = item
                        if start >= n:
                            raise self._error(n)
                        picked.update(range(start, n if stop is None else min(stop, n)))
                chosen = sorted(picked)
            self._resolved[n] = tuple(chosen)
        return list(self._resolved[n])

    def __str__(self) -> str:
        return "all" if self.text is None else self.text


def parse_selection(spec: str | None, n: int, what: str) -> list[int]:
    """``Selection(spec, what).resolve(n)``, for a one-off selection.

    >>> parse_selection("0:6", 4, "layers")
    [0, 1, 2, 3]
    """
    return Selection(spec, what).resolve(n)


# -- the parts --------------------------------------------------------------------------------
def _option(default: Any = dataclasses.MISSING, name: str | None = None, **kwargs: Any) -> Any:
    """A part's field whose flat option name is ``name`` (default: the field's own)."""
    metadata = {"option": name} if name else {}
    return field(default=default, metadata=metadata, **kwargs)


def _option_name(f: dataclasses.Field) -> str:
    return f.metadata.get("option", f.name)


class _Part:
    """What every part shares: range checks in ``__post_init__``, by option name."""

    at_least_one: tuple[str, ...] = ()
    non_negative: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            name = _option_name(f)
            if f.name in self.at_least_one and value is not None and value < 1:
                raise AtlasError(f"{name} must be at least 1, not {value}", option=name)
            if f.name in self.non_negative and value < 0:
                raise AtlasError(f"{name} must not be negative, not {value}", option=name)


@dataclass(frozen=True)
class ModelConfig(_Part):
    """The model, its weights, and which of its FFN layers and units the atlas covers.

    ``weights``: ``hub`` (timm's pretrained), ``random`` (seeded init) or a checkpoint path;
    ``kwargs`` go to ``timm.create_model``; ``layers`` and ``channels`` are ``Selection`` s
    (text is parsed on the way in); ``kinds``: the kinds of unit, ``ffn,key,query,value``
    text (default ``ffn``), kept in that order; ``layers`` counts FFN layers, and a
    key/query/value layer is selected with the FFN layer of its block.

    >>> m = ModelConfig("vit_tiny_patch16_224", "random", {"depth": 2}, layers="1")
    >>> m.layers.resolve(2), m.channels.is_all, m.kinds
    ([1], True, 'ffn')
    >>> ModelConfig(kinds="value,ffn").kind_list
    ('ffn', 'value')
    """

    name: str = _option("vit_base_patch16_224", "model")
    weights: str = "hub"
    kwargs: dict[str, Any] = _option(dataclasses.MISSING, "model_kwargs", default_factory=dict)
    layers: Selection = field(default_factory=lambda: Selection(None, "layers"))  # "2,5", "0:6"
    channels: Selection = field(default_factory=lambda: Selection(None, "channels"))  # "0:16"
    kinds: str = "ffn"  # "ffn,key,query,value"

    @property
    def kind_list(self) -> tuple[str, ...]:
        """The kinds, checked, in ``ffn, query, key, value`` order."""
        from pipeline.models.spec import KINDS

        names = [k.strip() for k in self.kinds.split(",") if k.strip()]
        return tuple(k for k in KINDS if k in names) or ("ffn",)

    def __post_init__(self) -> None:
        from pipeline.models.spec import KINDS

        if not isinstance(self.kinds, str):
            object.__setattr__(self, "kinds", ",".join(self.kinds))
        bad = [k for k in self.kinds.split(",") if k.strip() and k.strip() not in KINDS]
        if bad:
            raise AtlasError(f"unknown kind '{bad[0].strip()}': kinds are {', '.join(KINDS)}",
                             option="kinds")
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        object.__setattr__(self, "layers", Selection.parse(self.layers, "layers"))
        object.__setattr__(self, "channels", Selection.parse(self.channels, "channels"))
        super().__post_init__()


@dataclass(frozen=True)
class IndexConfig(_Part):
    """The dataset and the index pass: what it keeps per unit and how it streams.

    ``dataset``: ``hf:<id>[:<config>]`` | ``imagefolder:<dir>`` | ``webdataset:<dir>`` |
    ``synthetic:<n>``. ``stats_images``: the first N images measured for the spectrum and
    colour statistics; ``probe_images``: the first N whose scores every unit keeps (the
    label and relations stages' probe set); ``quantiles`` intervals between each unit's mean and
    max keep ``quantile_k`` examples each (0: none).

    >>> IndexConfig(topk=0)
    Traceback (most recent call last):
    ...
    pipeline.errors.AtlasError: topk must be at least 1, not 0
    >>> IndexConfig(quantiles=0, quantile_k=4).kept_per_quantile
    0
    """

    at_least_one = ("topk", "batch_size", "checkpoint_every", "max_images")
    non_negative = ("workers", "stats_images", "probe_images", "quantiles", "quantile_k")

    dataset: str = DEFAULT_DATASET
    split: str = "validation"
    topk: int = 16  # dataset examples kept per unit
    batch_size: int = _option(64, "index_batch_size")  # images per index batch
    workers: int = 2  # DataLoader workers for decoding
    max_images: int | None = None  # stop the pass after this many images
    stats_images: int = 1024
    probe_images: int = 10000
    quantiles: int = 8
    quantile_k: int = 4
    checkpoint_every: int = 50  # batches between checkpoints
    masks: str | None = None  # object masks: a PNG per image at its id's relative path

    @property
    def kept_per_quantile(self) -> int:
        """Examples kept per quantile interval (0: no quantile examples)."""
        return self.quantile_k if self.quantiles > 0 else 0


@dataclass(frozen=True)
class LabelConfig(_Part):
    """CLIP-Dissect's labels: the labeler, the concepts and SoftWPMI's parameters.

    ``labeler``: ``demo`` | ``self`` | ``open_clip:<model>/<pretrained>`` | a directory, or
    None (no labels); ``concepts``: a file, one per line (None: common English words);
    ``scale``, ``topk``, ``lam``: the softmax scale, the top probe images per unit and the
    prior's weight λ (None: the labeler's own default).

    >>> LabelConfig(labeler="demo").lam is None
    True
    >>> LabelConfig(scale=0)
    Traceback (most recent call last):
    ...
    pipeline.errors.AtlasError: label_scale must be positive, not 0
    """

    at_least_one = ("topk",)

    labeler: str | None = None
    concepts: str | None = None
    scale: float = _option(10.0, "label_scale")
    topk: int = _option(100, "label_topk")
    lam: float | None = _option(None, "label_lambda")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scale <= 0:
            raise AtlasError(f"label_scale must be positive, not {self.scale}",
                             option="label_scale")


@dataclass(frozen=True)
class RelationsConfig(_Part):
    """The relations stage: ``similar_k`` most correlated units kept per unit and layer, and how
    each layer's units are laid out in 2-D (``layer_map``: umap | pca).

    >>> RelationsConfig(layer_map="tsne")
    Traceback (most recent call last):
    ...
    pipeline.errors.AtlasError: layer_map must be umap or pca, not 'tsne'
    """

    at_least_one = ("similar_k",)

    similar_k: int = 8
    layer_map: str = "umap"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layer_map not in LAYER_MAPS:
            raise AtlasError(f"layer_map must be {' or '.join(LAYER_MAPS)}, not "
                             f"{self.layer_map!r}", option="layer_map")


@dataclass(frozen=True)
class VisualizeConfig(_Part):
    """The visualize stage: ``recipe`` (names or JSON files, comma-separated), ``steps``
    overriding each recipe's, ``batch_size`` features per batch (0: sized to the device).

    ``judge``: the model that measures each image's recognisability (a labeler SPEC, or
    ``cnn:demo`` / ``cnn:PATH``, or ``grey:SPEC``: that judge shown every image in grey; None:
    the atlas's labeler, if any; ``none``: not measured),
    over ``judge_trials`` 2-AFC trials per unit.

    ``diversity``: images per unit, optimized together with each recipe's diversity term
    (``Recipe.diversity_weight``; Olah et al. 2017); 1: one image per unit.

    >>> VisualizeConfig(recipe="default,paper", steps=32).steps
    32
    >>> VisualizeConfig(judge="cnn:demo").judge_spec(labeler=None)
    'cnn:demo'
    >>> VisualizeConfig(diversity=3).diversity
    3
    """

    at_least_one = ("steps", "judge_trials", "diversity")
    non_negative = ("batch_size",)

    recipe: str = "default"
    steps: int | None = None
    batch_size: int = 0
    judge: str | None = None
    judge_trials: int = 20
    diversity: int = 1

    def judge_spec(self, labeler: str | None) -> str | None:
        """The judge this config asks for (None: none)."""
        spec = self.judge if self.judge is not None else labeler
        return None if spec in (None, "", "none") else spec


@dataclass(frozen=True)
class RuntimeConfig(_Part):
    """Where and how a run goes, none of which changes its results beyond float rounding:
    ``out`` (the atlas directory), ``device`` (auto | cpu | cuda | cuda:N), ``compile``
    (regional ``torch.compile`` of the FFN blocks) and ``channels_last``; ``site_url``: the
    absolute URL the site will be served at (canonical links and absolute permalinks; None: the
    site has no canonical address).

    >>> RuntimeConfig(out="atlas-x").device
    'auto'
    >>> RuntimeConfig(site_url="https://org.github.io/atlas").site_url
    'https://org.github.io/atlas/'
    """

    out: str = "atlas"
    device: str = "auto"
    compile: bool = False
    channels_last: bool = False
    site_url: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.site_url == "":
            object.__setattr__(self, "site_url", None)
        if self.site_url is not None:
            parts = urlsplit(self.site_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise AtlasError(f"site_url must be an absolute http(s) URL such as "
                                 f"https://org.github.io/atlas/, not {self.site_url!r}",
                                 option="site_url")
            if not self.site_url.endswith("/"):
                object.__setattr__(self, "site_url", self.site_url + "/")


PARTS = ("model", "index", "label", "relations", "visualize", "runtime")


@dataclass(frozen=True)
class AtlasConfig:
    """Every stage's configuration, in typed parts (see the module docstring).

    Make one with ``AtlasConfig()`` and ``replace`` (flat options), from a saved flat dict
    with ``from_dict``, or from a preset (``demo_config``); ``dataclasses.replace`` swaps a
    whole part.

    >>> c = AtlasConfig().replace(model="vit_tiny_patch16_224", weights="random", topk=4)
    >>> c.model.name, c.index.topk, c.to_dict()["topk"]
    ('vit_tiny_patch16_224', 4, 4)
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    label: LabelConfig = field(default_factory=LabelConfig)
    relations: RelationsConfig = field(default_factory=RelationsConfig)
    visualize: VisualizeConfig = field(default_factory=VisualizeConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The flat options, as ``atlas.json`` saves them (selections as their text).

        >>> AtlasConfig().to_dict()["index_batch_size"]
        64
        """
        out: dict[str, Any] = {}
        for name, (part, attr) in OPTIONS.items():
            value = getattr(self if part is None else getattr(self, part), attr)
            if isinstance(value, Selection):
                value = value.text
            elif isinstance(value, dict):
                value = dict(value)
            out[name] = value
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AtlasConfig:
        """A saved config (``atlas.json``'s flat options); keys of other versions are ignored.

        >>> AtlasConfig.from_dict({"layers": "0:2", "no_such_option": 1}).model.layers.text
        '0:2'
        """
        return cls().replace(**{k: v for k, v in d.items() if k in OPTIONS})

    def replace(self, **options: Any) -> AtlasConfig:
        """A copy with the flat ``options`` changed (each part checked again); an unknown
        option is an error, not a new field.

        >>> AtlasConfig().replace(topk=4).index.topk
        4
        >>> AtlasConfig().replace(top_k=4)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        pipeline.errors.AtlasError: unknown option 'top_k' (did you mean: topk?)
        """
        changes: dict[str | None, dict[str, Any]] = {}
        for key, value in options.items():
            if key not in OPTIONS:
                close = difflib.get_close_matches(key, list(OPTIONS), n=3)
                hint = f" (did you mean: {', '.join(close)}?)" if close else ""
                raise AtlasError(f"unknown option {key!r}{hint}", option=key)
            part, attr = OPTIONS[key]
            changes.setdefault(part, {})[attr] = value
        top = changes.pop(None, {})
        parts = {part: dataclasses.replace(getattr(self, part), **values)
                 for part, values in changes.items()}
        return dataclasses.replace(self, **parts, **top)


def _options() -> dict[str, tuple[str | None, str]]:
    table: dict[str, tuple[str | None, str]] = {}
    for f in fields(AtlasConfig):
        if f.name not in PARTS:
            table[f.name] = (None, f.name)
            continue
        for g in fields(f.default_factory):  # type: ignore[arg-type]
            if g.init:
                table[_option_name(g)] = (f.name, g.name)
    return table


OPTIONS: dict[str, tuple[str | None, str]] = _options()
"""Every flat option → (its part, or None for a top-level field; the field's name)."""


# -- presets ----------------------------------------------------------------------------------
def bundled_config(name: str, **overrides: Any) -> AtlasConfig:
    """An offline atlas of a model bundled in ``data/<name>`` (trained here on procedural
    images), indexed over 2,000 held-out synthetic images.

    >>> bundled_config("second").model.kwargs["depth"]
    6
    """
    folder = bundled_model_dir(name)
    card_path = folder / "model.json"
    if not card_path.is_file():
        raise AtlasError(f"the bundled model {name!r} is missing ({card_path}); reinstall "
                         "from a full checkout")
    card = json.loads(card_path.read_text())
    cfg = AtlasConfig().replace(
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

    >>> demo_config().index.dataset
    'synthetic:2000'
    """
    return bundled_config("demo", **overrides)


def second_config(**overrides: Any) -> AtlasConfig:
    """The second bundled model (``data/second``), kept for checking recipes off the demo."""
    return bundled_config("second", **overrides)


PRESETS = {"demo": demo_config, "second": second_config}

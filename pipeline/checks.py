"""Checks of a whole configuration before anything is loaded or written.

``check_config`` runs in seconds: the model's shape on the meta device (no weights), the
layer and unit selections against it, the weights file, then each stage's own cheap check of
its options (``check_options`` of the index and visualize stages: the dataset opened, not
read; the recipes, and the index they need; ``check_label_options``: the labeler and
concepts). What needs no model or file (the numeric options, the selections'
syntax, unknown options) was checked when the configuration's parts were made
(``pipeline.config``). A typo then costs seconds, not the hours of the stages before the
one that would have tripped on it.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import AtlasConfig
from pipeline.errors import AtlasError
from pipeline.store import AtlasStore


def check_config(config: AtlasConfig, *, dataset: bool = True, recipes: bool = True,
                 store: AtlasStore | None = None) -> None:
    """Raise ``AtlasError`` for the first problem found in ``config`` (see the module).
    ``dataset``, ``recipes``: check the index's and visualize's options; ``store``: the
    atlas visualize will read an index from (when no index stage runs before it).

    >>> from pipeline.config import demo_config
    >>> check_config(demo_config(layers="0:2"))
    >>> check_config(demo_config(layers="7"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pipeline.errors.AtlasError: bad layers '7': expected e.g. '2,5' or '0:6' within 0..3
    """
    model = config.model
    if model.weights not in ("hub", "random") and not Path(model.weights).is_file():
        raise AtlasError(f"weights file {model.weights} does not exist (weights: hub, random "
                         "or a checkpoint file)", option="weights")
    from pipeline.models.load import meta_spec
    from pipeline.runtime import run_layers, spec_kinds

    spec = meta_spec(model.name, model.kwargs, spec_kinds(config))
    for i in run_layers(config, spec):
        model.channels.resolve(spec.layers[i].units)
    if recipes:
        from pipeline.visualize.stage import check_options

        check_options(config.visualize, store)
    if config.label.labeler or config.label.concepts:
        from pipeline.label.stage import check_label_options

        check_label_options(config.label, model.name)
    if dataset:
        from pipeline.index.stage import check_options

        check_options(config.index, spec.input_size[-1])

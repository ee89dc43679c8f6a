"""Checks of a whole configuration before anything is loaded or written.

``check_config`` runs in seconds: the model's shape on the meta device (no weights), the
layer and unit selections against it, the recipes, the dataset (opened, not read: a missing
folder, an unknown or gated hub id, an unreachable hub are reported here), the weights file,
the labeler and concepts. What needs no model or file (the numeric options, the selections'
syntax, unknown options) was checked when the configuration's parts were made
(``pipeline.config``). A typo then costs seconds, not the hours of the stages before the
one that would have tripped on it.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import AtlasConfig, ModelConfig
from pipeline.errors import AtlasError


def _meta_spec(model: ModelConfig):
    import timm
    import torch

    from pipeline.models import spec_for
    from pipeline.models.load import check_model_name

    check_model_name(model.name)
    try:
        with torch.device("meta"):
            net = timm.create_model(model.name, pretrained=False, **model.kwargs)
    except TypeError as exc:
        raise AtlasError(f"model_kwargs {model.kwargs} do not fit '{model.name}': {exc}",
                         option="model_kwargs") from None
    return spec_for(net, model.name, model.kwargs)


def check_config(config: AtlasConfig, *, dataset: bool = True, recipes: bool = True) -> None:
    """Raise ``AtlasError`` for the first problem found in ``config`` (see the module).

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
    spec = _meta_spec(model)
    for i in model.layers.resolve(len(spec.layers)):
        model.channels.resolve(spec.layers[i].units)
    if recipes:
        from pipeline.visualize.recipe import get_recipes

        vis = config.visualize
        try:
            get_recipes(vis.recipe, vis.steps)
        except (ValueError, OSError) as exc:
            raise AtlasError(f"bad recipe {vis.recipe!r}: {exc}", option="recipe") from None
    if config.label.labeler or config.label.concepts:
        from pipeline.label.stage import check_label_options

        check_label_options(config.label, model.name)
    if dataset:
        from pipeline.data.sources import open_source

        index = config.index
        open_source(index.dataset, index.split, image_size=spec.input_size[-1])

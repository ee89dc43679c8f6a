"""Checks of a whole configuration before anything is loaded or written.

``check_config`` runs in seconds: the model's shape on the meta device (no weights), the
layer and unit selections against it, the recipes, the dataset (opened, not read: a missing
folder, an unknown or gated hub id, an unreachable hub are reported here), the weights file,
the labeler and concepts, and the numeric options. A typo then costs seconds, not the hours
of the stages before the one that would have tripped on it.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import AtlasConfig, parse_selection
from pipeline.errors import AtlasError


def _meta_spec(config: AtlasConfig):
    import timm
    import torch

    from pipeline.models import spec_for
    from pipeline.models.load import check_model_name

    check_model_name(config.model)
    try:
        with torch.device("meta"):
            model = timm.create_model(config.model, pretrained=False, **config.model_kwargs)
    except TypeError as exc:
        raise AtlasError(f"model_kwargs {config.model_kwargs} do not fit '{config.model}': "
                         f"{exc}") from None
    return spec_for(model, config.model, config.model_kwargs)


def check_config(config: AtlasConfig, *, dataset: bool = True, recipes: bool = True) -> None:
    """Raise ``AtlasError`` for the first problem found in ``config`` (see the module).

    >>> from pipeline.config import demo_config
    >>> check_config(demo_config(layers="0:2"))
    >>> check_config(demo_config(layers="7"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pipeline.errors.AtlasError: bad layers '7': expected e.g. '2,5' or '0:6' within 0..3
    """
    for name in ("topk", "index_batch_size", "checkpoint_every", "similar_k"):
        if getattr(config, name) < 1:
            raise AtlasError(f"{name} must be at least 1, not {getattr(config, name)}")
    for name in ("probe_images", "stats_images", "workers", "batch_size", "quantiles",
                 "quantile_k"):
        if getattr(config, name) < 0:
            raise AtlasError(f"{name} must not be negative, not {getattr(config, name)}")
    if config.layer_map not in ("umap", "pca"):
        raise AtlasError(f"layer_map must be umap or pca, not {config.layer_map!r}")
    if config.max_images is not None and config.max_images < 1:
        raise AtlasError(f"max_images must be at least 1, not {config.max_images}")
    if config.weights not in ("hub", "random") and not Path(config.weights).is_file():
        raise AtlasError(f"weights file {config.weights} does not exist (weights: hub, random "
                         "or a checkpoint file)")
    spec = _meta_spec(config)
    layers = parse_selection(config.layers, len(spec.layers), "layers")
    for i in layers:
        parse_selection(config.channels, spec.layers[i].units, "channels")
    if recipes:
        from pipeline.visualize.recipe import get_recipes

        try:
            get_recipes(config.recipe, config.steps)
        except (ValueError, OSError) as exc:
            raise AtlasError(f"bad recipe {config.recipe!r}: {exc}") from None
    if config.labeler or config.concepts:
        from pipeline.label.stage import check_label_options

        check_label_options(config)
    if dataset:
        from pipeline.data.sources import open_source

        open_source(config.dataset, config.split, image_size=spec.input_size[-1])

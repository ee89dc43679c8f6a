"""ViT Feature Atlas: feature visualizations, dataset top-k and a static atlas for ViT FFN units.

From Python (see the README's "From Python")::

    import pipeline
    images, activations = pipeline.render(model, "blocks.4.mlp.act", [0, 1, 2], recipe="fast")
    top = pipeline.index_topk(model, ["blocks.4.mlp.act"], loader, k=16)
    record = pipeline.open("atlas-demo").feature(3, 17)   # what feature.json holds
    table = pipeline.open("https://example.org/atlas/latest/").table(["layer", "unit", "z"])
    atlas = pipeline.build(out="atlas-x", layers="0:2")   # the CLI's build, from Python

Names are imported on first use, so ``import pipeline`` stays cheap (no torch).
"""

from pipeline.version import ATLAS_VERSION, __version__

__all__ = ["ATLAS_VERSION", "Atlas", "LayerTopK", "__version__", "build", "describe_model",
           "ffn_layer", "frozen", "index_topk", "open", "render"]

_API = {"render", "index_topk", "build", "describe_model", "ffn_layer", "frozen", "LayerTopK"}


def __getattr__(name: str):
    if name in _API:
        from pipeline import api

        return getattr(api, name)
    if name in ("open", "Atlas"):
        from pipeline import reader

        return getattr(reader, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")

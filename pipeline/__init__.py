"""ViT Feature Atlas: feature visualizations, dataset top-k and a static atlas for ViT FFN units."""

__version__ = "0.2.0"
ATLAS_VERSION = __version__

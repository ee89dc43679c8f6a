"""The package's version, in a module of its own: every module that records it (the store's
manifest, feature pages) imports it from here, never from the package face.

>>> from pipeline.version import ATLAS_VERSION
>>> ATLAS_VERSION == __version__
True
"""

__version__ = "0.2.0"
ATLAS_VERSION = __version__  # written into atlas.json and every feature.json

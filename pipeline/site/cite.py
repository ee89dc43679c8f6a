"""Citation of one feature page: a stable key, the permalink and a BibTeX entry."""

from __future__ import annotations

import os
import re
import time

_BIBTEX_SPECIAL = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "_": r"\_", "&": r"\&", "%": r"\%",
    "$": r"\$", "#": r"\#", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def bibtex_escape(value: str) -> str:
    return "".join(_BIBTEX_SPECIAL.get(ch, ch) for ch in value)


def cite_key(slug: str, layer: int, unit: int) -> str:
    return re.sub(r"[^A-Za-z0-9_.:-]", "-", f"vitatlas:{slug}:L{layer}:U{unit}")


def build_year() -> int:
    """The year of this build (``SOURCE_DATE_EPOCH`` honoured for reproducible builds)."""
    return time.gmtime(int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))).tm_year


def is_absolute(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL (a canonical address), not a site path.

    >>> is_absolute("https://org.github.io/atlas/m/0/3/"), is_absolute("1.0/m/0/3/")
    (True, False)
    """
    return re.match(r"^https?://[^/]", url) is not None


def bibtex(*, key: str, model: str, weights: str, layer: int, module: str, unit: int,
           atlas_version: str, url: str, year: int) -> str:
    """A ``@misc`` entry naming model, weights, layer, unit and atlas version; ``url``: the
    absolute permalink, or (a site without a known address) the page's path from the site
    root, which the entry says is no canonical address.

    >>> entry = bibtex(key="k", model="m", weights="w", layer=0, module="b.mlp.act", unit=3,
    ...                atlas_version="1", url="m/0/3/", year=2025)
    >>> "texttt{m/0/3/} of a ViT Feature Atlas site without a canonical address" in entry
    True
    """
    e = bibtex_escape
    where = (f"\\url{{{url}}}" if is_absolute(url) else
             f"Page \\texttt{{{e(url)}}} of a ViT Feature Atlas site without a canonical address")
    return (
        f"@misc{{{key},\n"
        f"  title        = {{Unit {unit} of FFN layer {layer} ({e(module)}) of {{{e(model)}}}}},\n"
        f"  author       = {{{{ViT Feature Atlas}}}},\n"
        f"  howpublished = {{{where}}},\n"
        f"  note         = {{Model {e(model)}, weights {e(weights)}, layer {layer}, "
        f"unit {unit}; ViT Feature Atlas version {e(atlas_version)}}},\n"
        f"  year         = {{{year}}},\n"
        f"}}"
    )

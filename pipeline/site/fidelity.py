"""How far to trust a visualization, in words: the fidelity line and its cautions.

The visualize stage measures, per unit and recipe (``store.vis_results(...)[unit]["fidelity"]``):

- ``vs_best_example``: the visualization's activation / the unit's best dataset example's score
  (above 1: the image excites the unit more than any image of the dataset);
- ``z``: ``(activation - unit mean) / unit std`` over the dataset;
- ``z_rank`` of ``of``: the unit's rank in its layer by that z-score on its own visualization
  (1: no other unit of the layer is excited more, relative to its own statistics).

A visualization is **trusted** when it beats its best dataset example (``vs_best_example >= 1``)
and ranks near the top of its layer (``z_rank <= near_top(of)``: the top 3, or the top 1% in
layers of more than 300 units). Every part may be missing (not measured): a missing part is
neither shown nor cautioned about, but a visualization is trusted only if both are measured.

The evaluate stage adds ``recognisability`` (``pipeline.site.recognisability``): kept, checked,
only where it was measured.
"""

from __future__ import annotations

import math
from typing import Any

from pipeline.site import recognisability

TOP_RANKS = 3  # "near the top": rank <= max(TOP_RANKS, ceil(TOP_FRACTION * of))
TOP_FRACTION = 0.01


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def _count(x: Any) -> int | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return int(x)


def clean(fidelity: Any) -> dict[str, Any] | None:
    """The stage's ``fidelity`` dict with non-finite or missing parts as ``None``, rounded to 6
    significant digits, with its ``recognisability`` (``recognisability.clean``) where it was
    measured; ``None`` when nothing was measured.

    >>> clean({"vs_best_example": 2.1, "z": float("nan"), "z_rank": 1, "of": 96})
    {'vs_best_example': 2.1, 'z': None, 'z_rank': 1, 'of': 96}
    """
    if not isinstance(fidelity, dict):
        return None
    vs, z = _finite(fidelity.get("vs_best_example")), _finite(fidelity.get("z"))
    rank, of = _count(fidelity.get("z_rank")), _count(fidelity.get("of"))
    rec = recognisability.clean(fidelity.get("recognisability"))
    if vs is None and z is None and rank is None and rec is None:
        return None
    out = {"vs_best_example": None if vs is None else float(f"{vs:.6g}"),
           "z": None if z is None else float(f"{z:.6g}"),
           "z_rank": rank, "of": of}
    if rec is not None:
        out["recognisability"] = rec
    return out


def near_top(of: int | None) -> int:
    """The worst rank that still counts as near the top of a layer of ``of`` units."""
    return max(TOP_RANKS, math.ceil(TOP_FRACTION * of)) if of else TOP_RANKS


def trusted(fidelity: dict[str, Any] | None) -> bool:
    """Beats its best dataset example and ranks near the top of its layer (both measured)."""
    if fidelity is None:
        return False
    vs, rank = fidelity.get("vs_best_example"), fidelity.get("z_rank")
    return vs is not None and rank is not None and vs >= 1 and rank <= near_top(fidelity["of"])


def ratio(x: float) -> str:
    """``0.43``, ``2.1``, ``12.3``, ``1,234``: two significant digits below 1, one decimal up to
    100."""
    if x < 1:
        return f"{x:.2g}"
    return f"{x:.1f}" if x < 100 else f"{x:,.0f}"


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``11th``, ``22nd``.

    >>> [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)]
    ['1st', '2nd', '3rd', '4th', '11th', '12th', '13th', '21st', '22nd', '101st']
    """
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n:,}{suffix}"


def rank_words(rank: int, of: int | None, tied: int = 1) -> str:
    """A z-rank in words; ``tied``: units of the layer sharing the rank (ties share the best
    rank).

    >>> rank_words(1, 384), rank_words(1, 384, tied=12)
    ('rank 1 of 384', 'tied 1st of 384 (with 11 other units)')
    """
    of_text = f" of {of:,}" if of else ""
    if tied > 1:
        others = tied - 1
        units = "unit" if others == 1 else "units"
        return f"tied {ordinal(rank)}{of_text} (with {others:,} other {units})"
    return f"rank {rank:,}{of_text}"


def line(fidelity: dict[str, Any] | None, images_seen: int | None, tied: int = 1) -> str:
    """``"2.1× the best of 2,000 dataset images · rank 1 of 96 in its layer by z-score
    (z = 4.2)"``; empty when nothing was measured. ``tied``: the units of the layer that share
    the rank (``"tied 1st of 96 (with 3 other units)"``)."""
    if fidelity is None:
        return ""
    parts = []
    vs, z, rank, of = (fidelity.get(k) for k in ("vs_best_example", "z", "z_rank", "of"))
    if vs is not None:
        best = (f"the best of {images_seen:,} dataset images" if images_seen
                else "the unit's best dataset image")
        parts.append(f"{ratio(vs)}× {best}")
    if rank is not None:
        ranked = rank_words(rank, of, tied) + " in its layer by z-score"
        parts.append(ranked + (f" (z = {z:.1f})" if z is not None else ""))
    elif z is not None:
        parts.append(f"z = {z:.1f} over the dataset")
    return " · ".join(parts)


def cautions(fidelity: dict[str, Any] | None) -> list[str]:
    """Why not to take the image at face value (empty: no measured reason); the
    recognisability's cautions last."""
    if fidelity is None:
        return []
    out = []
    vs, rank, of = (fidelity.get(k) for k in ("vs_best_example", "z_rank", "of"))
    if vs is not None and vs < 1:
        out.append("Weaker than the unit's best dataset image: the dataset examples below "
                   "show better what drives this unit than this image does.")
    if rank is not None and rank > near_top(of):
        others = rank - 1
        out.append(f"Not selective: {others:,} other units of this layer respond more to this "
                   "image (by z-score), so it may show what the layer likes in general "
                   "rather than this unit.")
    return out + recognisability.cautions(fidelity.get("recognisability"))


def short(fidelity: dict[str, Any] | None, tied: int = 1) -> str:
    """A compact form for tooltips: ``"2.1× best · z-rank 1/96"``; when ``tied`` units of the
    layer share the rank, the ranks they span: ``"z-rank 1–3/96 (3 tied)"``.

    >>> short({"vs_best_example": 2.1, "z_rank": 1, "of": 96}, tied=3)
    '2.1× best · z-rank 1–3/96 (3 tied)'
    """
    if fidelity is None:
        return ""
    parts = []
    if fidelity.get("vs_best_example") is not None:
        parts.append(f"{ratio(fidelity['vs_best_example'])}× best")
    if fidelity.get("z_rank") is not None:
        of = fidelity.get("of")
        rank = fidelity["z_rank"]
        span = f"{rank}–{rank + tied - 1}" if tied > 1 else str(rank)
        parts.append(f"z-rank {span}" + (f"/{of}" if of else "")
                     + (f" ({tied:,} tied)" if tied > 1 else ""))
    if fidelity.get("recognisability"):
        parts.append(recognisability.short(fidelity["recognisability"]))
    return " · ".join(parts)

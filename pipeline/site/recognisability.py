"""Whether a person could tell from the image what the unit detects, in words.

The evaluate stage measures, per unit and recipe, ``fidelity["recognisability"]`` (absent in
atlases made before it):

- ``judge``: the model that judges, independent of the atlas's model (e.g. the labeler);
- ``trials``, ``right``, ``afc``: the 2-AFC task (Borowski et al., ICLR 2021; automated as the
  Machine Interpretability Score, Zimmermann et al., NeurIPS 2024). Each trial pairs one of the
  unit's top dataset examples with one of its bottom ones; it is right when the judge's
  embedding of the image is closer to the top one. ``afc = right / trials``; 0.5 is chance;
- ``best_example``: ``{"right", "afc"}`` of the same trials with the unit's best dataset example
  as the reference, the bar a visualization has to reach;
- ``transfer`` (MACO's transferability, Fel et al. 2023), where the unit's top examples are
  dominated by one class: ``class`` (that class), ``share`` (its share of them), ``judged`` (the
  judge's zero-shot class of the image), ``hit`` (whether they agree); else null.

The judge only measures: no recipe uses it to make or choose an image.
"""

from __future__ import annotations

import math
from typing import Any

CHANCE = 0.5  # a 2-AFC at or below it tells nothing


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def _count(x: Any) -> int | None:
    n = _number(x)
    return None if n is None or n < 0 else int(n)


def _afc(entry: dict, trials: int) -> tuple[int, float] | None:
    """``(right, afc)`` of ``entry`` (afc recomputed from ``right`` when it is missing)."""
    right = _count(entry.get("right"))
    if right is None or right > trials:
        return None
    afc = _number(entry.get("afc"))
    return right, float(f"{right / trials if afc is None else afc:.6g}")


def clean(rec: Any) -> dict[str, Any] | None:
    """The stage's ``recognisability`` dict, checked and rounded; ``None`` when it is missing
    or malformed (no trials, no judge).

    >>> clean({"judge": "demo labeler", "trials": 20, "right": 17, "afc": 0.85,
    ...        "best_example": {"right": 15, "afc": 0.75}, "transfer": None})["best_example"]
    {'right': 15, 'afc': 0.75}
    >>> clean({"judge": "x", "trials": 0, "right": 0}) is None
    True
    """
    if not isinstance(rec, dict) or not isinstance(rec.get("judge"), str):
        return None
    trials = _count(rec.get("trials"))
    if not trials:
        return None
    own = _afc(rec, trials)
    if own is None:
        return None
    best = rec.get("best_example")
    best = _afc(best, trials) if isinstance(best, dict) else None
    out: dict[str, Any] = {"judge": rec["judge"], "trials": trials, "right": own[0],
                           "afc": own[1],
                           "best_example": None if best is None else {"right": best[0],
                                                                      "afc": best[1]},
                           "transfer": None}
    transfer = rec.get("transfer")
    if isinstance(transfer, dict) and isinstance(transfer.get("class"), str) \
            and isinstance(transfer.get("judged"), str):
        share = _number(transfer.get("share"))
        out["transfer"] = {"class": transfer["class"],
                           "share": None if share is None else float(f"{share:.6g}"),
                           "judged": transfer["judged"],
                           "hit": bool(transfer.get("hit", transfer["judged"]
                                                    == transfer["class"]))}
    return out


def further(rec: Any) -> dict[str, Any] | None:
    """A further image's recognisability (``--diversity N``: images 1 … N-1), checked and
    rounded: ``trials``, ``right``, ``afc`` and ``transfer`` (its judge and best example are
    image 0's); None when missing or malformed.

    >>> further({"trials": 20, "right": 13, "afc": 0.65, "transfer": None})
    {'trials': 20, 'right': 13, 'afc': 0.65, 'transfer': None}
    """
    out = clean({**rec, "judge": ""}) if isinstance(rec, dict) else None
    return None if out is None else {k: out[k] for k in ("trials", "right", "afc", "transfer")}


def count(rec: dict[str, Any] | None) -> str:
    """The 2-AFC as a page states it beside an image: "17 in 20"; empty when not measured.

    >>> count({"trials": 20, "right": 17}), count(None)
    ('17 in 20', '')
    """
    return "" if rec is None else f"{rec['right']} in {rec['trials']}"


def _quoted(s: str) -> str:
    return f"‘{s}’"


def sentences(rec: dict[str, Any] | None) -> str:
    """The page's words (plain text: the template escapes them); empty when not measured.

    >>> sentences(clean({"judge": "demo labeler", "trials": 20, "right": 17, "afc": 0.85,
    ...     "best_example": {"right": 15, "afc": 0.75},
    ...     "transfer": {"class": "ring", "share": 0.8, "judged": "disc", "hit": False}}))
    ... # doctest: +NORMALIZE_WHITESPACE
    "Given this image, the judge (demo labeler) tells the unit's top images from its bottom
    ones 17 times in 20 (its best dataset example: 15 in 20). The judge sees this image as
    ‘disc’, not ‘ring’ — the class of 80% of the unit's top examples."
    """
    if rec is None:
        return ""
    n = rec["trials"]
    out = (f"Given this image, the judge ({rec['judge']}) tells the unit's top images from its "
           f"bottom ones {rec['right']} time{'s' if rec['right'] != 1 else ''} in {n}")
    best = rec.get("best_example")
    out += f" (its best dataset example: {best['right']} in {n})." if best else "."
    t = rec.get("transfer")
    if t:
        share = (f"the class of {t['share']:.0%} of the unit's top examples"
                 if t["share"] is not None else "the class of most of the unit's top examples")
        seen = (_quoted(t["judged"]) if t["hit"]
                else f"{_quoted(t['judged'])}, not {_quoted(t['class'])}")
        out += f" The judge sees this image as {seen} — {share}."
    return out


def cautions(rec: dict[str, Any] | None) -> list[str]:
    """Why the image may not show what the unit detects (empty: no measured reason).

    >>> cautions(clean({"judge": "j", "trials": 20, "right": 9,
    ...                 "best_example": {"right": 15}}))[0][:22]
    'No better than chance:'
    """
    if rec is None:
        return []
    best = rec.get("best_example")
    if rec["afc"] <= CHANCE:
        return ["No better than chance: given this image, the judge tells the unit's top images "
                "from its bottom ones no more often than a coin would"
                + (f" (its best dataset example: {best['right']} in {rec['trials']})"
                   if best and best["afc"] > CHANCE else "")
                + ". Look at the dataset examples to see what the unit detects."]
    if best and rec["afc"] < best["afc"]:
        return [f"Less recognisable than the unit's best dataset example ({rec['right']} against "
                f"{best['right']} in {rec['trials']}): the dataset examples show better what "
                "the unit detects."]
    return []


def short(rec: dict[str, Any] | None) -> str:
    """A compact form for tooltips: ``"2-AFC 0.85"``.

    >>> short({"afc": 0.85})
    '2-AFC 0.85'
    """
    return "" if rec is None else f"2-AFC {rec['afc']:.2f}"

"""Small identities every stage computes the same way: fingerprints of what a result was made
with, and names made safe for folders and URLs.

>>> fingerprint({"k": 8, "layers": [0, 1]}) == fingerprint({"layers": [0, 1], "k": 8})
True
>>> slug("hf-hub:org/name")
'hf-hub-org-name'
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from typing import Any


def fingerprint(obj: Any, length: int = 16) -> str:
    """The first ``length`` hex digits of the sha256 of ``obj`` as sorted-key JSON: what a
    stage records of the options and inputs a result was made with (a rerun with other ones
    redoes it).

    >>> fingerprint([1, "a"])
    '4a72386a027702c1'
    """
    text = json.dumps(obj, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def slug(name: str) -> str:
    """``name`` as one folder or URL segment: ``[A-Za-z0-9._-]`` kept, each run of other
    characters one ``-``, no leading or trailing ``-`` or ``.`` (``model`` if nothing is left).

    >>> slug("vit_base_patch16_clip_quickgelu_224.openai"), slug("a/b c<d>"), slug("..")
    ('vit_base_patch16_clip_quickgelu_224.openai', 'a-b-c-d', 'model')
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"


def say(msg: str) -> None:
    """One line of a stage's progress on stderr, flushed (call it on the main rank only)."""
    print(msg, file=sys.stderr, flush=True)

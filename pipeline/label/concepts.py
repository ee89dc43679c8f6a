"""The concept set a labeler scores: common English words, or the user's own list.

The default follows CLIP-Dissect's "20k most common English words", taken from ``wordfreq``
(a maintained frequency list) rather than a pasted file, filtered to words of at least three
letters (``wordfreq`` also lists numbers, contractions' fragments and single letters), plus
the dataset's own class names when it has them, so that every class can be named.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import AtlasError

DEFAULT_CONCEPTS = 20000
_WORD = re.compile(r"^[a-z][a-z-]+[a-z]$")


@dataclass(frozen=True)
class ConceptSet:
    """Concepts in a fixed order, and where they came from."""

    concepts: tuple[str, ...]
    source: str

    @property
    def digest(self) -> str:
        """A short hash of the concepts, in order (part of the label stage's fingerprint)."""
        data = json.dumps(list(self.concepts), ensure_ascii=False).encode()
        return hashlib.sha256(data).hexdigest()[:16]

    def info(self) -> dict:
        return {"source": self.source, "count": len(self.concepts), "digest": self.digest}


def _unique(words: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for w in words:
        w = " ".join(w.split())
        if w and w not in seen:
            seen[w] = None
    return tuple(seen)


def common_words(n: int = DEFAULT_CONCEPTS) -> list[str]:
    """The ``n`` most frequent English words of ``wordfreq`` with at least three letters.

    >>> words = common_words(200)
    >>> len(words), "the" in words, "s" in words
    (200, True, False)
    """
    import wordfreq

    out: list[str] = []
    for pool in (2 * n, 4 * n, 8 * n):
        out = [w for w in wordfreq.top_n_list("en", pool) if _WORD.match(w)][:n]
        if len(out) == n:
            break
    return out


def default_concepts(class_names: Sequence[str] | None = None,
                     n: int = DEFAULT_CONCEPTS) -> ConceptSet:
    """``common_words(n)`` plus the dataset's class names (lower-cased), in that order.

    >>> c = default_concepts(["Checkerboard", "time"], n=100)  # "time" is a common word
    >>> c.concepts[-1], len(c.concepts)
    ('checkerboard', 101)
    """
    words = common_words(n)
    extra = [name.lower() for name in class_names or []]
    source = f"wordfreq:en top {n}" + (" + dataset classes" if extra else "")
    return ConceptSet(_unique([*words, *extra]), source)


def read_concepts(path: str | Path) -> ConceptSet:
    """One concept per line (UTF-8; blank lines and ``#`` comments skipped).

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "c.txt"
    >>> _ = f.write_text("stripes\\n# a comment\\n\\nfrom above\\nstripes\\n")
    >>> read_concepts(f).concepts
    ('stripes', 'from above')
    """
    path = Path(path)
    if not path.is_file():
        raise AtlasError(f"concepts file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise AtlasError(f"concepts file {path} is not UTF-8 text ({exc.reason} at byte "
                         f"{exc.start}): one concept per line expected") from None
    if "\x00" in text:
        raise AtlasError(f"concepts file {path} is binary, not one concept per line")
    lines = [line.strip() for line in text.splitlines()]
    concepts = _unique(line for line in lines if line and not line.startswith("#"))
    if not concepts:
        raise AtlasError(f"concepts file {path} holds no concepts (one per line expected)")
    return ConceptSet(concepts, f"file:{path.name}")

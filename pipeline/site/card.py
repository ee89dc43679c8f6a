"""What a model card says about the weights an atlas shows: what they are, the data they were
trained on and how accurate they are, read from the files beside a local checkpoint.

A bundled model (``data/<name>/``) keeps ``MODEL_CARD.md`` (its title, a paragraph on what it
is, a "Data and preprocessing" section) and ``model.json`` (``accuracy``: ``{split: share,
"n": images}``) beside its weights. Hub and random weights have no such files here: the card
says what is not known rather than guessing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CARD_FILE = "MODEL_CARD.md"
META_FILE = "model.json"


@dataclass(frozen=True)
class ModelCard:
    """``title``, ``summary`` (its first sentence), ``training`` (the training data in words)
    and ``accuracy`` (in words), each None when unknown."""

    title: str | None = None
    summary: str | None = None
    training: str | None = None
    accuracy: str | None = None


def _plain(markdown: str) -> str:
    """Markdown inline text as plain text: code ticks, emphasis and links dropped.

    >>> _plain("on `pipeline.data.synthetic`, **64×64** [flips](x.md)")
    'on pipeline.data.synthetic, 64×64 flips'
    """
    out = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    out = re.sub(r"[`*_]{1,2}([^`*_]+)[`*_]{1,2}", r"\1", out)
    return " ".join(out.split())


def _sections(text: str) -> dict[str, list[str]]:
    """``{heading: lines}`` of a Markdown file (``""``: before the first ``##``)."""
    out: dict[str, list[str]] = {"": []}
    current = ""
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:].strip().lower()
            out[current] = []
        else:
            out[current].append(line)
    return out


def parse_card(text: str, meta: dict[str, Any] | None = None) -> ModelCard:
    """The card of ``MODEL_CARD.md``'s ``text`` and ``model.json``'s ``meta``.

    >>> card = parse_card("# Demo (shapes)\\n\\nA small ViT. Not for use.\\n\\n## Data and "
    ...                   "preprocessing\\n- Training: the first 40,000 images of `train`.\\n",
    ...                   {"accuracy": {"validation": 0.928, "n": 2000}})
    >>> card.title, card.summary, card.training
    ('Demo (shapes)', 'A small ViT.', 'shapes: the first 40,000 images of train')
    >>> card.accuracy
    '92.8% on 2,000 held-out images (validation)'
    """
    parts = _sections(text)
    head = parts[""]
    title = next((line[2:].strip() for line in head if line.startswith("# ")), None)
    paragraph = []
    for line in head:
        if line.startswith("#"):
            continue
        if not line.strip():
            if paragraph:
                break
            continue
        paragraph.append(line)
    summary = None
    if paragraph:
        first = re.split(r"(?<=[.!?])\s+", _plain(" ".join(paragraph)), maxsplit=1)[0]
        summary = first
    training = None
    for key, lines in parts.items():
        if key.startswith("data"):
            bullets: list[str] = []
            for line in lines:  # a bullet and its indented continuation lines
                if line.startswith("- "):
                    bullets.append(line[2:].strip())
                elif bullets and line.startswith("  ") and line.strip():
                    bullets[-1] += " " + line.strip()
            found = next((b for b in bullets if b.lower().startswith("training")), None)
            if found:
                training = _plain(found.split(":", 1)[-1]).rstrip(".").strip()
                topic = re.search(r"\(([^)]*)\)\s*$", title or "")
                if topic:
                    training = f"{topic.group(1)}: {training}"
    accuracy = None
    acc = (meta or {}).get("accuracy")
    if isinstance(acc, dict):
        n = acc.get("n")
        for split, value in acc.items():
            if split != "n" and isinstance(value, (int, float)):
                images = f" on {n:,} held-out images" if isinstance(n, int) else ""
                accuracy = f"{100 * value:.1f}%{images} ({split})"
                break
    return ModelCard(title, summary, training, accuracy)


def read_card(weights: str | None) -> ModelCard | None:
    """The card beside the checkpoint ``weights`` (a path), or None (hub or random weights,
    or no card there)."""
    if not weights or weights in ("hub", "random") or weights.startswith("random"):
        return None
    folder = Path(weights).parent
    card, meta = folder / CARD_FILE, folder / META_FILE
    if not card.is_file() and not meta.is_file():
        return None
    try:
        data = json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else None
    except (OSError, ValueError):
        data = None
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    return parse_card(text, data if isinstance(data, dict) else None)

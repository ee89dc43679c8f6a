"""Safe embedding of untrusted strings (class names, example ids, model names) in page sources.

Every generated page is a Markdown file whose *data* lives in YAML front matter (rendered by a
Jinja template that escapes with ``|e``) and whose body is raw HTML that Markdown passes
through untouched. Three contexts, three escapers:

- ``text``/``attr``: HTML text and attribute values (``html.escape``, quotes included);
- ``yaml_str``: a YAML double-quoted scalar that any byte sequence survives (ASCII only);
- ``script_json``: JSON inside ``<script type="application/json">``, safe against ``</script>``
  and ``<!--``.
"""

from __future__ import annotations

import html
import json
import math
import re
from typing import Any

_YAML_UNSAFE = re.compile(r'[^ !#-\[\]-~]')  # not printable ASCII, or a quote or backslash
_YAML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def text(value: object) -> str:
    """HTML-escaped text, also safe inside a quoted attribute."""
    return html.escape(str(value), quote=True)


attr = text


def _yaml_escape(match: re.Match) -> str:
    ch = match.group()
    if ch in _YAML_ESCAPES:
        return _YAML_ESCAPES[ch]
    code = ord(ch)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def yaml_str(value: str) -> str:
    """A YAML double-quoted scalar: printable ASCII kept, everything else escaped."""
    return '"' + _YAML_UNSAFE.sub(_yaml_escape, value) + '"'


def yaml_value(value: Any) -> str:
    """A JSON-like value (None, bool, int, float, str, list, dict) as YAML flow syntax."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "null"
    if isinstance(value, str):
        return yaml_str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{yaml_str(str(k))}: {yaml_value(v)}"
                               for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to YAML")


def front_matter(meta: dict[str, Any]) -> str:
    """``---`` delimited YAML front matter, one top-level key per line."""
    lines = ["---"]
    lines.extend(f"{key}: {yaml_value(value)}" for key, value in meta.items())
    lines.append("---\n")
    return "\n".join(lines)


SEP = "\x1f"  # ASCII unit separator: joins the fields of one packed scalar


def pack(*fields: str) -> str:
    """Fields joined by ``SEP`` into one YAML scalar (the last field may contain ``SEP``)."""
    *head, last = fields
    return SEP.join([f.replace(SEP, " ") for f in head] + [last])


# one encoder for every compact JSON the site writes (``json.dumps`` makes one a call when
# given settings)
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def compact_json(obj: Any) -> bytes:
    """``obj`` as the site's data files hold it: JSON without spaces, in UTF-8, no NaN.

    >>> compact_json({"unit": 3, "label": "é"})
    b'{"unit":3,"label":"\\xc3\\xa9"}'
    """
    return _COMPACT.encode(obj).encode("utf-8")


def script_json(obj: Any) -> str:
    """JSON text for a ``<script type="application/json">`` element."""
    s = _COMPACT.encode(obj)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def num(value: float, digits: int = 4) -> str:
    """A short human-readable number (``digits`` significant digits)."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}g}"

"""The README's "From Python" example runs, as a notebook would run it."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_example_runs():
    text = README.read_text()
    section = text.split("## From Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert tuple(namespace["images"].shape) == (1, 3, 32, 32)
    assert namespace["top"]["blocks.1.mlp.act"].ids.shape == (768, 4)

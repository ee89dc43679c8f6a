"""Fixtures the visualization tests share."""

from __future__ import annotations

import pytest

from pipeline.config import demo_config
from pipeline.models import create_model, spec_for


@pytest.fixture(scope="module")
def demo():
    """The bundled demo model (trained weights) and its spec, made once per module."""
    m = demo_config().model
    model = create_model(m.name, m.weights, m.kwargs)
    return model, spec_for(model, m.name, m.kwargs)


def interrupted_visualize(monkeypatch: pytest.MonkeyPatch, run, at_write: int) -> None:
    """Run ``run``'s visualize stage as if interrupted (``KeyboardInterrupt``) when it
    writes its ``at_write``-th chunk: the chunks before it are on disk, the rest are not."""
    from pipeline.store import AtlasStore
    from pipeline.visualize.stage import run_visualize

    real = AtlasStore.write_vis_chunk
    calls = {"n": 0}

    def dying(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at_write:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(AtlasStore, "write_vis_chunk", dying)
        with pytest.raises(KeyboardInterrupt):
            run_visualize(run)

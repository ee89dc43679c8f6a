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

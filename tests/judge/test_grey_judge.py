"""``grey:SPEC``: any judge shown every image in grey, so that it can tell images apart by their
light and dark alone; its spec is checked like the judge's it wraps."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.synthetic import make_example
from pipeline.errors import AtlasError
from pipeline.judge import check_judge, load_judge
from pipeline.judge.grey import GreyJudge, luminance


@pytest.fixture(scope="module")
def cnn():
    return load_judge("cnn:demo")


@pytest.fixture(scope="module")
def images():
    return np.stack([np.asarray(make_example(i, 11, 64)[0]) for i in range(24)])


def test_luminance_is_bt601_in_every_channel():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    grey = luminance(x)
    assert grey.shape == x.shape and grey.dtype == np.uint8
    expected = np.rint(x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114)
    for c in range(3):
        assert np.abs(grey[..., c].astype(int) - expected).max() <= 1


def test_the_grey_judge_sees_only_light_and_dark(cnn, images):
    grey = load_judge("grey:cnn:demo")
    assert isinstance(grey, GreyJudge) and grey.id == "grey:" + cnn.id
    assert np.array_equal(grey.embed(images), cnn.embed(luminance(images)))
    # an image and its grey copy: the grey judge cannot tell them apart, the judge itself can
    grey_copies = luminance(images)
    assert np.array_equal(luminance(grey_copies), grey_copies)
    assert np.array_equal(grey.embed(images), grey.embed(grey_copies))
    assert not np.allclose(cnn.embed(images), cnn.embed(grey_copies), atol=1e-3)
    a, b = images, grey_copies
    names = ["circle", "ring", "checkerboard"]
    assert np.array_equal(grey.classify(a, names), grey.classify(b, names))


@pytest.mark.parametrize("spec", ["grey:", "grey: ", "grey:none", "grey:grey:cnn:demo",
                                  "grey:nonsense"])
def test_bad_grey_specs_are_clear_errors(spec):
    for call in (check_judge, load_judge):
        with pytest.raises(AtlasError, match="bad judge") as err:
            call(spec)
        assert err.value.option == "judge"


def test_a_grey_labeler_spec_checks_without_loading():
    check_judge("grey:demo")
    check_judge("grey:open_clip:ViT-B-32/laion2b_s34b_b79k")  # parsed, nothing downloaded

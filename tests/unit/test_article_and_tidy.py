"""The article before an op's name, and the wording mended where names fill fixed words."""

from __future__ import annotations

import pytest

from tffreeze_server.core.words import article, tidy


@pytest.mark.parametrize("op,said", [
    ("ArgMax", "an ArgMax"), ("Identity", "an Identity"), ("AddV2", "an AddV2"), ("ExpandDims", "an ExpandDims"),
    ("Unpack", "an Unpack"), ("MatMul", "a MatMul"), ("OneHot", "a OneHot"), ("UniqueV2", "a UniqueV2"),
    ("LSTMBlockCell", "an LSTMBlockCell"), ("FFT", "an FFT"), ("FusedBatchNormV3", "a FusedBatchNormV3"),
])
def test_the_article_goes_by_how_the_name_is_said(op, said):
    assert article(op) == said


@pytest.mark.parametrize("text,mended", [
    ("prediction: the loss loss compares it with labels", "prediction: the loss compares it with labels"),
    ("head_a (inside the loss loss)", "head_a (inside the loss)"),
    ("a ArgMax of the model's computation", "an ArgMax of the model's computation"),
    ("the loss loss/value compares it", "the loss loss/value compares it"),  # another name: kept
    ("a Saver checkpoint, a TF2 SavedModel, a user, a unit", "a Saver checkpoint, a TF2 SavedModel, a user, a unit"),
])
def test_tidy_mends_only_the_glitches(text, mended):
    assert tidy(text) == mended

"""OCR reward: 1 - normalised Levenshtein distance, equal to rapidfuzz's."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import Levenshtein

from pr1.rewards import REGISTRY, build
from tests.helpers import render


def score(text: str, gt: str, thinking: bool = False) -> float:
    return build("edit", thinking=thinking)([text], solution=[gt], image_size=[[100, 100]])[0]


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60).map(str.strip), st.text(max_size=60).map(str.strip))
def test_equals_rapidfuzz(pred, gt):
    assert score(pred, gt) == pytest.approx(1 - Levenshtein.normalized_distance(pred, gt))


def test_values():
    assert score("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert score("", "abc") == 0.0 and score("", "") == 1.0
    assert score("<think>x</think><answer>abc</answer>", "abc", thinking=True) == 1.0
    assert score("<think>x</think>abc", "abc", thinking=True) == 0.0


@pytest.mark.parametrize("thinking", [False, True])
def test_round_trip(thinking):
    text = "Page 1\nHello, wörld — 42."
    completion = render("ocr", text, (10, 10), {"kind": "rel1000"}, thinking)
    assert REGISTRY["edit"]([completion], solution=[text], image_size=[(10, 10)], thinking=thinking) == [1.0]

"""OCR rewards: 1 - normalised Levenshtein distance (equal to rapidfuzz's) and word F1 (brute force)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import Levenshtein

from pr1.metrics import ocr as ocr_metrics
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


def f1_score(text: str, gt: str, thinking: bool = False) -> float:
    return build("word_f1", thinking=thinking)([text], solution=[gt], image_size=[[100, 100]])[0]


def brute_force_f1(pred: str, gt: str) -> float:
    """Match each predicted word to an unused equal truth word, one by one (no Counter arithmetic)."""
    p, g = pred.split(), gt.split()
    if not p or not g:
        return float(len(p) == len(g))
    unused, hits = list(g), 0
    for w in p:
        if w in unused:
            unused.remove(w)
            hits += 1
    return 0.0 if hits == 0 else 2 * hits / (len(p) + len(g))


def test_word_f1_values():
    assert f1_score("paper water", "paper water") == 1.0
    assert f1_score("paper", "paper water") == pytest.approx(2 / 3)  # P 1, R 1/2
    assert f1_score("water paper", "paper water") == 1.0  # words as a multiset: order is not read
    assert f1_score("paper paper", "paper water") == pytest.approx(0.5)  # a repeat is paid once
    # edit pays a misread word for its shared letters: water -> paper is 2 substitutions of 5, so 0.6
    assert f1_score("water", "paper") == 0.0 and score("water", "paper") == pytest.approx(0.6)
    assert f1_score("", "") == 1.0 and f1_score("", "abc") == 0.0
    assert f1_score("<think>x</think><answer>a b</answer>", "a b", thinking=True) == 1.0
    assert f1_score("<think>x</think>a b", "a b", thinking=True) == 0.0


_WORDS = st.lists(st.sampled_from(["apple", "river", "stone", "a", "A"]), max_size=6).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(_WORDS, _WORDS)
def test_word_f1_equals_brute_force_and_the_task_metric(pred, gt):
    value = f1_score(pred, gt)
    assert value == pytest.approx(brute_force_f1(pred, gt))
    metrics, _ = ocr_metrics([pred], [{"id": 0, "solution": gt}], frame={"kind": "rel1000"}, thinking=False)
    assert value == pytest.approx(metrics["f1"])  # the reward is the metric the OCR task reports

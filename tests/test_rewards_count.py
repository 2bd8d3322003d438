"""Counting reward: the released formula, extra/missing penalties, matchers, frames, round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pr1.rewards import build, explain
from tests.helpers import render

REL = {"kind": "rel1000"}
ABS = {"kind": "abs_resized", "factor": 28, "min_pixels": 3136, "max_pixels": 1003520}
SIZE = (1000, 1000)  # pixels = rel1000 coordinates, so expected values are easy to write
GT = [[100, 100], [500, 500], [900, 100]]


def score(text: str, solution=GT, size=SIZE, **options) -> float:
    return build("count", **options)([text], solution=[solution], image_size=[size])[0]


def points(pts) -> str:
    return "".join(f"<|box_start|>({x},{y})<|box_end|>" for x, y in pts)


def reference(pred, gt) -> float:
    """The released code's formula, written independently: brute-force matching on the 0-1000 grid."""
    import itertools

    n, m = len(pred), len(gt)
    small, big = (pred, gt) if n <= m else (gt, pred)
    best = min(
        sum(math.dist(small[i], big[p[i]]) for i in range(len(small)))
        for p in itertools.permutations(range(len(big)), len(small))
    )
    return (min(n, m) / max(n, m)) * (1 - best / len(small) / (1000 * math.sqrt(2)))


@pytest.mark.parametrize(
    "pred", [GT, GT[::-1], [[110, 90], [480, 530]], [[0, 0], [1000, 1000], [10, 990], [600, 600], [300, 700]]]
)
def test_equals_released_formula(pred):
    assert score(points(pred)) == pytest.approx(reference(pred, GT))


def test_boxes_count_by_their_centres():
    boxes = "".join(f"<|box_start|>({x - 10},{y - 10}),({x + 10},{y + 10})<|box_end|>" for x, y in GT)
    assert score(boxes) == 1.0
    assert score("[[90,90,110,110],[490,490,510,510],[890,90,910,110]]") == 1.0


def test_extra_and_missing_points_are_penalised():
    assert score(points(GT + [[300, 300]])) == pytest.approx(0.75)
    assert score(points(GT[:2])) == pytest.approx(2 / 3)
    assert score(points(GT * 10)) == pytest.approx(0.1)


def test_invalid_items_count_but_never_match():
    assert score(points(GT) + "<|box_start|>(20,20),(10,10)<|box_end|>") == pytest.approx(0.75)
    assert score(points(GT[:2]) + "<|box_start|>(1500,100)<|box_end|>") == pytest.approx(2 / 3)


def test_scale_pays_only_close_points():
    off = [[x + 50, y] for x, y in GT]
    assert score(points(off), scale=0.1) == pytest.approx(0.5)
    assert score(points(off)) > 0.96


def test_naive_matching_is_order_sensitive():
    assert score(points(GT[::-1]), matcher="naive") < score(points(GT[::-1]), matcher="hungarian") == 1.0


def test_empty_cases():
    assert score("") == 0.0
    assert score("", solution=[]) == 1.0
    assert score(points(GT), solution=[]) == 0.0


@pytest.mark.parametrize("frame", [REL, ABS])
@pytest.mark.parametrize("thinking", [False, True])
def test_round_trip(frame, thinking):
    rng = np.random.default_rng(1)
    size = (1333, 751)
    gt = (rng.uniform(0, 1, size=(9, 2)) * size).tolist()
    text = render("counting", gt, size, frame, thinking, label="apples")
    row = explain("count", [text], solution=[gt], image_size=[size], frame=frame, thinking=thinking)[0]
    assert row["total"] == 1.0 and row["format"] == 1.0 and row["n_matched"] == 9

"""Matching and pairwise rewards, checked against independent computations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from pr1.matching import MATCHERS, box_validity, iou_matrix, match, point_similarity


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(0, 100, size=(n, 2))
    wh = rng.uniform(0.5, 60, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


@pytest.mark.parametrize("seed", range(5))
def test_iou_matrix_equals_pycocotools(seed):
    rng = np.random.default_rng(seed)
    a, b = random_boxes(rng, 17), random_boxes(rng, 11)
    xywh = lambda x: np.concatenate([x[:, :2], x[:, 2:] - x[:, :2]], axis=1)  # noqa: E731
    expected = mask_utils.iou(xywh(a).tolist(), xywh(b).tolist(), [0] * len(b))
    assert np.allclose(iou_matrix(a, b), expected, atol=1e-12)


def test_iou_invalid_boxes_are_zero():
    boxes = [[0, 0, 10, 10], [10, 10, 0, 0], [0, 0, 0, 10], [np.nan, 0, 1, 1], [0, 0, np.inf, 10]]
    assert box_validity(boxes).tolist() == [True, False, False, False, False]
    assert iou_matrix(boxes, boxes)[:, 1:].sum() == 0 and iou_matrix(boxes, boxes)[0, 0] == 1
    assert iou_matrix(np.zeros((0, 4)), boxes).shape == (0, 5)


def test_point_similarity():
    sim = point_similarity([[0, 0], [np.nan, 0]], [[0, 0], [1, 1], [0.1, 0]], scale=np.sqrt(2))
    assert np.allclose(sim[0], [1, 0, 1 - 0.1 / np.sqrt(2)]) and (sim[1] == 0).all()


def brute_force_total(reward: np.ndarray) -> float:
    if reward.shape[0] > reward.shape[1]:
        reward = reward.T
    n, m = reward.shape
    return max(sum(reward[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))


def total(reward: np.ndarray, matcher: str) -> float:
    rows, cols = match(reward, matcher)
    assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)  # one-to-one
    assert len(rows) == min(reward.shape)
    return float(reward[rows, cols].sum())


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**32 - 1), st.booleans())
def test_hungarian_is_optimal_and_beats_naive_and_greedy(n, m, seed, sparse):
    rng = np.random.default_rng(seed)
    reward = rng.uniform(size=(n, m))
    if sparse:  # many exact zeros and ties, like IoU matrices
        reward = np.where(reward > 0.6, np.round(reward, 1), 0.0)
    best = total(reward, "hungarian")
    assert best == pytest.approx(brute_force_total(reward))
    assert best >= total(reward, "naive") - 1e-12
    assert best >= total(reward, "greedy") - 1e-12


def test_greedy_can_be_suboptimal():
    reward = np.array([[0.9, 0.8], [0.7, 0.0]])
    assert total(reward, "greedy") == pytest.approx(0.9)
    assert total(reward, "hungarian") == pytest.approx(1.5)


def test_naive_pairs_in_order():
    rows, cols = match(np.ones((3, 2)), "naive")
    assert rows.tolist() == cols.tolist() == [0, 1]


@pytest.mark.parametrize("matcher", sorted(MATCHERS))
def test_empty_sides(matcher):
    for shape in [(0, 3), (3, 0), (0, 0)]:
        rows, cols = match(np.zeros(shape), matcher)
        assert len(rows) == len(cols) == 0


def test_unknown_matcher():
    with pytest.raises(ValueError, match="hungarian"):
        match(np.ones((1, 1)), "optimal")

"""Detection reward: soft F1 over matched IoU, labels, matchers, duplicates, frames, round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pr1.rewards import build, explain
from tests.helpers import render

REL = {"kind": "rel1000"}
ABS = {"kind": "abs_resized", "factor": 28, "min_pixels": 3136, "max_pixels": 1003520}
SIZE = (1000, 1000)
GT = [
    {"label": "cat", "box": [0, 0, 100, 100]},
    {"label": "dog", "box": [200, 200, 400, 400]},
    {"label": "person", "box": [500, 100, 700, 900]},
]


def answer(objs) -> str:
    return json.dumps([{"bbox_2d": o["box"], "label": o["label"]} for o in objs])


def score(text: str, solution=GT, **options) -> float:
    return build("detection", **options)([text], solution=[solution], image_size=[SIZE])[0]


def test_exact_and_soft_f1():
    assert score(answer(GT)) == 1.0
    half = [{"label": "cat", "box": [0, 0, 100, 50]}]  # IoU 0.5 with the cat
    assert score(answer(half)) == pytest.approx(2 * 0.5 / 4)
    assert score(answer(GT[:2])) == pytest.approx(2 * 2 / 5)


def test_labels_gate_the_pair_reward():
    swapped = [{**GT[0], "label": "dog"}, {**GT[1], "label": "cat"}, GT[2]]
    assert score(answer(swapped)) == pytest.approx(2 * 1 / 6)
    assert score(answer(swapped), labels=False) == 1.0
    assert score(answer([{**o, "label": f" {o['label'].upper()} "} for o in GT])) == 1.0


def test_iou_min():
    half = [{"label": "cat", "box": [0, 0, 100, 50]}]
    assert score(answer(half), iou_min=0.6) == 0.0


def test_duplicates_are_paid_once():
    assert score(answer(GT + [GT[0]] * 5)) == pytest.approx(2 * 3 / 11)


def test_matchers():
    text = answer(GT[::-1])
    assert score(text, matcher="hungarian") == score(text, matcher="greedy") == 1.0
    assert score(text, matcher="naive") == pytest.approx(2 * 1 / 6)


def test_native_format_with_labels():
    text = "".join(
        f"<|object_ref_start|>{o['label']}<|object_ref_end|><|box_start|>({o['box'][0]},{o['box'][1]}),"
        f"({o['box'][2]},{o['box'][3]})<|box_end|>"
        for o in GT
    )
    assert score(text) == 1.0


@settings(max_examples=40, deadline=None)
@given(st.permutations(range(6)), st.integers(0, 1000))
def test_hungarian_reward_is_permutation_invariant(perm, seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 800, size=(6, 2))
    preds = [
        {"label": str(rng.choice(["cat", "dog"])), "box": [*p, *(p + rng.uniform(5, 200, 2))]} for p in xy
    ]
    permuted = [preds[i] for i in perm]
    assert score(answer(permuted)) == pytest.approx(score(answer(preds)), abs=1e-12)


@pytest.mark.parametrize("frame", [REL, ABS])
@pytest.mark.parametrize("thinking", [False, True])
def test_round_trip(frame, thinking):
    size = (1921, 1079)
    gt = [{"label": o["label"], "box": [v * 1.7 for v in o["box"]]} for o in GT]
    text = render("detection", gt, size, frame, thinking)
    row = explain("detection", [text], solution=[gt], image_size=[size], frame=frame, thinking=thinking)[0]
    assert row["total"] == 1.0 and row["format"] == 1.0 and row["n_matched"] == 3

"""Detection reward: soft F1 over matched IoU, labels, matchers, duplicates, frames, round trip."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pr1.matching import iou_matrix
from pr1.rewards import build, explain
from pr1.rewards.iou import predicted, target_boxes
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


# Components, label gating, the released variants' frames, dynamic IoU, GIoU and the DETR cost.

ONE = [{"label": "cat", "box": [0, 0, 100, 80]}, {"label": "cat", "box": [800, 0, 900, 50]}]


def test_components_hand_worked():
    """GT cat/dog/person; the answer: the cat at IoU 0.8, a box on the dog labelled cat, one stray box.

    With labels gating the pairs: k = 1 (the cat) of N = 3, M = 3. Without: k = 2 (cat, dog at IoU 1)."""
    text = answer([ONE[0], {"label": "cat", "box": GT[1]["box"]}, ONE[1]])
    opts = {"variant": "components", "w_iou": 0.0}
    assert score(text, **opts, w_f1=1.0) == pytest.approx(2 * 1 / 6)
    assert score(text, **opts, w_recall=1.0) == pytest.approx(1 / 3)
    assert score(text, **opts, w_cls=1.0) == 1.0  # gated pairs always agree on the label
    assert score(text, **opts, w_missing=1.0) == pytest.approx(-(2 / 3 + 2 / 3) / 2)
    assert score(text, variant="components") == pytest.approx(0.8)
    ungated = {**opts, "labels": False}
    assert score(text, **ungated, w_f1=1.0) == pytest.approx(2 * 2 / 6)
    assert score(text, **ungated, w_cls=1.0) == pytest.approx(1 / 2)
    assert score(text, variant="components", labels=False) == pytest.approx((0.8 + 1) / 2)
    assert score(text, variant="components", labels=False, iou_min=0.9) == 1.0  # only the dog is kept
    assert (
        score("", solution=[], variant="components", w_missing=1.0) == 1.0
    )  # nothing to find, nothing found


def test_components_are_optimal_by_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(200):
        preds = [
            {"label": str(rng.choice(["cat", "dog"])), "box": [*(p := rng.uniform(0, 800, 2)), *(p + 150)]}
            for _ in range(int(rng.integers(0, 5)))
        ]
        gt = [
            {"label": str(rng.choice(["cat", "dog"])), "box": [*(p := rng.uniform(0, 800, 2)), *(p + 150)]}
            for _ in range(int(rng.integers(1, 5)))
        ]
        text = answer([{**o, "box": [round(v) for v in o["box"]]} for o in preds])
        row = explain("detection", [text], solution=[gt], image_size=[SIZE], variant="components")[0]
        # brute force: the best total label-gated IoU over every one-to-one assignment, at the same inputs
        items = json.loads(text)
        p = predicted([tuple(o["bbox_2d"]) for o in items], SIZE, REL)
        g = target_boxes([o["box"] for o in gt], SIZE, REL)
        r = iou_matrix(p, g) * (np.asarray([o["label"] for o in items])[:, None] == [o["label"] for o in gt])
        n, m = r.shape
        best = 0.0
        for perm in itertools.permutations(range(max(n, m)), n) if n else [()]:
            best = max(best, sum(r[i, j] for i, j in enumerate(perm) if j < m))
        assert row["f1"] == pytest.approx(2 * row["n_matched"] / (n + m))
        assert 2 * best / (n + m) == pytest.approx(score(text, solution=gt), abs=1e-9)


def test_release_variants_in_the_resized_frame():
    size = (1921, 1079)
    gt = [{"label": o["label"], "box": [v * 1.7 for v in o["box"]]} for o in GT]
    text = render("detection", gt, size, ABS, False)
    for variant, best in (("release", 3.0), ("t6_iou", 1.25), ("t6_cls", 2.25), ("t6_missing", 3.0)):
        fn = build("detection", frame=ABS, variant=variant)
        assert fn([text], solution=[gt], image_size=[size]) == [pytest.approx(best, abs=1e-7)]


def test_dynamic_iou_for_detection():
    """IoU 0.8 for the cat: kept while the threshold is 0.5 (steps 0-9), dropped from step 10 (0.9)."""
    schedule = [[0, 0.5], [10, 0.9]]
    text = answer([ONE[0]])
    fn = build("detection", iou_schedule=schedule)
    soft = [fn([text], solution=[GT], image_size=[SIZE], step=s)[0] for s in (0, 9, 10)]
    assert soft == pytest.approx([2 * 0.8 / 4, 2 * 0.8 / 4, 0.0])
    rel = build("detection", variant="release", iou_schedule=schedule)
    assert rel([text], solution=[GT], image_size=[SIZE], step=10) == [0.25]


def test_schedules():
    from pr1.rewards.dynamic import threshold, vtriune_schedule

    # V-Triune: 0.85 while step/T <= 0.1, 0.95 while <= 0.25, then 0.99; T = 100 by hand.
    assert vtriune_schedule(100) == [[0, 0.85], [11, 0.95], [26, 0.99]]
    got = [threshold(vtriune_schedule(100), s) for s in (0, 10, 11, 25, 26, 100)]
    assert got == [0.85, 0.85, 0.95, 0.95, 0.99, 0.99]
    assert vtriune_schedule(3) == [[0, 0.85], [1, 0.99]]  # step 1 of 3 is already past a quarter
    assert threshold([], 10, 0.3) == 0.3
    for bad in ([[1, 0.5]], [[0, 1.5]], [[0, 0.5], [0, 0.6]], [[0]], "x", [[0, True]]):
        with pytest.raises(ValueError, match="iou_schedule"):
            threshold(bad, 0)


def test_giou_and_detr_cost_hand_worked():
    from pr1.matching import detr_cost, giou_matrix, min_cost

    a = [[0, 0, 2, 2]]
    b = [[1, 1, 3, 3], [4, 0, 6, 2], [0, 0, 2, 2]]
    # IoU 1/7, hull 9: 1/7 - 2/9; disjoint: 0 - (12 - 8)/12; identical: 1
    assert giou_matrix(a, b)[0] == pytest.approx([1 / 7 - 2 / 9, -1 / 3, 1.0])
    # cxcywh of a = (1,1,2,2); of b = (2,2,2,2), (5,1,2,2), (1,1,2,2): L1 = 2, 4, 0
    cost = detr_cost(a, b, np.zeros((1, 3)))
    assert cost[0] == pytest.approx([5 * 2 - 2 * (1 / 7 - 2 / 9), 5 * 4 + 2 / 3, -2.0])
    rng = np.random.default_rng(1)
    for _ in range(100):
        c = rng.normal(size=(int(rng.integers(1, 5)), int(rng.integers(1, 5))))
        rows, cols = min_cost(c)
        n, m = c.shape
        brute = min(
            sum(c[i, j] for i, j in zip(r, k, strict=True))
            for r in itertools.combinations(range(n), min(n, m))
            for k in itertools.permutations(range(m), min(n, m))
        )
        assert len(rows) == min(n, m) and c[rows, cols].sum() == pytest.approx(brute)

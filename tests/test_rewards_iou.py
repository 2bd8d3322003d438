"""Grounding reward: IoU variants, clipping, degenerate and multiple boxes, frames, round trip."""

from __future__ import annotations

import pytest

from pr1.rewards import build, explain
from tests.helpers import render

REL = {"kind": "rel1000"}
ABS = {"kind": "abs_resized", "factor": 28, "min_pixels": 3136, "max_pixels": 1003520}
SIZE = [640, 480]
GT = [0, 0, 320, 240]  # the top-left quarter = [0,0,500,500] in rel1000


def score(
    text: str, variant: str = "iou", frame=REL, thinking: bool = False, solution=GT, size=SIZE
) -> float:
    fn = build("iou", variant=variant, frame=frame, thinking=thinking)
    return fn([text], solution=[solution], image_size=[size])[0]


def test_variants():
    half = "[0,0,250,500]"  # IoU 0.5
    assert score(half) == pytest.approx(0.5)
    assert score(half, "iou2") == pytest.approx(0.25)
    assert score(half, "acc50") == 1.0
    assert score("[0,0,240,500]", "acc50") == 0.0


def test_pick_first_scores_the_first_box():
    assert build("iou", pick="first")(["[0,0,500,500][0,0,1,1]"], solution=[GT], image_size=[SIZE]) == [1.0]
    assert build("iou", pick="first")(["[0,0,1,1][0,0,500,500]"], solution=[GT], image_size=[SIZE])[0] < 0.01


def test_clipped_to_image():
    assert score("[-100,-100,500,500]") == 1.0
    assert score("[1000,1000,2000,2000]") == 0.0


@pytest.mark.parametrize("text", ["", "[500,500,0,0]", "[0,0,0,500]", "[0,0,500,500][0,0,500,500]", "[0,0]"])
def test_zero(text):
    assert score(text) == 0.0


@pytest.mark.parametrize("frame", [REL, ABS])
@pytest.mark.parametrize("thinking", [False, True])
@pytest.mark.parametrize("size", [(640, 480), (1920, 1080), (333, 1777), (40, 30)])
def test_round_trip(frame, thinking, size):
    gt = [size[0] * 0.1, size[1] * 0.23, size[0] * 0.7, size[1] * 0.9]
    for label in (None, "the man on the left"):
        text = render("grounding", gt, size, frame, thinking, label=label)
        rows = explain("iou", [text], solution=[gt], image_size=[size], frame=frame, thinking=thinking)
        assert rows[0]["total"] == 1.0 and rows[0]["format"] == 1.0


def test_wrong_frame_scores_low():
    gt = [100, 200, 600, 700]
    size = (1920, 1080)
    pixels = "[100,200,600,700]"  # absolute pixels where rel1000 is expected
    assert score(pixels, solution=gt, size=size) < 0.5  # below acc50; the correct answer scores 1


def test_pick_first_with_a_point_after_the_box():
    """Issue 18: a box followed by a point raised (ragged array) with pick=first."""
    fn = build("iou", pick="first")
    # [1,2,3,4] on the 0-1000 grid of a 100x100 image is 0.2 x 0.2 px inside the 10 x 10 px truth
    assert fn(["[1,2,3,4] [5,6]"], solution=[[0, 0, 10, 10]], image_size=[[100, 100]]) == [
        pytest.approx(4e-4)
    ]
    assert fn(["[0,0,100,100] [5,6]"], solution=[[0, 0, 10, 10]], image_size=[[100, 100]]) == [1.0]
    assert fn(["[5,6] [0,0,100,100]"], solution=[[0, 0, 10, 10]], image_size=[[100, 100]]) == [0.0]


@pytest.mark.parametrize("size", [[30_000, 100], [100, 30_000], [100_000, 1]])
def test_extreme_aspect_ratio_under_the_resized_frame(size):
    """Issue 18: smart_resize refuses aspect ratios > 200; the rewards still score such records."""
    assert 0.0 <= score("[0,0,28,28]", frame=ABS, solution=[0, 0, 10, 10], size=size) <= 1.0
    assert 0.0 <= score("[0,0,28,28]", "release", frame=ABS, solution=[0, 0, 10, 10], size=size) <= 1.0


def test_dynamic_iou_hand_worked_schedule():
    """Threshold 0.5 from step 0, 0.7 from step 10, 0.9 from step 20; IoU 0.6 pays until step 9, IoU 0.8
    until step 19, IoU 1 always."""
    schedule = [[0, 0.5], [10, 0.7], [20, 0.9]]
    texts = ["[0,0,300,500]", "[0,0,400,500]", "[0,0,500,500]"]  # IoU 0.6, 0.8, 1 with the quarter
    fn = build("iou", iou_schedule=schedule, frame=REL)
    got = {
        step: fn(texts, solution=[GT] * 3, image_size=[SIZE] * 3, step=step)
        for step in (0, 9, 10, 19, 20, 500)
    }
    expected_ious = {0: [0.6, 0.8, 1], 9: [0.6, 0.8, 1], 10: [0, 0.8, 1], 19: [0, 0.8, 1], 20: [0, 0, 1]}
    for step, values in {**expected_ious, 500: [0, 0, 1]}.items():
        assert got[step] == pytest.approx(values)
    squared = build("iou", variant="iou2", iou_schedule=schedule, frame=REL)
    assert squared(texts, solution=[GT] * 3, image_size=[SIZE] * 3, step=10) == pytest.approx([0, 0.64, 1])

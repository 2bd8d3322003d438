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

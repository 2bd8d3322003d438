"""Format reward: anchored, task-aware, thinking-aware; +1/-1 by default, 1/0 as an option."""

from __future__ import annotations

import pytest

from pr1.rewards import build

BOX = [0, 0, 320, 240]
POINTS = [[10, 10], [20, 20]]
DET = [{"label": "cat", "box": BOX}]
SIZE = [640, 480]


def score(text: str, solution, thinking: bool = False, **options) -> float:
    return build("format", thinking=thinking, **options)([text], solution=[solution], image_size=[SIZE])[0]


@pytest.mark.parametrize(
    ("text", "solution"),
    [
        ("<|object_ref_start|>a<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>", BOX),
        ("<|box_start|>(1,2),(3,4)<|box_end|>", BOX),
        ("[1, 2, 3, 4]", BOX),
        ('[{"bbox_2d": [1,2,3,4], "label": "a"}]', BOX),
        ("<|box_start|>(1,2)<|box_end|><|box_start|>(3,4)<|box_end|>", POINTS),
        ("[[1,2],[3,4]]", POINTS),
        ("[[1,2,3,4],[3,4,5,6]]", POINTS),
        ('```json\n[{"bbox_2d": [1,2,3,4], "label": "cat"}]\n```', DET),
        ("<|object_ref_start|>cat<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>", DET),
        ("some text", "gt text"),
    ],
)
def test_well_formed(text, solution):
    assert score(text, solution) == 1.0
    assert score(f"<think>why</think>\n<answer>{text}</answer>", solution, thinking=True) == 1.0
    assert score(text, solution, thinking=True) == -1.0  # answer outside the tags


@pytest.mark.parametrize(
    ("text", "solution"),
    [
        ("", BOX),
        ("The box is [1,2,3,4].", BOX),
        ("[1,2,3,4][5,6,7,8]", BOX),
        ("[1,2,3]", BOX),
        ("[1e999,2,3,4]", BOX),
        ("[1,2]", BOX),
        ("[1,2,3,4]", DET),  # no label
        ("", POINTS),
        ("three", POINTS),
        ("   ", "gt"),
        ("<think>x</think><answer>gt</answer>", "gt"),  # thinking off: no tags allowed
    ],
)
def test_ill_formed(text, solution):
    assert score(text, solution) == -1.0
    assert score(text, solution, low=0.0) == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "<think>a</think><answer>[1,2,3,4]</answer> extra",
        "<think><think>a</think></think><answer>[1,2,3,4]</answer>",
        "<think>a</think><answer>[1,2,3,4]",
        "<answer>[1,2,3,4]</answer>",
        "<think>a</think><answer><answer>[1,2,3,4]</answer></answer>",
        "<think>a</think><answer></answer>",
    ],
)
def test_thinking_structure_is_anchored(text):
    assert score(text, BOX, thinking=True) == -1.0


def test_explicit_task_overrides_auto():
    assert score("[[1,2],[3,4]]", BOX, task="counting") == 1.0

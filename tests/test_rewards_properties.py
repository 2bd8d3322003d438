"""Property tests over every reward: arbitrary completions are scored (never raise), finite, in bounds."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pr1.rewards import REGISTRY, build, explain

FRAMES = [
    {"kind": "rel1000"},
    {"kind": "abs_resized", "factor": 28, "min_pixels": 3136, "max_pixels": 1003520},
]
SOLUTIONS = {
    "iou": [10.5, 20, 300, 400],
    "count": [[10, 10], [200, 300], [600, 50]],
    "detection": [{"label": "cat", "box": [0, 0, 50, 60]}, {"label": "dog", "box": [100, 100, 640, 480]}],
    "edit": "Hello world",
    "word_f1": "Hello world",
}
BOUNDS = {
    "format": (-1.0, 1.0),
    "iou": (0.0, 1.0),
    "count": (0.0, 1.0),
    "detection": (0.0, 1.0),
    "edit": (0.0, 1.0),
    "word_f1": (0.0, 1.0),
}

_NUMBER = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-0", "1e309", ".5", "5.", "1e-400", "９"]),
)
_BOX = st.lists(_NUMBER, min_size=0, max_size=5).map(lambda xs: "[" + ",".join(xs) + "]")
_NATIVE = st.tuples(_NUMBER, _NUMBER, _NUMBER, _NUMBER).map(
    lambda v: f"<|box_start|>({v[0]},{v[1]}),({v[2]},{v[3]})<|box_end|>"
)
_JSON = st.tuples(_BOX, st.text(max_size=10)).map(lambda v: f'{{"bbox_2d": {v[0]}, "label": "{v[1]}"}}')
_PIECE = st.one_of(
    _BOX,
    _NATIVE,
    _JSON,
    st.sampled_from(
        ["<think>", "</think>", "<answer>", "</answer>", "<|object_ref_start|>", "<|object_ref_end|>"]
    ),
    st.text(max_size=20),
)
COMPLETION = st.one_of(
    st.text(max_size=200),
    st.lists(_PIECE, max_size=30).map("".join),
    st.lists(_PIECE, max_size=30).map(lambda ps: [{"role": "assistant", "content": "".join(ps)}]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(REGISTRY)),
    st.lists(COMPLETION, min_size=1, max_size=3),
    st.booleans(),
    st.sampled_from(FRAMES),
    st.sampled_from(["hungarian", "naive", "greedy"]),
    st.sampled_from(sorted(SOLUTIONS)),
)
def test_any_completion_is_scored_within_bounds(name, completions, thinking, frame, matcher, task):
    options = {"thinking": thinking}
    if name in ("iou", "count", "detection"):
        options["frame"] = frame
    if name in ("count", "detection"):
        options["matcher"] = matcher
    solution = SOLUTIONS[task if name == "format" else name]  # format serves every task
    columns = {"solution": [solution] * len(completions), "image_size": [[640, 480]] * len(completions)}
    totals = REGISTRY[name](completions, **columns, **options)
    rows = explain(name, completions, **columns, **options)
    low, high = BOUNDS[name]
    assert [r["total"] for r in rows] == totals
    for row in rows:
        assert all(isinstance(v, float) and math.isfinite(v) for v in row.values())
        assert low <= row["total"] <= high


# Every value of every Literal option, and the other option kinds, for the rewards that have them.
VARIANTS = {
    "iou": st.fixed_dictionaries(
        {
            "variant": st.sampled_from(["iou", "iou2", "acc50", "release"]),
            "pick": st.sampled_from(["only", "first"]),
            "iou_schedule": st.sampled_from([(), [[0, 0.5], [3, 0.9]]]),
            "step": st.integers(0, 10),
        }
    ),
    "count": st.fixed_dictionaries({"variant": st.sampled_from(["pr1", "release"]), "scale": st.just(0.3)}),
    "detection": st.fixed_dictionaries(
        {
            "variant": st.sampled_from(
                ["soft_f1", "components", "release", "t6_iou", "t6_cls", "t6_f1", "t6_missing"]
            ),
            "labels": st.booleans(),
            "penalty": st.booleans(),
            "iou_min": st.sampled_from([0.0, 0.5]),
            "w_f1": st.sampled_from([0.0, 0.75]),
            "w_recall": st.sampled_from([0.0, 1.0]),
            "w_cls": st.sampled_from([0.0, 1.0]),
            "w_missing": st.sampled_from([0.0, 1.0]),
            "iou_schedule": st.sampled_from([(), [[0, 0.85], [2, 0.95]]]),
            "step": st.integers(0, 5),
        }
    ),
}
SOLUTIONS_COCO = [
    {"label": "cat", "box": [0, 0, 50, 60]},
    {"label": "toothbrush", "box": [100, 100, 640, 480]},
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(VARIANTS)).flatmap(lambda name: st.tuples(st.just(name), VARIANTS[name])),
    st.lists(COMPLETION, min_size=1, max_size=3),
    st.booleans(),
    st.sampled_from(FRAMES),
    st.sampled_from(["hungarian", "naive", "greedy"]),
)
def test_every_option_value_scores_any_completion(name_options, completions, thinking, frame, matcher):
    name, options = name_options
    options = {**options, "thinking": thinking, "frame": frame}
    if name != "iou":
        options["matcher"] = matcher
    step = options.pop("step", None)
    columns = {
        "solution": [SOLUTIONS[name]] * len(completions),
        "image_size": [[640, 480]] * len(completions),
    }
    if name == "detection" and thinking:
        columns["solution"] = [SOLUTIONS_COCO] * len(completions)
    fn = build(name, **options)
    totals = fn(completions, **columns, **({} if step is None else {"step": step}))
    for total in totals:
        assert isinstance(total, float) and math.isfinite(total)
        if name == "detection" and options["variant"] not in ("soft_f1", "components"):
            assert 0.0 <= total <= 3.0
        elif name == "detection" and options["variant"] == "components":
            assert -1.0 <= total <= 1.0 + 0.75 + 1.0 + 1.0
        elif name == "iou" or options.get("variant") == "pr1":
            assert 0.0 <= total <= 1.0
        else:
            assert total <= 1.0  # the released count reward is unclipped below


@pytest.mark.parametrize("repeats", [20_000, 30_000])  # under MAX_CHARS (capped at MAX_ITEMS), over it
def test_huge_completion_is_scored(repeats):
    huge = "[1,2,3,4]" * repeats + "x" * 10
    for name in REGISTRY:
        for task, solution in SOLUTIONS.items():
            if name in (task, "format"):
                out = REGISTRY[name]([huge], solution=[solution], image_size=[[640, 480]])
                assert math.isfinite(out[0])

"""The task mixture: per-record routing of prompts, answers, rewards and metrics; its data; bookkeeping."""

from __future__ import annotations

import math

import pytest
from hydra.utils import instantiate

from pr1.data.mixture import load_mixture, shares
from pr1.module import check_groups, task_rewards, term_stats
from pr1.resolvers import run_options
from pr1.tasks import Task
from pr1.tasks.base import where
from pr1.tasks.mixture import Mixture

KINDS = ("grounding", "counting", "ocr", "detection")


@pytest.fixture
def mixture_and_records(compose, tmp_path):
    def _make(*overrides: str):
        cfg = compose(
            "task=perception",
            "task.train.n=8",
            "task.val.n=8",
            "task.val.weights.detection=1",  # equal validation shares (the default gives detection 4)
            f"paths.data_dir={tmp_path}",
            *overrides,
        )
        return cfg, Task.from_config(cfg.task, run_options(cfg)), instantiate(cfg.task.val)

    return _make


def test_mixture_routes_each_record_to_its_own_task(mixture_and_records):
    cfg, mix, records = mixture_and_records()
    assert isinstance(mix, Mixture) and mix.metric == "score"
    assert sorted(mix.tasks) == sorted(KINDS)
    assert [r["task"] for r in records] == [
        k for k in ("grounding", "counting", "ocr", "detection") for _ in "ab"
    ]
    for r in records:
        own = mix.tasks[r["task"]]
        assert mix.prompt(r) == own.prompt(r) and mix.answer(r) == own.answer(r)
        assert mix.truth_items(r) == own.truth_items(r)
    # Each task's own correct answer scores its maximum on its own terms and NaN on every other task's.
    answers = [mix.answer(r) for r in records]
    per_term = mix.score(answers, records)
    assert sorted(per_term) == sorted(f"{t}/{term.name}" for t in KINDS for term in mix.tasks[t].rewards)
    for i, r in enumerate(records):
        for name, values in per_term.items():
            if name.startswith(r["task"] + "/"):
                assert values[i] == pytest.approx(1.0), (name, r["id"])
            else:
                assert math.isnan(values[i])
    assert mix.total(per_term) == pytest.approx([2.0] * len(records))  # format + answer, weights 1


def test_mixture_metrics_are_each_tasks_own_and_score_is_their_mean(mixture_and_records):
    _, mix, records = mixture_and_records()
    answers = [mix.answer(r) for r in records]
    answers[0] = "no box"  # one grounding image wrong: grounding acc50 0.5
    metrics, rows = mix.evaluate(answers, records)
    own = {}
    for kind in KINDS:
        idx = [i for i, r in enumerate(records) if r["task"] == kind]
        agg, _ = mix.tasks[kind].evaluate([answers[i] for i in idx], [records[i] for i in idx])
        own[kind] = agg
        for k, v in agg.items():
            assert metrics[f"{kind}/{k}"] == pytest.approx(v, nan_ok=True)
    assert own["grounding"]["acc50"] == 0.5
    primary = [own[k][mix.tasks[k].metric] for k in KINDS]
    assert metrics["score"] == pytest.approx(sum(primary) / 4)
    assert [row["task"] for row in rows] == [r["task"] for r in records]
    assert [row["id"] for row in rows] == [r["id"] for r in records]


def test_thinking_answers_carry_a_scene_reasoning_and_score_full(mixture_and_records):
    cfg, mix, records = mixture_and_records("thinking=true")
    answers = [mix.answer(r) for r in records]
    assert all(a.startswith("<think>") and "</think><answer>" in a for a in answers)
    ground = next(r for r in records if r["task"] == "grounding")
    assert (
        mix.reasoning(ground)
        == f"the {ground['question']} is at the {where(ground['solution'], [112, 112])}."
    )
    count = next(r for r in records if r["task"] == "counting")
    assert mix.reasoning(count).startswith(f"I see {len(count['solution'])} ")
    assert mix.total(mix.score(answers, records)) == pytest.approx([2.0] * len(records))


def test_records_in_the_other_style_get_that_styles_prompt_and_answer(mixture_and_records):
    _, mix, records = mixture_and_records()
    r = {**records[0], "thinking": True}
    assert "<think>" in mix.prompt(r) and mix.answer(r).startswith("<think>")
    assert "<think>" not in mix.prompt(records[0])


def test_where_is_a_3x3_grid():
    assert where([0, 0, 10, 10], [90, 90]) == "top left"
    assert where([40, 40, 50, 50], [90, 90]) == "centre"
    assert where([70, 40, 90, 50], [90, 90]) == "right"
    assert where([40, 80, 50, 90], [90, 90]) == "bottom"


def test_shares_are_proportional_and_sum_to_n():
    assert shares(10, {"a": 1, "b": 1}) == {"a": 5, "b": 5}
    assert shares(10, {"a": 2, "b": 1, "c": 1}) == {"a": 5, "b": 3, "c": 2}  # 5, 2.5, 2.5: tie by name
    assert sum(shares(7, {"a": 1, "b": 1, "c": 1}).values()) == 7
    assert shares(4, {"a": 1, "b": 0}) == {"a": 4, "b": 0}
    for bad in ({"a": -1}, {"a": 0}, {"a": float("nan")}, {}):
        with pytest.raises(ValueError, match="weights"):
            shares(4, bad)


def test_a_weighted_task_left_without_records_is_logged(caplog):
    """n too small for the weights (the default validation gives detection 4 of 7 shares) is logged."""
    parts = {"a": [{"id": 1}], "b": [{"id": 2}], "z": [{"id": 3}]}
    with caplog.at_level("WARNING", logger="pr1"):
        out = load_mixture(parts, n=2, weights={"a": 1, "b": 4, "z": 0})
    assert [r["task"] for r in out] == ["b", "b"]
    assert [m for m in caplog.messages if "gets 0 of the 2 records" in m] == [
        "mixture task 'a' (weight 1) gets 0 of the 2 records: raise n"
    ]


def test_load_mixture_tags_cycles_and_styles():
    parts = {"a": [{"id": 1}], "b": [{"id": 2}, {"id": 3}]}
    out = load_mixture(parts, n=6, weights={"a": 1, "b": 2}, styles=[False, True])
    assert [(r["task"], r["id"]) for r in out] == [("a", 1), ("a", 1), ("b", 2), ("b", 3), ("b", 2), ("b", 3)]
    assert [r["thinking"] for r in out] == [False, True] * 3
    assert out.format == "mixture" and out.skip_report["skipped"] == 0
    with pytest.raises(ValueError, match="differ"):
        load_mixture(parts, n=2, weights={"a": 1})
    with pytest.raises(ValueError, match="no records"):
        load_mixture({"a": [], "b": [{"id": 2}]}, n=2)


def test_group_check_refuses_a_group_that_mixes_tasks():
    a, b = {"task": "ocr"}, {"task": "counting"}
    check_groups([a, a, b, b], 2)
    with pytest.raises(RuntimeError, match="mixes"):
        check_groups([a, b, b, b], 2)


def test_per_task_logging_ignores_other_tasks_rows():
    import torch

    nan = math.nan
    stats = term_stats({"ocr/edit": [0.5, 0.7, nan, nan], "counting/count": [nan, nan, nan, nan]})
    assert stats["ocr/reward/edit"] == pytest.approx(0.6)
    assert math.isnan(stats["counting/reward/count"])  # absent from the batch: NaN, not a stale value

    class T:
        def __init__(self, name):
            self.name = name

    terms = [T("ocr/edit"), T("counting/count")]
    out = task_rewards(torch.tensor([1.0, 3.0, 5.0, 7.0]), {"ocr": [0, 1]}, terms)
    assert out["ocr/reward"] == 2.0 and math.isnan(out["counting/reward"])


def test_paired_improvement_per_task_matches_independent_computations(mixture_and_records):
    from scipy import stats as sps

    from pr1.paired import improvement

    _, mix, records = mixture_and_records("task.val.n=16")
    good = [mix.answer(r) for r in records]
    bad = ["nothing"] * len(records)
    start_answers = [b if i % 2 else g for i, (g, b) in enumerate(zip(good, bad, strict=True))]
    _, start = mix.evaluate(start_answers, records)
    _, end = mix.evaluate(good, records)
    out = improvement(mix, records, start, end, resamples=29)
    assert sorted(out) == ["counting/count_acc", "detection/ap", "grounding/acc50", "ocr/f1"]
    g = out["grounding/acc50"]
    # 4 grounding images, the odd ones wrong at the start: per-image gains 0, 1, 0, 1
    ref = sps.ttest_rel([1, 1, 1, 1], [1, 0, 1, 0]).confidence_interval(0.95)
    assert (g["start"], g["end"], g["diff"], g["n"]) == (0.5, 1.0, 0.5, 4)
    assert (g["lo"], g["hi"]) == pytest.approx((ref.low, ref.high))
    d = out["detection/ap"]
    assert d["method"].startswith("paired bootstrap") and d["end"] == pytest.approx(1.0)
    assert d["lo"] <= d["diff"] <= d["hi"]
    assert improvement(mix, records, end, end, resamples=29)["ocr/f1"]["diff"] == 0.0


def test_mixture_readers_are_the_union_of_its_tasks(mixture_and_records):
    _, mix, _ = mixture_and_records()
    assert mix.readers("matcher") == ["counting: reward count", "detection: reward detection"]
    assert "grounding: prompt" in mix.readers("thinking")

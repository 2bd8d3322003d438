"""bench/gpu_check.py: its mixture routing scores each record with its own task, and the whole check runs at
tiny size on CPU (every mode, both sides), so that the script a GPU run needs does not rot."""

from __future__ import annotations

import json
import math

import pytest

from bench.gpu_check import MODES, main, trl_reward
from pr1.tasks import RewardTerm, RunOptions
from pr1.tasks.counting import Counting
from pr1.tasks.grounding import Grounding
from pr1.tasks.mixture import Mixture
from tests.helpers import REL1000


def constant(value: float):
    """A reward that scores every completion `value` (and checks that it gets only its own rows' columns)."""

    def fn(completions, solution, image_size, **_):
        assert len(completions) == len(solution) == len(image_size)
        return [value] * len(completions)

    return fn


def mixed_tasks() -> dict:
    run = RunOptions(thinking=False, frame=REL1000)
    return {
        "grounding": Grounding([RewardTerm("iou", 2.0, constant(0.25))], "acc50", run),
        "counting": Counting([RewardTerm("count", 1.0, constant(0.5))], "count_acc", run),
    }


RECORDS = [
    {"task": "grounding", "question": "the red box", "solution": [1, 2, 30, 40], "image_size": [112, 112]},
    {"task": "counting", "question": "red ellipses", "solution": [[5, 6], [7, 8]], "image_size": [112, 112]},
    {"task": "counting", "question": "blue dots", "solution": [[9, 9]], "image_size": [112, 112]},
]


def test_mixture_routes_prompts_and_rewards_to_each_records_task():
    tasks = mixed_tasks()
    mixed = Mixture(tasks, tasks["grounding"].run)
    assert [t.name for t in mixed.rewards] == ["grounding/iou", "counting/count"]
    assert [mixed.prompt(r) for r in RECORDS] == [tasks[r["task"]].prompt(r) for r in RECORDS]
    assert mixed.render(RECORDS[1]) == tasks["counting"].render(RECORDS[1])
    scores = mixed.score(["a", "b", "c"], RECORDS)
    nan = math.nan
    assert str(scores) == str({"grounding/iou": [0.25, nan, nan], "counting/count": [nan, 0.5, 0.5]})
    # The module's weighted sum per row is that row's own task's reward.
    assert mixed.total(scores) == [0.5, 0.5, 0.5]


def test_trl_reward_scores_its_kinds_rows_and_leaves_the_others_out():
    tasks = mixed_tasks()
    columns = {
        "task": [r["task"] for r in RECORDS],
        "solution": [json.dumps(r["solution"]) for r in RECORDS],
        "image_size": [r["image_size"] for r in RECORDS],
        "prompt": ["unused"] * 3,
    }
    counting = trl_reward("counting", tasks["counting"].rewards[0])
    assert counting(["a", "b", "c"], **columns) == [None, 0.5, 0.5]
    assert counting.__name__ == "counting_count"
    assert trl_reward("grounding", tasks["grounding"].rewards[0])(["a", "b", "c"], **columns) == [
        0.25,
        None,
        None,
    ]


def test_bad_arguments_are_named():
    with pytest.raises(SystemExit, match="unknown --models/--modes \\['qwen4vl_1b'\\]"):
        main(["--device", "cpu", "--tiny", "--models", "qwen4vl_1b"])
    with pytest.raises(SystemExit, match="--tiny runs on CPU"):
        main(["--tiny"])


@pytest.mark.slow
def test_tiny_cpu_check_runs_every_mode_on_both_sides(tmp_path):
    out = tmp_path / "gpu.json"
    report = main(["--device", "cpu", "--tiny", "--steps", "2", "--models", "qwen25vl_3b", "--out", str(out)])
    assert json.loads(out.read_text()) == report and report["complete"]
    runs = report["results"]["qwen25vl_3b"]
    assert set(runs) == set(MODES)
    for mode, row in runs.items():
        assert row["pr1_fast_path"] is True
        for side in ("pr1", "trl"):
            r = row[side]
            assert r["s_per_step"] > 0 and r["generated_tokens_per_s"] > 0 and r["peak_memory_mib"] > 0, mode
            assert r["completion_length"] <= report["setup"]["max_new_tokens"]
            assert len(row["raw"][side]["step_s"]) == 2  # one interval per step
        assert row["pr1_over_trl"]["s_per_step"] == pytest.approx(
            row["pr1"]["s_per_step"] / row["trl"]["s_per_step"]
        )

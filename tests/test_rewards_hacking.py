"""The reward-hacking battery (bench/reward_hacking.py): every cheat scores well below the correct answer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "reward_hacking.py"
_SPEC = importlib.util.spec_from_file_location("reward_hacking", _PATH)
battery = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(battery)

ROWS = battery.scores()


def test_every_task_has_the_required_cheats():
    for task in battery.SOLUTION:
        cases = " ".join(r["case"] for r in ROWS if r["task"] == task)
        geometric = () if task == "ocr" else ("whole-image", "50x", "x2<x1", "wrong frame")
        for cheat in ("empty", "outside the tags", *geometric):
            assert cheat in cases, (task, cheat)
    assert any("every COCO label" in r["case"] for r in ROWS)


@pytest.mark.parametrize("row", [r for r in ROWS if r["case"] != "correct answer"], ids=lambda r: r["case"])
def test_cheats_score_low(row):
    correct = next(r for r in ROWS if r["task"] == row["task"] and r["case"] == "correct answer")
    assert correct["answer"] == 1.0 and correct["format"] == 1.0
    assert row["sum"] < correct["sum"]
    if "(informative)" not in row["case"]:
        assert row["answer"] <= 0.5
        assert row["sum"] <= correct["sum"] - 0.5

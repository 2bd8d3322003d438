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


def _correct(row: dict) -> dict:
    """The correct answer's row under the same options (the tag in brackets names them)."""
    tag = row["case"][row["case"].index("[") :].removesuffix(" (informative)") if "[" in row["case"] else ""
    name = f"correct answer {tag}".strip()
    return next(r for r in ROWS if r["task"] == row["task"] and r["case"] == name)


def test_every_variant_is_covered():
    tags = {(r["task"], r["case"][r["case"].index("[") :]) for r in ROWS if "correct answer [" in r["case"]}
    assert len(tags) == len(battery.VARIANTS)


@pytest.mark.parametrize(
    "row", [r for r in ROWS if "correct answer" not in r["case"]], ids=lambda r: r["case"]
)
def test_cheats_score_low(row):
    correct = _correct(row)
    assert correct["answer"] == pytest.approx(row["best"], abs=1e-7) and correct["format"] == 1.0
    assert row["sum"] <= correct["sum"]  # a known weakness may tie the correct answer (t6_iou duplicates)
    if "(informative)" not in row["case"]:
        assert row["sum"] < correct["sum"]
        assert row["answer"] <= 0.5 * row["best"]
        assert row["sum"] <= correct["sum"] - 0.5

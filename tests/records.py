"""Record files compared by the kill and SLURM requeue tests: a resumed run must equal an unbroken one."""

from __future__ import annotations

import json
from pathlib import Path

import torch

METRIC_KEYS = ("status", "steps", "final", "best", "reward_start", "reward_end", "task_metric", "arm")


def history(path: Path) -> list[dict]:
    """history.jsonl without the wall-clock timings (time/*), which no two runs share."""
    rows = [json.loads(line) for line in (path / "history.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def checkpoint_state(path: Path) -> dict:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return {
        "global_step": ckpt["global_step"],
        "weights": ckpt["state_dict"],
        "optimizer": ckpt["optimizer_states"],
        "samples_done": ckpt["pr1"]["samples_done"],
    }


def assert_same_tensors(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def assert_same_records(whole: Path, broken: Path) -> None:
    assert history(broken) == history(whole)
    mw, mb = (json.loads((d / "metrics.json").read_text()) for d in (whole, broken))
    assert {k: mb[k] for k in METRIC_KEYS} == {k: mw[k] for k in METRIC_KEYS}
    for name in ("best.ckpt", "last.ckpt"):
        assert_same_tensors(
            checkpoint_state(broken / "checkpoints" / name),
            checkpoint_state(whole / "checkpoints" / name),
            name,
        )
    assert not list(broken.glob(".*.tmp")) and not list((broken / "checkpoints").glob(".*.tmp"))
    assert not list((broken / "checkpoints").glob("*-v*.ckpt"))  # one writer: no Lightning duplicates

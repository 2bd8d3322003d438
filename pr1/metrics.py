"""Evaluation metrics per task kind, computed from greedy completions with the same parser as training.

Each metric function takes (completions, records, frame, thinking) and returns (aggregate metrics, per-sample
rows) so eval can write both a metrics JSON and a predictions JSONL.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pr1 import rewards


def grounding(completions: list[str], records: list[dict], frame: dict, thinking: bool):
    """Acc@0.5 (share of IoU >= 0.5, RefCOCO's metric) and mean IoU."""
    iou = rewards.build("iou", variant="iou", thinking=thinking, frame=frame)
    scores = np.asarray(
        iou(
            completions,
            solution=[r["solution"] for r in records],
            image_size=[r["image_size"] for r in records],
        ),
        dtype=float,
    )
    rows = [
        {"id": r["id"], "completion": c, "iou": float(s)} for r, c, s in zip(records, completions, scores)
    ]
    agg = {"acc50": float((scores >= 0.5).mean()), "miou": float(scores.mean())} if len(scores) else {}
    return agg, rows


METRICS: dict[str, Callable] = {"grounding": grounding}

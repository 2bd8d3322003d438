"""Grounding reward: IoU of the answer's box with the ground-truth box."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from pr1.coords import REL1000, clip, normalise, quantise
from pr1.matching import iou_matrix
from pr1.parsing import Answer, parse_items
from pr1.rewards.format import well_formed
from pr1.rewards.registry import register


def target_boxes(solution: Any, image_size: tuple[float, float], frame: Mapping[str, Any]) -> np.ndarray:
    """Ground-truth boxes (pixels) as the best answer the model can write, in image-normalised coordinates."""
    return normalise(
        quantise(np.asarray(solution, dtype=float).reshape(-1, 4), image_size, frame), image_size, frame
    )


def predicted(
    coords: list[tuple[float, ...]], image_size: tuple[float, float], frame: Mapping[str, Any]
) -> np.ndarray:
    """Predicted frame coordinates -> image-normalised, clipped to the image ([0, 1])."""
    width = len(coords[0]) if coords else 4
    return clip(normalise(np.asarray(coords, dtype=float).reshape(-1, width), image_size, frame), (1.0, 1.0))


@register("iou")
def iou_reward(
    answer: Answer,
    solution: Any,
    image_size: tuple[float, float],
    *,
    variant: Literal["iou", "iou2", "acc50"] = "iou",
    pick: Literal["only", "first"] = "only",
    frame: Mapping[str, Any] = REL1000,
) -> dict[str, float]:
    """answer = IoU(pred, gt) (variant iou), IoU² (iou2: the released code), or 1[IoU >= 0.5] (acc50).

    pred is the answer's box, clipped to the image: with pick="only" an answer with several boxes scores 0
    (the task asks for one box), with pick="first" the first box counts (the released code and its eval).
    No box, a point, or a degenerate box (x2 <= x1 or y2 <= y1) scores 0. gt is the ground truth quantised to
    the frame (`pr1.coords.quantise`). Range [0, 1].
    """
    parsed = parse_items(answer.text, "box")
    boxes = [it.coords for it in parsed.items]
    iou = 0.0
    if boxes and len(boxes[0]) == 4 and (pick == "first" or len(boxes) == 1):
        iou = float(
            iou_matrix(predicted(boxes, image_size, frame), target_boxes(solution, image_size, frame))[0, 0]
        )
    value = {"iou": iou, "iou2": iou * iou, "acc50": float(iou >= 0.5)}[variant]
    return {
        "format": float(well_formed("grounding", answer, parsed)),
        "iou": iou,
        "n_pred": float(len(boxes)),
        "answer": value,
        "total": value,
    }

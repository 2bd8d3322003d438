"""Grounding reward: IoU of the answer's box with the ground-truth box."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from pr1.coords import REL1000, clip, normalise, quantise
from pr1.matching import iou_matrix
from pr1.parsing import Answer, parse_items
from pr1.rewards import dynamic, release
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


def _release_iou(
    text: str | None, solution: Any, image_size: tuple[float, float], frame: Mapping[str, Any]
) -> float:
    """IoU as the released code computes it: its first-box parse, frame coordinates, no clipping."""
    box = release.grounding_box(text, frame["kind"] == "rel1000")
    gt = quantise(np.asarray(solution, dtype=float).reshape(-1, 4), image_size, frame)
    return float(iou_matrix([box], gt)[0, 0])


@register("iou")
def iou_reward(
    answer: Answer,
    solution: Any,
    image_size: tuple[float, float],
    *,
    variant: Literal["iou", "iou2", "acc50", "release"] = "iou",
    pick: Literal["only", "first"] = "only",
    iou_schedule: Sequence[Sequence[float]] = (),
    step: int = 0,
    frame: Mapping[str, Any] = REL1000,
) -> dict[str, float]:
    """answer = IoU(pred, gt) (variant iou), IoU² (iou2), 1[IoU >= 0.5] (acc50), or the released reward.

    pred is the answer's box, clipped to the image: with pick="only" an answer with several boxes scores 0
    (the task asks for one box), with pick="first" the first item counts (0 if it is a point). No box, a
    point, or a degenerate box (x2 <= x1 or y2 <= y1) scores 0. gt is the ground truth quantised to the frame
    (`pr1.coords.quantise`). release: IoU² of the box the released parse finds first
    (`pr1.rewards.release.grounding_box`), unclipped; `pick` does not apply. Dynamic IoU (V-Triune):
    with `iou_schedule` (`pr1.rewards.dynamic`), an IoU below the scheduled threshold at global step `step`
    counts as 0 before the variant applies. Range [0, 1].
    """
    parsed = parse_items(answer.text, "box")
    boxes = [it.coords for it in parsed.items]
    iou = 0.0
    if variant == "release":
        iou = _release_iou(answer.text, solution, image_size, frame) if answer.text is not None else 0.0
    elif boxes and len(boxes[0]) == 4 and (pick == "first" or len(boxes) == 1):
        pred = predicted(boxes[:1], image_size, frame)
        iou = float(iou_matrix(pred, target_boxes(solution, image_size, frame))[0, 0])
    if iou < dynamic.threshold(iou_schedule, step):
        iou = 0.0
    value = {"iou": iou, "iou2": iou * iou, "acc50": float(iou >= 0.5), "release": iou * iou}[variant]
    return {
        "format": float(well_formed("grounding", answer, parsed)),
        "iou": iou,
        "n_pred": float(len(boxes)),
        "answer": value,
        "total": value,
    }

"""Detection reward: predictions matched one-to-one to ground truth, a soft F1 over matched IoU."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pr1.coords import REL1000
from pr1.matching import MatcherName, iou_matrix, match
from pr1.parsing import Answer, parse_items
from pr1.rewards.format import well_formed
from pr1.rewards.iou import predicted, target_boxes
from pr1.rewards.registry import register


def _norm_label(label: Any) -> str:
    return " ".join(str(label).lower().split())


@register("detection")
def detection_reward(
    answer: Answer,
    solution: Any,
    image_size: tuple[float, float],
    *,
    matcher: MatcherName = "hungarian",
    labels: bool = True,
    iou_min: float = 0.0,
    frame: Mapping[str, Any] = REL1000,
) -> dict[str, float]:
    """answer = 2 * sum_matched r_ij / (N + M): the F1 of soft precision sum r / N and soft recall sum r / M.

    r_ij = IoU(pred_i, gt_j), times 1[label_i == label_j] when `labels` (case/space-insensitive), and 0 when
    below `iou_min`; pairs come from `matcher` (hungarian maximises sum r; naive pairs in written order;
    greedy takes the best pair first). N counts every predicted item (points and reversed or empty boxes
    match nothing); M ground-truth objects. One-to-one matching pays a duplicated box once while N grows, so
    repeats, every label listed, and extra or missing boxes all lower the score. Range [0, 1]; N = M = 0
    scores 1.
    """
    parsed = parse_items(answer.text, "box")
    items = parsed.items
    coords = [it.coords if len(it.coords) == 4 else (np.nan,) * 4 for it in items]
    pred = predicted(coords, image_size, frame)
    gt = target_boxes([o["box"] for o in solution], image_size, frame)
    n, m = len(pred), len(gt)
    iou = iou_matrix(pred, gt)
    reward = iou
    if labels:
        ids = {label: i for i, label in enumerate({_norm_label(o["label"]) for o in solution})}
        gt_ids = np.asarray([ids[_norm_label(o["label"])] for o in solution], dtype=np.intp)
        pred_ids = np.asarray([ids.get(_norm_label(it.label), -1) for it in items], dtype=np.intp)
        reward = iou * (pred_ids[:, None] == gt_ids[None, :])
    reward = np.where(reward >= iou_min, reward, 0.0)
    rows, cols = match(reward, matcher)
    paid = reward[rows, cols]
    kept = paid > 0
    value = float(2 * paid.sum() / (n + m)) if n + m else 1.0
    return {
        "format": float(well_formed("detection", answer, parsed)),
        "n_pred": float(n),
        "n_gt": float(m),
        "n_matched": float(kept.sum()),
        "mean_iou": float(iou[rows, cols][kept].mean()) if kept.any() else 0.0,
        "answer": value,
        "total": value,
    }

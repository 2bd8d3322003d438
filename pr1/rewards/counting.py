"""Counting reward: counting as point detection (Perception-R1), matched points paid by distance."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from pr1.coords import REL1000, normalise, quantise
from pr1.matching import MatcherName, match, point_similarity
from pr1.parsing import Answer, Item, parse_items
from pr1.rewards import release
from pr1.rewards.format import well_formed
from pr1.rewards.registry import register


def _point(xy: tuple[float, ...]) -> tuple[float, float]:
    """A point stays; a box becomes its centre, NaN when reversed or empty (an invalid box counts nothing)."""
    if len(xy) == 2:
        return xy[0], xy[1]
    x1, y1, x2, y2 = xy
    return ((x1 + x2) / 2, (y1 + y2) / 2) if x2 > x1 and y2 > y1 else (np.nan, np.nan)


def predicted_points(
    items: list[Item], image_size: tuple[float, float], frame: Mapping[str, Any]
) -> np.ndarray:
    """Image-normalised (N, 2) points of the answer's items; NaN for invalid and out-of-image ones."""
    pts = np.asarray([_point(it.coords) for it in items], dtype=float).reshape(-1, 2)
    pts = normalise(pts, image_size, frame)
    with np.errstate(invalid="ignore"):
        inside = ((pts >= 0) & (pts <= 1)).all(axis=1)
    return np.where(inside[:, None], pts, np.nan)


def target_points(solution: Any, image_size: tuple[float, float], frame: Mapping[str, Any]) -> np.ndarray:
    """Ground-truth points (or box centres), quantised to the frame, image-normalised."""
    gt = [tuple(float(v) for v in p) for p in solution]
    frame_gt = [_point(tuple(quantise(p, image_size, frame))) for p in gt]
    return normalise(np.asarray(frame_gt, dtype=float).reshape(-1, 2), image_size, frame)


def _release_count(
    answer: Answer, solution: Any, image_size: tuple[float, float], frame: Mapping[str, Any]
) -> dict[str, float]:
    ok = release.counting_format(answer.text)
    pred = 1000 * normalise(release.counting_centres(answer.text), image_size, frame)
    gt = 1000 * target_points(solution, image_size, frame)
    value = release.counting(pred, gt) if ok else 0.0
    return {
        "format": float(well_formed("counting", answer)),
        "n_pred": float(len(pred)),
        "n_gt": float(len(gt)),
        "count_exact": float(len(pred) == len(gt)),
        "answer": value,
        "total": value,
    }


@register("count")
def count_reward(
    answer: Answer,
    solution: Any,
    image_size: tuple[float, float],
    *,
    variant: Literal["pr1", "release"] = "pr1",
    matcher: MatcherName = "hungarian",
    scale: float = math.sqrt(2),
    frame: Mapping[str, Any] = REL1000,
) -> dict[str, float]:
    """answer = sum over matched pairs of max(0, 1 - d / scale), divided by max(N, M).

    d is the distance of a predicted and a ground-truth point in image-normalised coordinates (the image is
    the unit square, so d <= sqrt(2)); N predicted items (points, or boxes as their centres; invalid and
    out-of-image ones count in N but match nothing), M ground-truth points; pairs by `matcher`. With the
    default scale sqrt(2) this equals the released code's (min(N,M)/max(N,M)) * (1 - mean matched d/sqrt(2))
    (whose d is on the 0-1000 grid, normalised by 1000*sqrt(2)); a smaller scale (> 0) pays only close points.
    Range [0, 1]; 1 only for the exact count with every point on its target (N = M = 0 also scores 1).
    variant="release": the released reward exactly (`pr1.rewards.release.counting`): 0 unless the answer has
    the released format (`release.counting_format`), points are the centres of the native boxes only (points
    and other spans are skipped), unclipped, Hungarian on distance in 0-1000 units; `matcher` and `scale` do
    not apply.
    """
    if variant == "release":
        return _release_count(answer, solution, image_size, frame)
    parsed = parse_items(answer.text, "point")
    pred = predicted_points(parsed.items, image_size, frame)
    gt = target_points(solution, image_size, frame)
    n, m = len(pred), len(gt)
    sim = point_similarity(pred, gt, scale)
    rows, cols = match(sim, matcher)
    paid = sim[rows, cols]
    value = float(paid.sum() / max(n, m)) if max(n, m) else 1.0
    return {
        "format": float(well_formed("counting", answer, parsed)),
        "n_pred": float(n),
        "n_gt": float(m),
        "n_matched": float((paid > 0).sum()),
        "count_exact": float(n == m),
        "answer": value,
        "total": value,
    }

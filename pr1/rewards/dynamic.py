"""Dynamic IoU (V-Triune, arXiv 2505.18129): an IoU threshold that rises over training, read from the step.

A loose threshold early pays rough boxes (dense signal while the policy is weak); a strict one late stops
paying near-misses (no reward ambiguity once boxes are good). V-Triune's schedule, with T the total number of
training steps: 0.85 while step / T <= 0.1, 0.95 while step / T <= 0.25, then 0.99 (`vtriune_schedule`).

A schedule is `[[from_step, threshold], ...]`: the threshold of the last entry whose from_step <= step. The
first entry starts at step 0; steps strictly increase; thresholds lie in [0, 1]. An empty schedule is off.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from functools import lru_cache

Schedule = Sequence[Sequence[float]]


@lru_cache(maxsize=64)
def _checked(schedule: tuple[tuple[float, ...], ...]) -> tuple[tuple[int, float], ...]:
    out: list[tuple[int, float]] = []
    for entry in schedule:
        if len(entry) != 2 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in entry):
            raise ValueError(f"iou_schedule entries must be [from_step, threshold], got {entry!r}")
        start, thr = entry
        if start != int(start) or start < 0 or not (0.0 <= thr <= 1.0 and math.isfinite(thr)):
            raise ValueError(f"iou_schedule entry {entry!r}: from_step an integer >= 0, threshold in [0, 1]")
        if out and int(start) <= out[-1][0]:
            raise ValueError(f"iou_schedule steps must strictly increase, got {list(schedule)!r}")
        out.append((int(start), float(thr)))
    if out and out[0][0] != 0:
        raise ValueError(f"iou_schedule must start at step 0, got {list(schedule)!r}")
    return tuple(out)


def check_schedule(schedule: Schedule) -> tuple[tuple[int, float], ...]:
    """The schedule as (from_step, threshold) pairs; ValueError naming the bad entry otherwise."""
    try:
        frozen = tuple(tuple(entry) for entry in schedule)
    except TypeError as err:
        raise ValueError(f"iou_schedule must be a list of [from_step, threshold], got {schedule!r}") from err
    return _checked(frozen)


def threshold(schedule: Schedule, step: int, default: float = 0.0) -> float:
    """The IoU threshold at global step `step` (`default` when the schedule is empty)."""
    pairs = check_schedule(schedule)
    value = default
    for start, thr in pairs:
        if step >= start:
            value = thr
    return value


def vtriune_schedule(total_steps: int) -> list[list[float]]:
    """V-Triune's schedule for a run of `total_steps` steps, in this module's form."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    # step / T <= 1/10 holds up to step T // 10 (and <= 1/4 up to T // 4); the next threshold starts after.
    # For T < 4 the 0.95 stage is empty (it starts where 0.99 does) and is dropped.
    stages = [[0, 0.85], [total_steps // 10 + 1, 0.95], [total_steps // 4 + 1, 0.99]]
    return [s for s, nxt in zip(stages, [*stages[1:], [None]], strict=True) if s[0] != nxt[0]]

"""The records of a task mixture: each task's own records, tagged with the task, in configured shares."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

from pr1.data.records import Records, merge_reports

log = logging.getLogger("pr1")


def shares(n: int, weights: Mapping[str, float]) -> dict[str, int]:
    """`n` split over the tasks in proportion to their weights (largest remainders, so they sum to `n`)."""
    ok = all(isinstance(w, (int, float)) and math.isfinite(w) and w >= 0 for w in weights.values())
    if not ok or not weights or sum(weights.values()) <= 0:
        raise ValueError(f"task weights must be finite, >= 0 and not all 0, got {dict(weights)}")
    total = float(sum(weights.values()))
    exact = {k: n * w / total for k, w in weights.items()}
    out = {k: int(math.floor(v)) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: (out[k] - exact[k], k))[: n - sum(out.values())]:
        out[k] += 1
    return out


def load_mixture(
    parts: Mapping[str, Sequence[dict]],
    n: int,
    weights: Mapping[str, float] | None = None,
    styles: Sequence[bool] | None = None,
) -> Records:
    """`n` records over the tasks of `parts` (name -> that task's loaded records), `weights` the shares
    (default equal), each record tagged `task: <name>`; the first records of each part are taken, cycling
    through a part that is shorter than its share. Records stay grouped by task: the training sampler
    shuffles them. `styles` (e.g. [false, true]) also tags record i with `thinking: styles[i % len]`, for a
    warm start trained in both answer styles.
    """
    weights = dict(weights) if weights is not None else {name: 1.0 for name in parts}
    unknown = sorted(set(weights) ^ set(parts))
    if unknown:
        raise ValueError(f"task weights {sorted(weights)} and task data {sorted(parts)} differ on {unknown}")
    if n < 1:
        raise ValueError(f"a mixture needs n >= 1 records, got {n}")
    out = []
    for name, k in shares(int(n), weights).items():
        part = parts[name]
        if k and not part:
            raise ValueError(f"mixture task {name!r} has no records but weight {weights[name]}")
        if not k and weights[name] > 0:
            log.warning(
                "mixture task %r (weight %s) gets 0 of the %d records: raise n", name, weights[name], n
            )
        out += [{**part[i % len(part)], "task": name} for i in range(k)]
    if styles:
        out = [{**r, "thinking": bool(styles[i % len(styles)])} for i, r in enumerate(out)]
    report = merge_reports(*(getattr(p, "skip_report", None) or merge_reports() for p in parts.values()))
    return Records(out, skip_report=report, format="mixture")

"""The ablation report of one sweep: per arm and metric the mean with a 95% t-interval over seeds, the paired
difference along each swept axis, the swept overrides nothing reads, curves, and a bar chart.

    python -m pr1.report results/<sweep> [--out DIR] [--metric val/acc50]
    python -m pr1.report --wandb-group <sweep> --wandb-project P [--wandb-entity E] --out DIR

Reads `results/<sweep>/<arm>/seed<k>/{metrics.json,history.jsonl}` (see pr1.results), or the W&B runs of a
group, and writes `report.md`, `report.csv` (per arm), `report_paired.csv` (paired differences), `curves.png`
and `final_bar.png`. Only completed runs enter the statistics; missing, failed, still-running and unreadable
runs are listed with the reason instead. The metrics are the run's task metric and, for a task mixture, every
`val/<task>/<metric>` of its final validation (the paper's Table 5: arms x per-task metrics). The output is a
pure function of the run records: regenerating it from committed metrics gives the same bytes. Exit code 0
when at least one run completed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from pr1.results import (
    HISTORY_FILE,
    RunRecordError,
    dedupe_steps,
    read_jsonl,
    read_run_metrics,
    summarize_history,
)
from pr1.stats import Interval, mean_ci, paired_diff_ci
from pr1.sweep_summary import DEFAULT_VALUE, arm_axes, check_overrides, read_run_dir

log = logging.getLogger(__name__)

DEFAULT_METRIC = "val/acc50"
REWARD_KEY = "train/reward"
CSV_STATS = ("mean", "std", "lo", "hi", "n")
# No matplotlib version in the PNGs: regenerating a committed report with another release keeps the bytes
# wherever the drawing itself is unchanged.
PNG_METADATA = {"Software": None}


class ReportError(Exception):
    """A condition the user must fix (no runs, W&B unreachable); main prints it without a traceback."""


@dataclass
class Run:
    """One run of the sweep as the report sees it, finished or not."""

    arm: str
    seed: int | None
    source: str  # run dir relative to the sweep dir, or W&B run path, so the user can find it
    status: str  # completed | failed | running (metrics.json), or missing | corrupt | invalid (the report's)
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # deduped, sorted by step
    axes: dict[str, str] = field(default_factory=dict)  # ablation override key -> value (the arm's id)
    config: DictConfig | None = None  # the saved composed config (config.yaml), to ask the task its readers
    config_error: str = ""  # why config is None

    @property
    def finished(self) -> bool:
        return self.status == "completed"


@dataclass(frozen=True)
class Column:
    """One statistic of a run: `key` names it in report.csv, `header` in report.md; `metric` columns are task
    metrics (the Metrics table, the paired differences and the bar chart), the others describe training."""

    key: str
    header: str
    value: Callable[[Run], float]
    metric: bool


@dataclass
class ArmStats:
    """One table row: per column, the mean and t-interval over the arm's finished seeds, and the std."""

    arm: str
    n_finished: int
    n_total: int
    ci: dict[str, Interval]  # column key -> interval
    std: dict[str, float]


@dataclass(frozen=True)
class PairedDiff:
    """`axis=a` minus `axis=b` on arms that agree on every other swept axis (`context`), paired by seed."""

    axis: str
    a: str
    b: str
    context: str
    column: str  # header of the metric column
    ci: Interval


def _float(value: Any) -> float:
    """A metrics.json number as float; NaN for null, missing or non-numeric values."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _seed_from_dirname(name: str) -> int | None:
    digits = name.removeprefix("seed")
    return int(digits) if digits.isdigit() else None


def _load_run_dir(sweep_dir: Path, rel: Path) -> Run:
    """The run in sweep_dir/rel; every way a run dir can be broken becomes a status, never an exception."""
    run_dir = sweep_dir / rel
    run = Run(arm=rel.parent.name, seed=_seed_from_dirname(rel.name), source=str(rel), status="")
    try:
        m = read_run_metrics(run_dir)
    except RunRecordError as e:
        run.status, run.error = e.status, str(e)
        return run
    run.arm, run.seed, run.status, run.error, run.metrics = m["arm"], m["seed"], m["status"], m["error"], m
    run.axes, run.config, run.config_error = read_run_dir(run_dir, m.get("overrides") or [])
    try:
        run.history = dedupe_steps(read_jsonl(run_dir / HISTORY_FILE))
    except FileNotFoundError:
        pass  # reported as "no history" in the notes
    except OSError as e:
        log.warning("%s: cannot read %s: %s", run_dir, HISTORY_FILE, e)
    return run


def load_sweep(sweep_dir: str | os.PathLike[str]) -> list[Run]:
    """Every `<arm>/seed<k>` run dir of a sweep, readable or not."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ReportError(f"{sweep_dir} is not a directory; expected results/<sweep>/<arm>/seed<k>/")
    runs = [
        _load_run_dir(sweep_dir, d.relative_to(sweep_dir))
        for d in sorted(sweep_dir.glob("*/seed*"))
        if d.is_dir()
    ]
    # An unreadable run only knows its (sanitised) arm dir name; take the arm id from a readable sibling so it
    # counts towards the right table row.
    arm_of_dir = {Path(r.source).parent.name: r.arm for r in runs if r.metrics}
    for r in runs:
        if not r.metrics:
            r.arm = arm_of_dir.get(r.arm, r.arm)
    return runs


def load_wandb(group: str, project: str, entity: str | None = None) -> list[Run]:
    """The runs of a W&B group, in the same form as load_sweep's, through the public API (needs network).

    The runs' configs must hold `arm` and `seed` (pr1's W&B logger puts them there); final/best/reward come
    from the full history by `pr1.results.summarize_history`, the summary metrics.json holds.
    """
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in {"offline", "disabled", "dryrun"}:
        raise ReportError(
            f"WANDB_MODE={mode}: cannot pull runs from W&B. Unset WANDB_MODE and log in (`wandb login` or "
            "WANDB_API_KEY), or build the report from the local results/<sweep> directory."
        )
    import wandb  # deferred: slow to import, and only this path needs it

    path = f"{entity}/{project}" if entity else project
    try:
        wruns = list(wandb.Api(timeout=30).runs(path, filters={"group": group}))
        runs = [_wandb_run(w) for w in wruns]
    except (wandb.errors.Error, OSError) as e:  # OSError covers requests' network errors
        raise ReportError(
            f"cannot read W&B runs of group {group!r} in {path!r}: {e}. Check the network and the login "
            "(`wandb login` or WANDB_API_KEY), or build the report from results/<sweep>."
        ) from e
    if not runs:
        raise ReportError(f"W&B project {path!r} has no runs in group {group!r}")
    return runs


def _wandb_run(w: Any) -> Run:
    """A Run from a wandb.apis.public.Run; Lightning's WandbLogger logs the step as `trainer/global_step`."""
    rows = []
    for row in w.scan_history():
        step = next((row[k] for k in ("trainer/global_step", "step", "_step") if k in row), None)
        if isinstance(step, (int, float)) and math.isfinite(step):
            rows.append({**row, "step": int(step)})
    history = dedupe_steps(rows)
    status = {"finished": "completed", "crashed": "failed", "killed": "failed"}.get(w.state, w.state)
    seed = w.config.get("seed")
    task_metric = f"val/{(w.config.get('task') or {}).get('metric', DEFAULT_METRIC.split('/', 1)[1])}"
    metrics = {
        **summarize_history(history, task_metric),
        "steps": history[-1]["step"] if history else 0,
        "wall_time_s": w.summary.get("_runtime"),
    }
    arm = str(w.config.get("arm", w.name))
    return Run(
        arm=arm,
        seed=seed if isinstance(seed, int) else None,
        source="/".join(w.path),
        status=status,
        error=None if status == "completed" else f"W&B state {w.state}",
        metrics=metrics,
        history=history,
        # W&B keeps the composed config but not the command line: the axes come from the arm id's overrides.
        axes=arm_axes(arm.split(","), exclude=()),
        config=OmegaConf.create(dict(w.config)) if "task" in w.config else None,
        config_error="" if "task" in w.config else "the W&B run's config has no task",
    )


def _dedupe_runs(runs: list[Run]) -> list[Run]:
    """One run per (arm, seed): a later attempt replaces an earlier one, a finished one an unfinished."""
    best: dict[tuple[str, int | None], Run] = {}
    unseeded: list[Run] = []
    for r in runs:
        if r.seed is None:
            unseeded.append(r)
        elif (prev := best.get((r.arm, r.seed))) is None or r.finished or not prev.finished:
            best[(r.arm, r.seed)] = r
    return [*best.values(), *unseeded]


def _nan_mean_std(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample std (ddof=1) along axis 0, ignoring NaN; std is NaN with fewer than two values."""
    ok = ~np.isnan(a)
    n = ok.sum(axis=0)
    total = np.where(ok, a, 0.0).sum(axis=0)
    mean = np.divide(total, n, out=np.full(n.shape, np.nan), where=n > 0)
    sq = np.where(ok, a - mean, 0.0) ** 2
    std = np.sqrt(np.divide(sq.sum(axis=0), n - 1, out=np.full(n.shape, np.nan), where=n > 1))
    return mean, std


def _final(metric: str) -> Callable[[Run], float]:
    return lambda r: _float(r.metrics.get("final", {}).get(metric))


def columns(metrics: Sequence[str], task_metric: str) -> list[Column]:
    """The final value of each metric, then the task metric's best, reward, steps and wall time."""
    m = task_metric
    return [
        *(Column(f"{k}_final", k, _final(k), metric=True) for k in metrics),
        Column(f"{m}_best", f"{m} best", lambda r: _float(r.metrics.get("best", {}).get(m)), metric=False),
        Column("reward_end", "reward end", lambda r: _float(r.metrics.get("reward_end")), metric=False),
        Column(
            "reward_gain",
            "reward gain",
            lambda r: _float(r.metrics.get("reward_end")) - _float(r.metrics.get("reward_start")),
            metric=False,
        ),
        Column("steps", "steps", lambda r: _float(r.metrics.get("steps")), metric=False),
        Column("wall_time_s", "wall time (s)", lambda r: _float(r.metrics.get("wall_time_s")), metric=False),
    ]


TASK_METRIC_KEY = re.compile(r"^val/[^/]+/[^/]+$")  # a mixture's per-task metric: val/<task>/<metric>


def metric_names(runs: Sequence[Run], task_metric: str) -> list[str]:
    """The run's task metric, then every `val/<task>/<metric>` in a finished run's final validation."""
    per_task = {k for r in runs if r.finished for k in r.metrics.get("final", {}) if TASK_METRIC_KEY.match(k)}
    return [task_metric, *sorted(per_task - {task_metric})]


def ablation_table(runs: Sequence[Run], cols: Sequence[Column]) -> list[ArmStats]:
    """One row per arm (sorted by name), statistics over its finished runs; values a run lacks are skipped."""
    rows = []
    for arm in sorted({r.arm for r in runs}):
        arm_runs = [r for r in runs if r.arm == arm]
        done = [r for r in arm_runs if r.finished]
        values = np.array([[c.value(r) for c in cols] for r in done], dtype=float).reshape(
            len(done), len(cols)
        )
        _, std = _nan_mean_std(values)
        rows.append(
            ArmStats(
                arm=arm,
                n_finished=len(done),
                n_total=len(arm_runs),
                ci={c.key: mean_ci(values[:, i]) for i, c in enumerate(cols)},
                std=dict(zip([c.key for c in cols], std.tolist(), strict=True)),
            )
        )
    return rows


def paired_differences(
    runs: Sequence[Run], axes: Mapping[str, Sequence[str]], cols: Sequence[Column]
) -> list[PairedDiff]:
    """Per swept axis and pair of its values (a < b, sorted), `a - b` of each metric column on arms that agree
    on every other swept axis, over the seeds both finished (`pr1.stats.paired_diff_ci`)."""
    by_arm: dict[str, dict[int, Run]] = {}
    axes_of: dict[str, dict[str, str]] = {}
    for r in runs:
        if r.finished and r.seed is not None:
            by_arm.setdefault(r.arm, {})[r.seed] = r
            axes_of.setdefault(r.arm, r.axes)
    out = []
    for axis in sorted(axes):
        others = [k for k in sorted(axes) if k != axis]
        groups: dict[tuple[str, ...], dict[str, str]] = {}
        for arm, ax in sorted(axes_of.items()):
            context = tuple(f"{k}={ax.get(k, DEFAULT_VALUE)}" for k in others)
            groups.setdefault(context, {})[ax.get(axis, DEFAULT_VALUE)] = arm
        for context, arm_of in sorted(groups.items()):
            for a, b in itertools.combinations(sorted(arm_of), 2):
                runs_a, runs_b = by_arm[arm_of[a]], by_arm[arm_of[b]]
                seeds = sorted(runs_a.keys() & runs_b.keys())
                for c in cols:
                    if c.metric:
                        ci = paired_diff_ci(
                            [c.value(runs_a[s]) for s in seeds], [c.value(runs_b[s]) for s in seeds]
                        )
                        out.append(PairedDiff(axis, a, b, ",".join(context) or "—", c.header, ci))
    return out


def check_runs(runs: Sequence[Run]) -> dict:
    """`pr1.sweep_summary.check_overrides` over the finished runs (the ones the statistics compare)."""
    return check_overrides([(r.source, r.axes, r.config, r.config_error) for r in runs if r.finished])


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "—"
    if abs(x) < 1e15 and x == int(x):
        return str(int(x))
    return f"{x:.1f}" if abs(x) >= 100 else f"{x:.3f}"


def _md_cell(text: str) -> str:
    return text.replace("|", r"\|").replace("\n", " ")


def _reason(run: Run) -> str:
    """One line on why a run is not in the statistics; a traceback is cut to its last line (the exception)."""
    if run.status == "running":
        return (
            "status still running: the run is in progress, or was killed before it could record its end "
            f"({run.metrics.get('steps', 0)} steps logged)"
        )
    lines = [ln for ln in (run.error or "").splitlines() if ln.strip()]
    detail = lines[-1].strip()[:200] if lines else "no error recorded"
    return f"{run.status}: {detail}"


def _notes(runs: Sequence[Run], cols: Sequence[Column], check: Mapping[str, Any]) -> list[str]:
    """Finished runs that are in the table but lack data for a column or the curves, and runs whose
    components could not be asked which overrides they read."""
    notes = []
    for r in runs:
        if not r.finished:
            continue
        if not r.history:
            notes.append(f"{r.arm} seed {r.seed}: no history rows, left out of the curves ({r.source})")
        notes += [
            f"{r.arm} seed {r.seed}: no final {c.header}, left out of that column"
            for c in cols
            if c.metric and math.isnan(c.value(r))
        ]
    notes += [
        f"{u['run']}: cannot tell which components read the swept overrides: {u['error']}"
        for u in check["readers_unknown"]
    ]
    return notes


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]


def _ci_text(ci: Interval) -> str:
    """`mean [lo, hi]`, the bare mean when the interval is undefined (one value), — without values."""
    return _fmt(ci.mean) if math.isnan(ci.lo) else f"{_fmt(ci.mean)} [{_fmt(ci.lo)}, {_fmt(ci.hi)}]"


def _cell(ci: Interval, n_finished: int) -> str:
    """The interval, with the number of seeds when some finished seed lacks the value."""
    return _ci_text(ci) if ci.n in (0, n_finished) else f"{_ci_text(ci)} (n={ci.n})"


def to_markdown(
    title: str,
    table: Sequence[ArmStats],
    paired: Sequence[PairedDiff],
    runs: Sequence[Run],
    cols: Sequence[Column],
    check: Mapping[str, Any],
) -> str:
    """report.md: metrics and training tables, paired differences, unread overrides, plots, unfinished."""
    metric_cols = [c for c in cols if c.metric]
    lines = [
        f"# Ablation report: {title}",
        "",
        f"Task metric `{cols[0].header}`. Cells are the mean over the finished seeds of each arm and its 95% "
        "confidence interval [lo, hi]: Student's t-interval with n − 1 degrees of freedom on the sample std "
        "(pr1.stats), the bare mean for a single seed, — without data; (n=k) when only k of the finished "
        "seeds have the value. Reward gain is reward end − reward start, as each run recorded them in "
        "metrics.json. Curves: mean over seeds with a ±std band; past the end of a shorter run they average "
        "the remaining seeds. The bar chart's error bars are the 95% t-intervals.",
        "",
        "## Metrics (final validation)",
        "",
        *_table(
            ["arm", "seeds finished", *(c.header for c in metric_cols)],
            (
                [
                    row.arm,
                    f"{row.n_finished}/{row.n_total}",
                    *(_cell(row.ci[c.key], row.n_finished) for c in metric_cols),
                ]
                for row in table
            ),
        ),
        "",
        "## Training",
        "",
        *_table(
            ["arm", *(c.header for c in cols if not c.metric)],
            (
                [row.arm, *(_cell(row.ci[c.key], row.n_finished) for c in cols if not c.metric)]
                for row in table
            ),
        ),
        "",
        f"## Paired differences ({len({(d.axis, d.a, d.b, d.context) for d in paired})})",
        "",
    ]
    if paired:
        lines += [
            "Per swept axis, value a − value b on the two arms that agree on every other swept axis, paired "
            "by seed (the seeds both finished: n); mean and 95% paired t-interval. An interval that excludes "
            "0 is marked *.",
            "",
            *_table(
                ["axis", "a − b", "other axes", "metric", "difference [95% CI]", "n"],
                (
                    [
                        d.axis,
                        f"{d.a} − {d.b}",
                        d.context,
                        d.column,
                        _ci_text(d.ci) + (" *" if d.ci.excludes_zero else ""),
                        str(d.ci.n),
                    ]
                    for d in paired
                ),
            ),
        ]
    else:
        lines.append("No swept axis with two arms that agree on the other axes.")
    if unread := check["unread_overrides"]:
        lines += [
            "",
            f"## Swept overrides that nothing reads ({len(unread)})",
            "",
            "Their arms compute the same thing: on the same seeds they agree up to nondeterminism, and a "
            "difference between them is no effect of the override.",
            "",
            *[f"- {_md_cell(u['message'])}" for u in unread],
        ]
    lines += ["", "![curves](curves.png)", "", "![final metric per arm](final_bar.png)", ""]
    unfinished = [r for r in runs if not r.finished]
    lines += [f"## Not finished ({len(unfinished)})", ""]
    if unfinished:
        lines += _table(
            ["arm", "seed", "reason", "source"],
            (
                [r.arm, "?" if r.seed is None else str(r.seed), _reason(r), r.source]
                for r in sorted(unfinished, key=lambda r: (r.arm, r.seed if r.seed is not None else -1))
            ),
        )
    else:
        lines.append("All runs completed.")
    if notes := _notes(runs, cols, check):
        lines += ["", "## Notes", "", *[f"- {_md_cell(n)}" for n in notes]]
    return "\n".join(lines) + "\n"


def _num(x: float) -> str:
    return "" if math.isnan(x) else repr(x)


def write_csv(path: Path, table: Sequence[ArmStats], cols: Sequence[Column]) -> None:
    """report.csv: full-precision numbers, `<column>_{mean,std,lo,hi,n}` per column, NaN empty."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(
            ["arm", "seeds_finished", "seeds_total", *(f"{c.key}_{s}" for c in cols for s in CSV_STATS)]
        )
        for row in table:
            stats = []
            for c in cols:
                ci = row.ci[c.key]
                stats += [_num(ci.mean), _num(row.std[c.key]), _num(ci.lo), _num(ci.hi), str(ci.n)]
            w.writerow([row.arm, row.n_finished, row.n_total, *stats])


def write_paired_csv(path: Path, paired: Sequence[PairedDiff]) -> None:
    """report_paired.csv: one row per paired difference, full precision, NaN empty."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["axis", "a", "b", "other_axes", "metric", "mean", "lo", "hi", "n"])
        for d in paired:
            w.writerow(
                [d.axis, d.a, d.b, d.context, d.column, _num(d.ci.mean), _num(d.ci.lo), _num(d.ci.hi), d.ci.n]
            )


def _series(history: Sequence[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [
        (r["step"], float(r[key]))
        for r in history
        if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool) and math.isfinite(r[key])
    ]
    return np.array([p[0] for p in pts], dtype=float), np.array([p[1] for p in pts], dtype=float)


def aligned_curve(runs: Sequence[Run], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(steps, mean, std, n_runs) of one metric over runs whose steps may differ.

    Each run is linearly interpolated onto the union of all runs' steps, within its own first..last step
    only (no extrapolation: a shorter run does not pull the mean at steps it never reached).
    """
    series = [s for s in (_series(r.history, key) for r in runs) if s[0].size]
    if not series:
        return np.empty(0), np.empty(0), np.empty(0), 0
    grid = np.unique(np.concatenate([x for x, _ in series]))
    values = np.full((len(series), grid.size), np.nan)
    for i, (x, y) in enumerate(series):
        inside = (grid >= x[0]) & (grid <= x[-1])
        values[i, inside] = np.interp(grid[inside], x, y)
    mean, std = _nan_mean_std(values)
    return grid, mean, std, len(series)


def plot_curves(path: Path, runs: Sequence[Run], metric: str) -> None:
    """curves.png: reward and task metric vs step, one line per arm (mean over seeds) with a ±std band."""
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    axes = fig.subplots(1, 2)
    arms = sorted({r.arm for r in runs})
    for ax, key in zip(axes, (REWARD_KEY, metric), strict=True):
        for i, arm in enumerate(arms):
            steps, mean, std, n = aligned_curve([r for r in runs if r.arm == arm], key)
            if n:
                ax.plot(
                    steps,
                    mean,
                    color=f"C{i % 10}",
                    label=f"{arm} (n={n})",
                    marker="." if steps.size < 30 else None,
                )
                ax.fill_between(steps, mean - std, mean + std, color=f"C{i % 10}", alpha=0.2, linewidth=0)
        ax.set(xlabel="step", ylabel=key, title=key)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, f"no {key} in any history", ha="center", va="center", transform=ax.transAxes)
    fig.savefig(path, dpi=100, metadata=PNG_METADATA)


def plot_final_bar(
    path: Path, table: Sequence[ArmStats], runs: Sequence[Run], cols: Sequence[Column]
) -> None:
    """final_bar.png: per metric, the final value per arm, the mean with its 95% t-interval as error bars and
    each seed as a dot."""
    metric_cols = [c for c in cols if c.metric]
    fig = Figure(
        figsize=(8 if len(metric_cols) == 1 else 4 * len(metric_cols), 1.5 + 0.5 * max(len(table), 1)),
        layout="constrained",
    )
    axes = np.atleast_1d(fig.subplots(1, len(metric_cols), sharey=True, squeeze=False)[0])
    for ax, c in zip(axes, metric_cols, strict=True):
        for y, row in enumerate(table):
            ci = row.ci[c.key]
            if math.isnan(ci.mean):
                continue
            err = [[0.0], [0.0]] if math.isnan(ci.lo) else [[ci.mean - ci.lo], [ci.hi - ci.mean]]
            ax.barh(y, ci.mean, xerr=err, color=f"C{y % 10}", alpha=0.7, capsize=4)
            seeds = [c.value(r) for r in runs if r.arm == row.arm and r.finished]
            ax.scatter(seeds, [y] * len(seeds), s=25, facecolor="white", edgecolor="black", zorder=3)
        ax.set(xlabel=f"{c.header} (final)", title=c.header)
        ax.grid(axis="x", alpha=0.3)
        if not ax.patches:
            ax.text(
                0.5,
                0.5,
                f"no finished run has a final {c.header}",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
    axes[0].set_yticks(range(len(table)), [f"{r.arm} ({r.n_finished}/{r.n_total})" for r in table])
    axes[0].invert_yaxis()
    fig.suptitle("final metric per arm: mean with 95% t-interval, dots are seeds")
    fig.savefig(path, dpi=100, metadata=PNG_METADATA)


def _task_metric(runs: Sequence[Run]) -> str:
    """The task metric the runs recorded (the most common one), else DEFAULT_METRIC."""
    names = [r.metrics["task_metric"] for r in runs if isinstance(r.metrics.get("task_metric"), str)]
    if len(set(names)) > 1:
        log.warning("runs disagree on task_metric (%s); pass --metric", ", ".join(sorted(set(names))))
    return max(sorted(set(names)), key=names.count) if names else DEFAULT_METRIC


def write_report(
    runs: Sequence[Run], out_dir: str | os.PathLike[str], title: str, metric: str | None = None
) -> int:
    """Write report.md, report.csv, report_paired.csv, curves.png and final_bar.png into out_dir; return how
    many runs finished. `metric`: report that one metric only (default: the task metric and, for a mixture,
    each task's)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = _dedupe_runs(list(runs))
    task_metric = metric or _task_metric(runs)
    cols = columns([metric] if metric else metric_names(runs, task_metric), task_metric)
    table = ablation_table(runs, cols)
    check = check_runs(runs)
    paired = paired_differences(runs, check["swept"], cols)
    finished = [r for r in runs if r.finished]
    (out / "report.md").write_text(to_markdown(title, table, paired, runs, cols, check), encoding="utf-8")
    write_csv(out / "report.csv", table, cols)
    write_paired_csv(out / "report_paired.csv", paired)
    plot_curves(out / "curves.png", finished, task_metric)
    plot_final_bar(out / "final_bar.png", table, finished, cols)
    return len(finished)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m pr1.report", description=__doc__.split("\n\n")[0])
    p.add_argument("sweep_dir", nargs="?", type=Path, help="results/<sweep> (not needed with --wandb-group)")
    p.add_argument("--out", type=Path, help="output directory (default: the sweep dir)")
    p.add_argument("--metric", help="task metric (default: the one the runs recorded, else val/acc50)")
    p.add_argument("--wandb-group", help="read the runs of this W&B group (the sweep name) instead")
    p.add_argument("--wandb-project", help="W&B project, with --wandb-group")
    p.add_argument("--wandb-entity", help="W&B entity (default: the API key's)")
    args = p.parse_args(argv)
    out = args.out or args.sweep_dir
    if args.wandb_group and not args.wandb_project:
        p.error("--wandb-group needs --wandb-project")
    if out is None:
        p.error("give a sweep dir, or --out with --wandb-group")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.wandb_group:
            runs, title = (
                load_wandb(args.wandb_group, args.wandb_project, args.wandb_entity),
                args.wandb_group,
            )
        else:
            runs, title = load_sweep(args.sweep_dir), args.sweep_dir.name
        if not runs:
            raise ReportError(f"no <arm>/seed<k> run dirs under {args.sweep_dir}")
        n_finished = write_report(runs, out, title, args.metric)
    except ReportError as e:
        print(f"pr1.report: {e}", file=sys.stderr)
        return 1
    print(f"report of {n_finished}/{len(runs)} finished runs: {Path(out) / 'report.md'}")
    if n_finished == 0:
        print(f"pr1.report: no run of {title} completed; see 'Not finished' in report.md", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

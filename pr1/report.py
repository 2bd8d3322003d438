"""The ablation report of one sweep: a table of mean ± std over seeds per arm, curves, and a bar chart.

    python -m pr1.report results/<sweep> [--out DIR] [--metric val/acc50]
    python -m pr1.report --wandb-group <sweep> --wandb-project P [--wandb-entity E] --out DIR

Reads `results/<sweep>/<arm>/seed<k>/{metrics.json,history.jsonl}` (see pr1.results), or the W&B runs of a
group, and writes `report.md`, `report.csv`, `curves.png` and `final_bar.png`. Only completed runs enter the
statistics; missing, failed, still-running and unreadable runs are listed with the reason instead. Exit code 0
when at least one run completed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from pr1.results import (
    HISTORY_FILE,
    RunRecordError,
    dedupe_steps,
    read_jsonl,
    read_run_metrics,
    summarize_history,
)

log = logging.getLogger(__name__)

DEFAULT_METRIC = "val/acc50"
REWARD_KEY = "train/reward"

# Table columns: key -> header; "final"/"best" are the task metric's, the header gets its name.
COLUMNS: dict[str, str] = {
    "final": "{metric} final",
    "best": "{metric} best",
    "reward_end": "reward end",
    "reward_gain": "reward gain",
    "steps": "steps",
    "wall_time_s": "wall time (s)",
}


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

    @property
    def finished(self) -> bool:
        return self.status == "completed"


@dataclass
class ArmStats:
    """One table row: mean and sample std (ddof=1) over the arm's finished seeds, per column."""

    arm: str
    n_finished: int
    n_total: int
    mean: dict[str, float]
    std: dict[str, float]


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
    return Run(
        arm=str(w.config.get("arm", w.name)),
        seed=seed if isinstance(seed, int) else None,
        source="/".join(w.path),
        status=status,
        error=None if status == "completed" else f"W&B state {w.state}",
        metrics=metrics,
        history=history,
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


def _run_values(run: Run, metric: str) -> dict[str, float]:
    m = run.metrics
    return {
        "final": _float(m.get("final", {}).get(metric)),
        "best": _float(m.get("best", {}).get(metric)),
        "reward_end": _float(m.get("reward_end")),
        "reward_gain": _float(m.get("reward_end")) - _float(m.get("reward_start")),
        "steps": _float(m.get("steps")),
        "wall_time_s": _float(m.get("wall_time_s")),
    }


def ablation_table(runs: Sequence[Run], metric: str) -> list[ArmStats]:
    """One row per arm (sorted by name), statistics over its finished runs; values a run lacks are skipped."""
    rows = []
    for arm in sorted({r.arm for r in runs}):
        arm_runs = [r for r in runs if r.arm == arm]
        done = [_run_values(r, metric) for r in arm_runs if r.finished]
        values = np.array([[v[c] for c in COLUMNS] for v in done], dtype=float).reshape(
            len(done), len(COLUMNS)
        )
        mean, std = _nan_mean_std(values)
        rows.append(
            ArmStats(
                arm=arm,
                n_finished=len(done),
                n_total=len(arm_runs),
                mean=dict(zip(COLUMNS, mean.tolist(), strict=True)),
                std=dict(zip(COLUMNS, std.tolist(), strict=True)),
            )
        )
    return rows


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


def _notes(runs: Sequence[Run], metric: str) -> list[str]:
    """Finished runs that are in the table but lack data for a column or the curves."""
    notes = []
    for r in runs:
        if not r.finished:
            continue
        if not r.history:
            notes.append(f"{r.arm} seed {r.seed}: no history rows, left out of the curves ({r.source})")
        if math.isnan(_run_values(r, metric)["final"]):
            notes.append(f"{r.arm} seed {r.seed}: no final {metric}, left out of that column")
    return notes


def to_markdown(title: str, table: Sequence[ArmStats], runs: Sequence[Run], metric: str) -> str:
    """report.md: the ablation table, the plots, and the runs that are not in it with the reason."""
    headers = ["arm", "seeds finished"] + [h.format(metric=metric) for h in COLUMNS.values()]
    lines = [
        f"# Ablation report: {title}",
        "",
        f"Task metric `{metric}`. Cells are mean ± sample std (ddof=1) over the finished seeds of each arm; "
        "— where undefined (a single seed has no std). Reward gain is reward end − reward start, as each run "
        "recorded them in metrics.json. Curves: mean over seeds with a ±std band; past the end of a shorter "
        "run they average the remaining seeds.",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
    ]
    for row in table:
        cells = [_md_cell(row.arm), f"{row.n_finished}/{row.n_total}"]
        cells += [f"{_fmt(row.mean[c])} ± {_fmt(row.std[c])}" for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "![curves](curves.png)", "", "![final metric per arm](final_bar.png)", ""]
    unfinished = [r for r in runs if not r.finished]
    lines += [f"## Not finished ({len(unfinished)})", ""]
    if unfinished:
        lines += ["| arm | seed | reason | source |", "|---|---|---|---|"]
        for r in sorted(unfinished, key=lambda r: (r.arm, r.seed if r.seed is not None else -1)):
            seed = "?" if r.seed is None else str(r.seed)
            lines.append(f"| {_md_cell(r.arm)} | {seed} | {_md_cell(_reason(r))} | {_md_cell(r.source)} |")
    else:
        lines.append("All runs completed.")
    if notes := _notes(runs, metric):
        lines += ["", "## Notes", "", *[f"- {_md_cell(n)}" for n in notes]]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, table: Sequence[ArmStats], metric: str) -> None:
    """report.csv: full-precision numbers, a `<column>_mean`/`<column>_std` pair per column, NaN empty."""
    names = [f"{metric}_{c}" if c in ("final", "best") else c for c in COLUMNS]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            ["arm", "seeds_finished", "seeds_total"] + [f"{n}_{s}" for n in names for s in ("mean", "std")]
        )
        for row in table:
            stats = [v for c in COLUMNS for v in (row.mean[c], row.std[c])]
            w.writerow(
                [row.arm, row.n_finished, row.n_total] + ["" if math.isnan(v) else repr(v) for v in stats]
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
    fig.savefig(path, dpi=100)


def plot_final_bar(path: Path, table: Sequence[ArmStats], runs: Sequence[Run], metric: str) -> None:
    """final_bar.png: the final task metric per arm, mean with ±std error bars and each seed as a dot."""
    rows = [row for row in table if not math.isnan(row.mean["final"])]
    fig = Figure(figsize=(8, 1.5 + 0.5 * max(len(rows), 1)), layout="constrained")
    ax = fig.subplots()
    for y, row in enumerate(rows):
        err = 0.0 if math.isnan(row.std["final"]) else row.std["final"]
        ax.barh(y, row.mean["final"], xerr=err, color=f"C{y % 10}", alpha=0.7, capsize=4)
        seeds = [_run_values(r, metric)["final"] for r in runs if r.arm == row.arm and r.finished]
        ax.scatter(seeds, [y] * len(seeds), s=25, facecolor="white", edgecolor="black", zorder=3)
    ax.set_yticks(range(len(rows)), [f"{r.arm} ({r.n_finished}/{r.n_total})" for r in rows])
    ax.invert_yaxis()
    ax.set(xlabel=f"{metric} (final)", title=f"final {metric} per arm: mean ± std, dots are seeds")
    ax.grid(axis="x", alpha=0.3)
    if not rows:
        ax.text(
            0.5,
            0.5,
            f"no finished run has a final {metric}",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    fig.savefig(path, dpi=100)


def _task_metric(runs: Sequence[Run]) -> str:
    """The task metric the runs recorded (the most common one), else DEFAULT_METRIC."""
    names = [r.metrics["task_metric"] for r in runs if isinstance(r.metrics.get("task_metric"), str)]
    if len(set(names)) > 1:
        log.warning("runs disagree on task_metric (%s); pass --metric", ", ".join(sorted(set(names))))
    return max(sorted(set(names)), key=names.count) if names else DEFAULT_METRIC


def write_report(
    runs: Sequence[Run], out_dir: str | os.PathLike[str], title: str, metric: str | None = None
) -> int:
    """Write report.md, report.csv, curves.png and final_bar.png into out_dir; return how many finished."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = _dedupe_runs(list(runs))
    metric = metric or _task_metric(runs)
    table = ablation_table(runs, metric)
    finished = [r for r in runs if r.finished]
    (out / "report.md").write_text(to_markdown(title, table, runs, metric), encoding="utf-8")
    write_csv(out / "report.csv", table, metric)
    plot_curves(out / "curves.png", finished, metric)
    plot_final_bar(out / "final_bar.png", table, finished, metric)
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

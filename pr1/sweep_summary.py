"""Hydra callback that closes a multirun with a summary of every arm: completed, failed (and why), missing."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pr1.results import METRICS_FILE, RunRecordError, read_run_metrics, write_json_atomic

log = logging.getLogger("pr1")


def summarize(sweep_dir: str | Path) -> dict:
    """Status of every run dir (`<arm>/seed<k>/metrics.json`) under a sweep dir."""
    runs = []
    for path in sorted(Path(sweep_dir).glob(f"*/seed*/{METRICS_FILE}")):
        try:
            m = read_run_metrics(path.parent)
        except RunRecordError as e:
            runs.append({"run": str(path.parent), "status": "unreadable", "error": str(e)})
            continue
        metric = m.get("task_metric")
        runs.append(
            {
                "run": str(path.parent),
                "arm": m.get("arm"),
                "seed": m.get("seed"),
                "status": m.get("status"),
                "error": m.get("error"),
                "steps": m.get("steps"),
                "metric": metric,
                "final": m["final"].get(metric),
            }
        )
    failed = [r for r in runs if r["status"] != "completed"]
    return {"runs": runs, "completed": len(runs) - len(failed), "not_completed": len(failed)}


class SweepSummary(Callback):
    """Writes `<sweep dir>/sweep_summary.json` and logs one line per arm at the end of a multirun."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        summary = summarize(sweep_dir)
        write_json_atomic(sweep_dir / "sweep_summary.json", summary)
        log.info(
            "sweep %s: %d completed, %d not completed",
            sweep_dir,
            summary["completed"],
            summary["not_completed"],
        )
        for r in summary["runs"]:
            detail = f"{r['metric']}={r['final']}" if r["status"] == "completed" else f"error: {r['error']}"
            log.info("  %-8s %s  %s", r["status"], Path(r["run"]).relative_to(sweep_dir), detail)

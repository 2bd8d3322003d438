"""Evaluate a policy on a task's val set: `python -m pr1.run mode=eval [overrides]` (or `python -m pr1.eval`).

The policy is whatever `model` loads: `model.path=<hub id or folder>` (a base model, or a policy saved with
`export_dir=` / `save_pretrained`), or a random `model.build`. Lightning `.ckpt` files are not read: export
the policy first. The records come from `task.val`; decoding is greedy and goes through the very code the
in-training validation runs (`PR1Module.validation_step`: same prompts, processor checks, generation config
and decoding), and the metrics are the task's (`Task.evaluate`, same parser as the rewards).

Writes into `paths.run_dir` (set it to keep evals apart: `paths.run_dir=results/eval/<name>`):
- `eval_metrics.json` (atomic): task, model, record count and the metrics;
- `predictions.jsonl`: one row per record (ground truth, completion, parsed prediction, per-sample scores).
Batch size: `data.val_batch_size` if the config has it (`+data.val_batch_size=4`), else 16, as in training.
"""

from __future__ import annotations

import json
import logging
import os
import runpy
import sys
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from pr1.data.dataset import RecordDataset, collate_records
from pr1.model import load_policy
from pr1.module import PR1Module
from pr1.results import write_json_atomic
from pr1.tasks.task import Task

log = logging.getLogger("pr1")
DEFAULT_BATCH_SIZE = 16  # the in-training validation batch size (RecordDataModule.val_batch_size)


def write_jsonl_atomic(path: Path, rows: list[dict]) -> None:
    """All rows at once through a temp file and a rename: a killed eval leaves no half-written predictions."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text("".join(json.dumps(r, allow_nan=False, ensure_ascii=False) + "\n" for r in rows))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Greedy-decode the val records, score them, write eval_metrics.json + predictions.jsonl; the metrics."""
    if cfg.task.get("val") is None:
        raise ValueError(f"task {cfg.task.name!r} has no val set (task.val is null): nothing to evaluate")
    t0 = time.time()
    run_dir = Path(cfg.paths.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    frame = OmegaConf.to_container(cfg.model.frame, resolve=True)
    task = Task.from_config(cfg.task, thinking=bool(cfg.thinking), frame=frame)
    records = instantiate(cfg.task.val)
    loader = DataLoader(
        RecordDataset(records),
        batch_size=int(OmegaConf.select(cfg, "data.val_batch_size", default=DEFAULT_BATCH_SIZE)),
        shuffle=False,
        collate_fn=collate_records,
        num_workers=int(cfg.data.num_workers),
    )
    policy, processor = load_policy(cfg.model)
    # beta 0: evaluation needs no frozen reference copy of the policy (it exists for GRPO's KL term).
    module = PR1Module(OmegaConf.merge(cfg, {"objective": {"beta": 0.0}}), task, policy, processor)
    gpu = torch.cuda.is_available() and cfg.trainer.accelerator != "cpu"
    module.to(torch.device("cuda" if gpu else "cpu"))
    policy.eval()

    module.on_validation_epoch_start()
    with torch.inference_mode():
        for i, batch in enumerate(loader):
            module.validation_step(batch, i)
            log.info("eval: %d/%d records decoded", len(module.val_outputs), len(records))
    completions = [text for text, _ in module.val_outputs]
    metrics, rows = task.evaluate(completions, records)

    summary = {
        "task": cfg.task.name,
        "kind": task.kind,
        "metric": task.metric,
        "model": str(cfg.model.path)
        if cfg.model.build is None
        else f"random build {OmegaConf.to_container(cfg.model.build)}",
        "thinking": task.thinking,
        "frame": frame,
        "n_records": len(records),
        "wall_time_s": time.time() - t0,
        "metrics": metrics,
    }
    write_json_atomic(run_dir / "eval_metrics.json", summary)
    keep = ("id", "image", "question", "solution")
    write_jsonl_atomic(
        run_dir / "predictions.jsonl",
        [{**{k: r[k] for k in keep}, **row} for r, row in zip(records, rows, strict=True)],
    )
    print_table(summary, run_dir)
    return metrics


def print_table(summary: dict, run_dir: Path) -> None:
    lines = [
        "",
        "=" * 72,
        f"pr1 eval: task {summary['task']} ({summary['kind']}), {summary['n_records']} records, "
        f"{summary['wall_time_s']:.0f}s",
        f"  model: {summary['model']}",
    ]
    for name, value in summary["metrics"].items():
        marker = "  <- task metric" if name == summary["metric"] else ""
        lines.append(f"  {name:<14} {value:.4f}{marker}")
    lines += [f"  wrote {run_dir / 'eval_metrics.json'} and predictions.jsonl", "=" * 72]
    print("\n".join(lines), flush=True)


def main() -> None:
    """`python -m pr1.eval [overrides]` = `python -m pr1.run mode=eval [overrides]`.

    pr1.run runs as `__main__`, exactly as `python -m pr1.run` does: Hydra finds the config folder relative
    to the script it runs, which an imported `pr1.run.main` would not give it.
    """
    sys.argv.append("mode=eval")  # last, so it wins over a mode= given on the command line
    runpy.run_module("pr1.run", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

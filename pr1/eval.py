"""Evaluate a policy on a task's val set: `python -m pr1.run mode=eval [overrides]` (or `python -m pr1.eval`).

The policy is whatever `model` loads: `model.path=<hub id or folder>` (a base model, or a policy saved with
`export_dir=` / `save_pretrained`), or a random `model.build`. Lightning `.ckpt` files are not read: export
the policy first. The records come from `task.val`; decoding is greedy and goes through the very code the
in-training validation runs (`PolicyEngine.encode` and `.greedy`: same prompts, processor checks, generation
config and decoding), and the metrics are the task's (`Task.evaluate`, same parser as the rewards).

Writes into `paths.run_dir` (set it to keep evals apart: `paths.run_dir=results/eval/<name>`):
- `eval_metrics.json` (atomic): task, model, record count and the metrics;
- `predictions.jsonl`: one row per record (ground truth, completion, parsed prediction, per-sample scores).
Batch size: `data.val_batch_size` if the config has it (`+data.val_batch_size=4`), else 16, as in training.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from pr1 import resolvers, schema
from pr1.data.dataset import RecordDataset, collate_records
from pr1.data.records import empty_report
from pr1.engine import PolicyEngine
from pr1.model import load_policy
from pr1.results import write_json_atomic
from pr1.tasks import Task

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
    schema.validate(cfg)
    if cfg.task.get("val") is None:
        raise ValueError(f"task {cfg.task.name!r} has no val set (task.val is null): nothing to evaluate")
    t0 = time.time()
    run_dir = Path(cfg.paths.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = resolvers.run_options(cfg)
    task = Task.from_config(cfg.task, run)
    records = instantiate(cfg.task.val)
    loader = DataLoader(
        RecordDataset(records),
        batch_size=int(OmegaConf.select(cfg, "data.val_batch_size", default=DEFAULT_BATCH_SIZE)),
        shuffle=False,
        collate_fn=collate_records,
        num_workers=int(cfg.data.num_workers),
    )
    policy, processor = load_policy(cfg.model)
    engine = PolicyEngine(policy, processor)
    gpu = torch.cuda.is_available() and cfg.trainer.accelerator != "cpu"
    device = torch.device("cuda" if gpu else "cpu")
    policy.to(device).eval()

    completions: list[str] = []
    with torch.inference_mode():
        for batch in loader:
            prompts = engine.encode([task.messages(r) for r in batch], [r["pil"] for r in batch], device)
            completions += engine.greedy(prompts, int(cfg.task.val_max_new_tokens))
            log.info("eval: %d/%d records decoded", len(completions), len(records))
    metrics, rows = task.evaluate(completions, records)

    summary = {
        "task": cfg.task.name,
        "kind": task.kind,
        "metric": task.metric,
        "model": str(cfg.model.path)
        if cfg.model.build is None
        else f"random build {OmegaConf.to_container(cfg.model.build)}",
        "thinking": task.thinking,
        "frame": task.frame,
        "n_records": len(records),
        "wall_time_s": time.time() - t0,
        "metrics": metrics,
        "skipped": dict(getattr(records, "skip_report", None) or empty_report()),
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
    skipped = summary["skipped"]
    if skipped["skipped"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(skipped["by_reason"].items()))
        lines.append(f"  skipped {skipped['skipped']} records ({reasons}); first: {skipped['examples'][:1]}")
    lines += [f"  wrote {run_dir / 'eval_metrics.json'} and predictions.jsonl", "=" * 72]
    print("\n".join(lines), flush=True)


@hydra.main(version_base="1.3", config_path=resolvers.CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    """`python -m pr1.eval [overrides]` = `python -m pr1.run mode=eval [overrides]` (any mode= is ignored)."""
    return evaluate(cfg)[cfg.task.metric]


if __name__ == "__main__":
    main()

"""Evaluate a policy on a task's val set: `python -m pr1.run mode=eval [overrides]` (or `python -m pr1.eval`).

The policy is whatever `model` loads: `model.path=<hub id or folder>` (a base model, or a policy saved with
`export_dir=` / `save_pretrained`), or a random `model.build`. Lightning `.ckpt` files are not read: export
the policy first. The records come from `task.val`; decoding is greedy and goes through the very code the
in-training validation runs (`PolicyEngine.encode` and `.greedy`: same prompts, processor checks, generation
config and decoding), and the metrics are the task's (`Task.evaluate`, same parser as the rewards).

Writes into `paths.run_dir` (set it to keep evals apart: `paths.run_dir=results/eval/<name>`):
- `eval_metrics.json` (atomic): task, model, record count and the metrics;
- `predictions.jsonl`: one row per record (ground truth, completion, parsed prediction, per-sample scores).
Batch size: `data.val_batch_size`, as in training.

`+eval.samples=G` (and optionally `+eval.temperature=T`, default 1) also samples G completions per record, as
a rollout does, and reports per task the mean reward of the greedy answer, of the samples and of the best of
the G, and how often the best sample beats the greedy answer: the room GRPO has to move the greedy answer.
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
from pr1.engine import PolicyEngine, Sampling
from pr1.model import load_policy
from pr1.results import write_json_atomic
from pr1.tasks import Task

log = logging.getLogger("pr1")


def write_jsonl_atomic(path: Path, rows: list[dict]) -> None:
    """All rows at once through a temp file and a rename: a killed eval leaves no half-written predictions."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text("".join(json.dumps(r, allow_nan=False, ensure_ascii=False) + "\n" for r in rows))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def sampling_headroom(
    task: Task, greedy: list[str], sampled: list[str], records: list[dict], g: int
) -> dict[str, dict[str, float]]:
    """Per task (a mixture's sub-tasks, else the task): mean total reward of the greedy answers, of the G
    samples per record, of the best of each record's G, and the share of records whose best sample scores
    above its greedy answer."""
    r_greedy = torch.tensor(task.total(task.score(greedy, records)), dtype=torch.float64)
    r_sampled = torch.tensor(
        task.total(task.score(sampled, [r for r in records for _ in range(g)])), dtype=torch.float64
    ).view(-1, g)
    groups = task.groups(records) or {task.kind: list(range(len(records)))}
    out = {}
    for name, rows in sorted(groups.items()):
        gr, sa = r_greedy[rows], r_sampled[rows]
        best = sa.max(dim=1).values
        out[name] = {
            "greedy_reward": float(gr.mean()),
            "sampled_reward": float(sa.mean()),
            "best_of_g_reward": float(best.mean()),
            "best_beats_greedy": float((best > gr + 1e-9).double().mean()),
        }
    return out


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Greedy-decode the val records, score them, write eval_metrics.json + predictions.jsonl; the metrics."""
    schema.validate(cfg)
    if cfg.task.get("val") is None:
        raise ValueError(f"task {cfg.task.name!r} has no val set (task.val is null): nothing to evaluate")
    g = int(OmegaConf.select(cfg, "eval.samples", default=0))
    temperature = float(OmegaConf.select(cfg, "eval.temperature", default=1.0))
    if g < 0 or not temperature > 0:
        raise ValueError(f"eval.samples must be >= 0 and eval.temperature > 0, got {g} and {temperature}")
    t0 = time.time()
    run_dir = Path(cfg.paths.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = resolvers.run_options(cfg)
    task = Task.from_config(cfg.task, run)
    records = instantiate(cfg.task.val)
    loader = DataLoader(
        RecordDataset(records),
        batch_size=int(cfg.data.val_batch_size),
        shuffle=False,
        collate_fn=collate_records,
        num_workers=int(cfg.data.num_workers),
    )
    policy, processor = load_policy(cfg.model)
    engine = PolicyEngine(policy, processor)
    gpu = torch.cuda.is_available() and cfg.trainer.accelerator != "cpu"
    device = torch.device("cuda" if gpu else "cpu")
    policy.to(device).eval()
    sampling = Sampling(temperature, 1.0, 0, int(cfg.task.val_max_new_tokens))
    torch.manual_seed(int(cfg.seed))

    completions: list[str] = []
    sampled: list[str] = []
    with torch.inference_mode():
        for batch in loader:
            prompts = engine.encode([task.messages(r) for r in batch], [r["pil"] for r in batch], device)
            completions += engine.greedy(prompts, int(cfg.task.val_max_new_tokens))
            if g:
                sampled += engine.rollout(prompts, g, sampling).texts
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
    if g:
        summary["sampling"] = {
            "samples": g,
            "temperature": temperature,
            "tasks": sampling_headroom(task, completions, sampled, list(records), g),
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
    if "sampling" in summary:
        s = summary["sampling"]
        lines.append(f"  reward: greedy / sampled / best of {s['samples']} (temperature {s['temperature']})")
        for name, v in s["tasks"].items():
            lines.append(
                f"    {name:<12} {v['greedy_reward']:.4f} / {v['sampled_reward']:.4f} / "
                f"{v['best_of_g_reward']:.4f}   best beats greedy on {v['best_beats_greedy']:.0%}"
            )
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

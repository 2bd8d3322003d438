"""GPU check at real size: pr1's GRPO step vs TRL's GRPOTrainer on each real Qwen-VL architecture.

Each architecture of bench/real_configs.py is built with random weights (nothing downloaded) and saved once
with `save_pretrained`, beside pr1's offline tokenizer and processor of its family (`pr1.tiny`; the config's
special-token ids are set to that tokenizer's, the vocabulary keeps its published size). Both sides then load
the folder the ordinary way: pr1 with `load_policy` under the real model config (`model=<name>
model.path=DIR`) and its `PR1Module` in a Lightning Trainer, TRL with `from_pretrained` and `GRPOTrainer`.
Both train on the same synthetic batch with bench_grpo.SETUP's knobs (the same G, completion length, sampling,
optimiser, KL, loss, reward function), in four modes:

- `full`: full fine-tuning; `lora`: LoRA with pr1's model-config adapters on both sides (reference = the
  adapter-disabled policy on both); `gc`: full fine-tuning with gradient checkpointing;
- `mixture`: a batch mixing grounding and counting records, each prompted and scored by its own task
  (`iou`, `count`), routed per record by pr1's task mixture (`pr1.tasks.mixture.Mixture`).

Every (architecture, mode, side) runs in its own subprocess, so its peak memory is its own. Printed and
written to results/bench/gpu.json: s/step (median after the warm-up step), generated tokens/s (completion
tokens of the batch / s/step), peak GPU memory (`torch.cuda.max_memory_allocated`; peak RSS on CPU), and the
pr1/TRL ratio of each. Random weights rarely emit the end token, so completions run to `max_new_tokens` on
both sides: the same work.

    python bench/gpu_check.py --models qwen2vl_2b,qwen25vl_3b,qwen3vl_2b     # one per family (README)
    python bench/gpu_check.py                                               # all seven architectures
    python bench/gpu_check.py --device cpu --tiny --steps 2                 # tiny, CPU, fp32 (a test)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's pr1 and bench

from bench.bench_grpo import (  # noqa: E402
    SETUP,
    StepTimer,
    peak_rss_mib,
    pr1_overrides,
    records_in_pr1_order,
    train_trl,
    trl_dataset,
    versions,
)
from bench.real_configs import REAL_CONFIGS, real_config, with_token_ids  # noqa: E402
from pr1.tasks.base import RewardTerm, Task  # noqa: E402
from pr1.tasks.mixture import Mixture  # noqa: E402

OUT = ROOT / "results" / "bench" / "gpu.json"
MODES = ("full", "lora", "gc", "mixture")
# The answer reward of each task kind: the reward both sides can score (TRL decodes without Qwen's markup,
# which the format reward would fail; see bench_grpo.DIFFERENCES).
ANSWER_REWARD = {"grounding": "iou", "counting": "count"}
# The GPU setup: bench_grpo.SETUP's knobs at a batch that real-size models take in seconds per step.
GPU_SETUP = {"prompts_per_step": 2, "num_generations": 4, "max_new_tokens": 64}
TINY_SETUP = {"prompts_per_step": 2, "num_generations": 2, "max_new_tokens": 8, "records": 8}
# --tiny: each family's tiny random checkpoint (pr1.tiny) stands in for its real architectures.
TINY_BUILD = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "vision_depth": 1, "vision_embed_dim": 32}


# ---------------------------------------------------------------------------------------------- tasks
def trl_reward(kind: str, term: RewardTerm) -> Callable[..., list[float | None]]:
    """A term of `kind`'s task as a TRL reward: scored on that kind's rows (solutions stored as JSON, since
    the kinds' solutions differ in shape), None on the others (TRL leaves them out of the sum)."""

    def reward(completions: list, task: list[str], solution: list[str], image_size: list, **_: Any) -> list:
        rows = [i for i, k in enumerate(task) if k == kind]
        values = term.fn(
            [completions[i] for i in rows],
            solution=[json.loads(solution[i]) for i in rows],
            image_size=[image_size[i] for i in rows],
        )
        out: list[float | None] = [None] * len(completions)
        for i, v in zip(rows, values, strict=True):
            out[i] = float(v)
        return out

    reward.__name__ = f"{kind}_{term.name}"
    return reward


# -------------------------------------------------------------------------------------------- config
def compose(spec: dict, setup: dict, kind: str, run_dir: Path) -> Any:
    """pr1's composed config of one run: bench_grpo's overrides (the shared knobs), the real model config
    on the saved checkpoint, the mode's LoRA / gradient checkpointing, the device's trainer and dtype."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import pr1.run  # noqa: F401  (registers the pr1.* resolvers)

    cuda = spec["device"] == "cuda"
    overrides = [o for o in pr1_overrides(spec, setup, run_dir) if not o.startswith("+callbacks.")]
    overrides += [
        f"task={kind}",
        f"model={spec['model']}",
        f"model.path={spec['checkpoint']}",
        f"model.dtype={'bfloat16' if cuda else 'float32'}",
        "model.attn_implementation=sdpa",
        f"model.gradient_checkpointing={spec['mode'] == 'gc'}",
        f"model.lora.enabled={spec['mode'] == 'lora'}",
        f"trainer={'gpu' if cuda else 'cpu'}",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def kinds(mode: str) -> list[str]:
    return ["grounding", "counting"] if mode == "mixture" else ["grounding"]


def build_tasks(spec: dict, setup: dict, run_dir: Path) -> tuple[Any, dict[str, Task], list[dict]]:
    """(pr1 config, kind -> task with its answer reward only, the batch's records tagged with their kind,
    interleaved) for one run; both sides call it, so they see the same records, prompts and rewards."""
    from hydra.utils import instantiate

    from pr1 import resolvers

    tasks, per_kind, cfg = {}, [], None
    for kind in kinds(spec["mode"]):
        kcfg = compose(spec, setup, kind, run_dir)
        cfg = cfg or kcfg
        task = Task.from_config(kcfg.task, resolvers.run_options(kcfg))
        task.rewards = [t for t in task.rewards if t.name == ANSWER_REWARD[kind]]
        tasks[kind] = task
        per_kind.append([{**r, "task": kind} for r in instantiate(kcfg.task.train)])
    records = [r for row in zip(*per_kind, strict=True) for r in row]
    return cfg, tasks, records


# ------------------------------------------------------------------------------------------ the sides
class StepLog(StepTimer):
    """bench_grpo's step clock, plus each step's mean completion length and reward from pr1's stats."""

    def __init__(self) -> None:
        super().__init__()
        self.lengths: list[float] = []
        self.rewards: list[float] = []

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, *args: Any) -> None:
        super().on_train_batch_end(trainer, pl_module)
        self.lengths.append(float(outputs["stats"].completion_length))
        self.rewards.append(float(outputs["stats"].reward))


def run_pr1(spec: dict, setup: dict) -> dict:
    """A few GRPO steps with pr1's PR1Module (PolicyEngine inside) on the loaded checkpoint."""
    import lightning as L

    from pr1.datamodule import RecordDataModule
    from pr1.model import load_policy
    from pr1.module import PR1Module

    with tempfile.TemporaryDirectory() as tmp:
        cfg, tasks, records = build_tasks(spec, setup, Path(tmp))
        task = Mixture(tasks, tasks["grounding"].run) if spec["mode"] == "mixture" else tasks["grounding"]
        L.seed_everything(int(cfg.seed))
        policy, processor = load_policy(cfg.model)
        module = PR1Module(cfg, task, policy, processor)
        timer = StepLog()
        trainer = L.Trainer(
            accelerator=cfg.trainer.accelerator,
            devices=1,
            precision=cfg.trainer.precision,
            max_steps=spec["steps"],
            logger=False,
            enable_checkpointing=False,  # a real-size checkpoint per run would be tens of GB of disk
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            use_distributed_sampler=False,
            default_root_dir=tmp,
            callbacks=[timer],
        )
        data = RecordDataModule(records, None, int(cfg.objective.prompts_per_step), int(cfg.seed))
        trainer.fit(module, datamodule=data)
    return {
        **StepTimer.report,
        "completion_length_steps": timer.lengths,
        "reward_steps": timer.rewards,
        "fast_path": module.engine.family.shared_prefix,
    }


def run_trl(spec: dict, setup: dict) -> dict:
    """The same steps with TRL's GRPOTrainer: same checkpoint, records in pr1's order, prompts, rewards."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    with tempfile.TemporaryDirectory() as tmp:
        cfg, tasks, records = build_tasks(spec, setup, Path(tmp))
    m = cfg.model
    cuda = spec["device"] == "cuda"
    processor = AutoProcessor.from_pretrained(
        m.path, size={"shortest_edge": m.min_pixels, "longest_edge": m.max_pixels}
    )
    model = AutoModelForImageTextToText.from_pretrained(
        m.path, dtype=torch.bfloat16 if cuda else torch.float32, attn_implementation="sdpa"
    )
    recs = records_in_pr1_order(records, spec["steps"], setup["prompts_per_step"])
    ds = trl_dataset(
        recs,
        [tasks[r["task"]].prompt(r) for r in recs],
        task=[r["task"] for r in recs],
        solution=[json.dumps(list(r["solution"])) for r in recs],
    )
    funcs = [trl_reward(kind, t) for kind, task in tasks.items() for t in task.rewards]
    peft = None
    if spec["mode"] == "lora":
        from pr1.model import lora_config

        peft = lora_config(m.lora)
    return train_trl(
        model,
        processor,
        ds,
        funcs,
        setup,
        spec,
        peft_config=peft,
        use_cpu=not cuda,
        bf16=cuda,
        gradient_checkpointing=spec["mode"] == "gc",
    )


# -------------------------------------------------------------------------------------- checkpoints
def build_checkpoint(name: str, out: Path, device: str, tiny: bool) -> Path:
    """A random-weight checkpoint of `name`'s architecture (or, with `tiny`, its family's tiny model)."""
    from pr1.tiny import build_processor, build_tiny

    family = REAL_CONFIGS[name]["family"]
    if tiny:
        return build_tiny(out, family=family, **TINY_BUILD)
    import torch
    from transformers import AutoModelForImageTextToText

    processor = build_processor(family=family)
    config = with_token_ids(real_config(name), processor.tokenizer)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(
            config, dtype=torch.bfloat16, attn_implementation="sdpa"
        )
    gen = model.generation_config
    gen.eos_token_id, gen.bos_token_id = config.text_config.eos_token_id, None
    gen.pad_token_id = processor.tokenizer.pad_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    del model
    return out


# -------------------------------------------------------------------------------------- orchestrator
def worker(spec: dict) -> None:
    """One (architecture, mode, side) in this fresh process; its result as a tagged stdout line."""
    import torch

    setup = {**SETUP, **spec["setup"]}
    cuda = spec["device"] == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    result = run_trl(spec, setup) if spec["side"] == "trl" else run_pr1(spec, setup)
    result["peak_rss_mib"] = peak_rss_mib()
    result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    result["peak_gpu_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20 if cuda else None
    print("GPU_CHECK_RESULT " + json.dumps(result), flush=True)


def launch(spec: dict) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "offline"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], env=env, capture_output=True, text=True
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("GPU_CHECK_RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"{spec['model']} {spec['mode']} {spec['side']} failed ({proc.returncode}):\n"
            f"{proc.stderr[-5000:]}"
        )
    result = json.loads(lines[-1].removeprefix("GPU_CHECK_RESULT "))
    result["run_s"] = time.perf_counter() - t0
    return result


def summary(run: dict, setup: dict, warmup: int, cuda: bool) -> dict:
    """s/step (median after warm-up), generated tokens/s, peak memory of one run."""
    steps = run["step_s"][warmup:] or run["step_s"]
    lengths = run["completion_length_steps"][warmup:] or run["completion_length_steps"]
    step = statistics.median(steps)
    rows = setup["prompts_per_step"] * setup["num_generations"]
    return {
        "s_per_step": step,
        "generated_tokens_per_s": rows * statistics.fmean(lengths) / step,
        "completion_length": statistics.fmean(lengths),
        "peak_memory_mib": run["peak_gpu_mib"] if cuda else run["peak_rss_mib"],
        "timed_steps": len(steps),
        "run_s": run["run_s"],
    }


def ratios(pr1: dict, trl: dict) -> dict:
    keys = ("s_per_step", "generated_tokens_per_s", "peak_memory_mib")
    return {k: pr1[k] / trl[k] for k in keys}


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true", help="each family's tiny model (fp32, CPU)")
    ap.add_argument("--models", default=",".join(REAL_CONFIGS), help="comma-separated real_configs names")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {MODES}")
    ap.add_argument("--steps", type=int, default=3, help="GRPO steps per run; the first is warm-up")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return None
    models, modes = args.models.split(","), args.modes.split(",")
    unknown = [m for m in models if m not in REAL_CONFIGS] + [m for m in modes if m not in MODES]
    if unknown:
        raise SystemExit(f"unknown --models/--modes {unknown}; models: {list(REAL_CONFIGS)}, modes: {MODES}")
    if args.device == "cuda" and args.tiny:
        raise SystemExit("--tiny runs on CPU: use --device cpu --tiny")
    cuda = args.device == "cuda"
    setup_over = TINY_SETUP if args.tiny else GPU_SETUP
    setup = {**SETUP, **setup_over}
    warmup = 1 if args.steps > 1 else 0
    work = Path(tempfile.mkdtemp(prefix="pr1-gpu-check-"))
    print(f"GPU check on {args.device}{' (tiny models)' if args.tiny else ''}: {setup}", flush=True)
    results: dict[str, dict] = {}
    report = {
        "device": args.device,
        "tiny": args.tiny,
        "complete": False,  # the file is rewritten after every mode: a run cut short keeps what it measured
        "setup": setup,
        "steps_per_run": args.steps,
        "warmup_steps": warmup,
        "memory": "torch.cuda.max_memory_allocated" if cuda else "peak RSS (ru_maxrss)",
        "mixture": "grounding + counting records interleaved, each through its own task (pr1's Mixture): "
        "pr1.tasks has no mixture task",
        "machine": machine(cuda),
        "versions": versions(),
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        for name in models:
            t0 = time.perf_counter()
            ckpt = build_checkpoint(name, work / name, args.device, args.tiny)
            print(f"{name}: random checkpoint built and saved, {time.perf_counter() - t0:.0f} s", flush=True)
            results[name] = {}
            for mode in modes:
                base = {
                    "model": name,
                    "mode": mode,
                    "checkpoint": str(ckpt),
                    "device": args.device,
                    "steps": args.steps,
                    "data_dir": str(work / "data"),
                    "setup": setup_over,
                }
                runs = {side: launch({**base, "side": side}) for side in ("pr1", "trl")}
                row = {side: summary(run, setup, warmup, cuda) for side, run in runs.items()}
                row["pr1_over_trl"] = ratios(row["pr1"], row["trl"])
                row["pr1_fast_path"] = runs["pr1"]["fast_path"]
                row["raw"] = runs
                results[name][mode] = row
                out.write_text(json.dumps(report, indent=2) + "\n")
                p, t, r = row["pr1"], row["trl"], row["pr1_over_trl"]
                print(
                    f"  {mode:<8} pr1 {p['s_per_step']:7.3f} s/step {p['generated_tokens_per_s']:8.1f} tok/s "
                    f"{p['peak_memory_mib']:8.0f} MiB | TRL {t['s_per_step']:7.3f} s/step "
                    f"{t['generated_tokens_per_s']:8.1f} tok/s {t['peak_memory_mib']:8.0f} MiB | pr1/TRL "
                    f"time {r['s_per_step']:.2f} tok/s {r['generated_tokens_per_s']:.2f} "
                    f"mem {r['peak_memory_mib']:.2f}",
                    flush=True,
                )
            shutil.rmtree(ckpt)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["complete"] = True
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report


def machine(cuda: bool) -> dict:
    import torch

    info = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": sys.version}
    if cuda:
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_mib"] = torch.cuda.get_device_properties(0).total_memory / 2**20
    return info


if __name__ == "__main__":
    main()

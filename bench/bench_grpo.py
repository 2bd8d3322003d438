"""pr1's GRPO step vs TRL's GRPOTrainer on the same work, same machine, same run.

Both sides train the embedded tiny Qwen2-VL (pr1/assets/tiny-perception-sft) on the same synthetic grounding
prompts, in the same order, with the same G, completion length, sampling, optimiser, KL, loss aggregation and
reward function (pr1's `iou`). Every configuration runs in its own subprocess (so its peak RSS is its own);
pr1 is driven through `pr1.run.train` with a composed Hydra config, TRL through `GRPOTrainer.train`.

Measured: seconds per optimizer step (wall time between consecutive step ends, loop overhead included on both
sides; median over the steps after warm-up, pooled over interleaved repeats) and CPU seconds per step, which
other processes on a shared machine disturb less; rollouts/s; peak RSS; pr1's time per phase (`time/*` in
history.jsonl). LoRA: peak RSS with the adapter-disabled reference vs a frozen full copy vs no reference,
and the parameter bytes of policy and reference, on the tiny model and on a 116M-parameter random one whose
weights dominate the footprint. Scaling: pr1 step time vs G, and vs completion length (max new tokens on a
random-init model of the same architecture, whose completions run to the limit). `--before DIR` also runs
pr1 from another source tree (`git archive <commit> | tar -x -C DIR`) in the same run, for before/after.

    python bench/bench_grpo.py                       # full run, writes results/bench/grpo.json
    python bench/bench_grpo.py --before /tmp/pr1-before
    python bench/bench_grpo.py --quick               # 5 steps, one repeat, no LoRA/scaling (smoke run)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's pr1, whatever `pip install -e` points at
OUT = ROOT / "results" / "bench" / "grpo.json"
PHASES = ("rollout", "reward", "logps", "update", "other")

# The shared setup: every knob that both frameworks expose is set to the same value on both sides.
SETUP: dict[str, Any] = {
    "prompts_per_step": 4,
    "num_generations": 8,
    "max_new_tokens": 32,
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 0,
    "beta": 0.04,
    "lr": 5e-5,
    "weight_decay": 0.0,
    "grad_clip": 1.0,
    "epsilon": 0.2,
    "num_iterations": 1,
    "loss_type": "grpo",
    "scale_rewards": "group",
    "reward": "iou",
    "records": 64,
    "image_size": 112,
    "seed": 0,
}
# The LoRA memory runs on a random model whose weights (116M parameters, 444 MiB) dominate the footprint;
# a small step keeps them short. Same tokenizer and processor as the tiny model.
MEDIUM = {"hidden_size": 1024, "num_layers": 12, "num_heads": 16, "vision_depth": 2, "vision_embed_dim": 128}
MEDIUM_SETUP = {"prompts_per_step": 2, "num_generations": 4, "max_new_tokens": 16}

# What the two runs still do differently (no config on either side makes them equal); printed and saved.
DIFFERENCES = [
    "Decoding for the reward: TRL decodes completions with skip_special_tokens=True (Qwen's <|box_start|> "
    "markup is stripped), pr1 keeps the markup; the `iou` reward parses both, which is why it is the only "
    "reward here (pr1's default `format` reward would fail on TRL's stripped text).",
    "Log-probs: TRL computes them with its fused LM head (chunked log-softmax, no full logits tensor) and "
    "one forward per [prompt, completion] row; pr1 runs each prompt once per group and materialises the "
    "completion logits. Same values up to float rounding (tests/test_engine.py checks pr1's).",
    "Loop: pr1 runs on Lightning with its default CSV + TensorBoard loggers and run recorder (history.jsonl) "
    "and writes a last checkpoint after the final step (outside the timed steps); TRL runs on "
    "transformers.Trainer with report_to=none and no checkpoints.",
    "Sampling: same temperature/top-p/top-k, same suppressed vision tokens and end tokens, but different "
    "random streams, so the completions (and their lengths, which set the work) differ; the mean completion "
    "length is reported for both.",
    "Advantage epsilon: pr1 adds objective.adv_eps=1e-4 to the group std, TRL a fixed 1e-4 (equal here).",
    "Prompt order: TRL reads the dataset unshuffled, in the order pr1's StepBatchSampler yields it, so each "
    "step sees the same 4 prompts on both sides.",
]


# ----------------------------------------------------------------------------------------------- helpers
def peak_rss_mib() -> float:
    """Peak resident set size of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_now_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def unique_param_bytes(model, exclude: frozenset[int] | set[int] = frozenset()) -> tuple[int, set[int]]:
    """Bytes of `model`'s parameter/buffer storages not in `exclude` (storage pointers), and the pointers: a
    reference that shares the policy's storages adds 0 bytes."""
    seen: dict[int, int] = {}
    for t in [*model.parameters(), *model.buffers()]:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in exclude:
            seen[ptr] = t.untyped_storage().nbytes()
    return sum(seen.values()), set(seen)


def after_warmup(values: list[float], warmup: int) -> list[float]:
    return values[warmup:] if len(values) > warmup else values


def load_records(data_dir: Path) -> list[dict]:
    from pr1.data.synthetic import load_or_make

    return load_or_make(
        "grounding",
        n=SETUP["records"],
        seed=SETUP["seed"],
        root=data_dir,
        knobs={"size": SETUP["image_size"], "shapes": ["rectangle"], "colors": ["red"], "n_distractors": 0},
    )


def records_in_pr1_order(records: list[dict], steps: int, prompts_per_step: int) -> list[dict]:
    """The prompts pr1's sampler feeds its first `steps` steps, flattened (TRL reads them in this order)."""
    from pr1.sampler import StepBatchSampler

    order: list[int] = []
    for batch in StepBatchSampler(len(records), prompts_per_step, SETUP["seed"]):
        order += batch
        if len(order) >= steps * prompts_per_step:
            break
    return [records[i] for i in order]


class Clock:
    """Wall and CPU time at the end of every step (CPU time: this process, all its threads)."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def tick(self) -> None:
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def steps(self) -> dict[str, list[float]]:
        return {
            "step_s": [b - a for a, b in zip(self.wall, self.wall[1:], strict=False)],
            "cpu_step_s": [b - a for a, b in zip(self.cpu, self.cpu[1:], strict=False)],
        }


# ---------------------------------------------------------------------------------------------- pr1 side
class StepTimer(L.Callback):
    """Step clock and parameter memory for a pr1 run, added through `cfg.callbacks` (pr1's hook for extra
    callbacks). With `full_copy_reference` it swaps pr1's LoRA reference (the policy with its adapters
    disabled) for a frozen deep copy: the memory baseline that the shared-weight reference avoids."""

    report: dict[str, Any] = {}

    def __init__(self, full_copy_reference: bool = False):
        self.full_copy_reference = full_copy_reference
        self.clock = Clock()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.full_copy_reference:
            from pr1.model import Reference

            pl_module.reference = Reference(pl_module.policy, lora=False)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        StepTimer.report["rss_before_train_mib"] = rss_now_mib()
        self.clock.tick()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.clock.tick()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        policy_bytes, policy_ptrs = unique_param_bytes(pl_module.policy)
        ref = pl_module.reference
        StepTimer.report.update(
            **self.clock.steps(),
            policy_param_bytes=policy_bytes,
            reference_extra_param_bytes=unique_param_bytes(ref.model, policy_ptrs)[0] if ref else 0,
            trainable_params=sum(p.numel() for p in pl_module.policy.parameters() if p.requires_grad),
        )


def pr1_overrides(spec: dict, setup: dict, run_dir: Path) -> list[str]:
    """The command-line overrides of the pr1 run: SETUP mapped onto pr1's config keys."""
    s = setup
    ov = [
        "task=grounding",
        "domain=source",  # the knobs load_records gives the TRL side, and its checkpoint below
        "model.path=${pr1.asset:tiny-perception-sft}",
        "task.val=null",
        f"task.train.n={s['records']}",
        f"task.train.root={spec['data_dir']}",
        f"task.train.knobs.size={s['image_size']}",
        f"paths.run_dir={run_dir}",
        "arm=bench",
        f"seed={s['seed']}",
        f"trainer.max_steps={spec['steps']}",
        f"trainer.val_check_interval={spec['steps'] + 1000}",
        "trainer.enable_progress_bar=false",
        f"print_every={spec['steps'] + 1000}",
        f"objective.prompts_per_step={s['prompts_per_step']}",
        f"objective.num_generations={s['num_generations']}",
        f"objective.max_new_tokens={s['max_new_tokens']}",
        f"objective.temperature={s['temperature']}",
        f"objective.top_p={s['top_p']}",
        f"objective.top_k={s['top_k']}",
        f"objective.beta={s['beta']}",
        f"objective.lr={s['lr']}",
        f"objective.weight_decay={s['weight_decay']}",
        f"objective.grad_clip={s['grad_clip']}",
        f"objective.epsilon={s['epsilon']}",
        f"objective.epsilon_high={s['epsilon']}",
        f"objective.num_iterations={s['num_iterations']}",
        f"objective.loss_type={s['loss_type']}",
        f"objective.scale_rewards={s['scale_rewards']}",
        "objective.warmup_steps=0",
        "+callbacks.bench._target_=__main__.StepTimer",
        f"+callbacks.bench.full_copy_reference={spec.get('full_copy_reference', False)}",
    ]
    if spec.get("lora"):
        ov.append("model.lora.enabled=true")
    if spec.get("model") == "scratch":  # the tiny model's architecture, random weights
        ov.append("model=tiny_scratch")
    if spec.get("model") == "medium":
        ov += ["model=tiny_scratch", *(f"model.build.{k}={v}" for k, v in MEDIUM.items())]
    return ov


def run_pr1(spec: dict, setup: dict) -> dict:
    """One pr1 run through pr1.run.train; step times, phases and memory."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    import pr1.run

    conf = Path(pr1.run.__file__).resolve().parents[1] / "conf"  # the conf of the pr1 tree under test
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = compose("config", overrides=pr1_overrides(spec, setup, run_dir))
        with open_dict(cfg):  # the same reward as TRL's side: iou only (see DIFFERENCES)
            for name in list(cfg.task.rewards):
                if name != setup["reward"]:
                    del cfg.task.rewards[name]
        pr1.run.train(cfg)
        rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "time/rollout" in r]  # one per step, in step order
    report = dict(StepTimer.report)
    phases = {p: [r.get(f"time/{p}", 0.0) for r in rows] for p in PHASES}
    # The training loop's own time per step: Lightning, logging, data loading (outside training_step).
    phases["loop"] = [s - sum(v[i] for v in phases.values()) for i, s in enumerate(report["step_s"])]
    return {
        **report,
        "phase_steps_s": phases,
        "completion_length_steps": [r["train/completion_length"] for r in rows],
        "reward_steps": [r["train/reward"] for r in rows],
    }


# ---------------------------------------------------------------------------------------------- TRL side
def run_trl(spec: dict, setup: dict) -> dict:
    """One TRL GRPOTrainer run on the same model, prompts (same order), settings and reward."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from pr1 import rewards
    from pr1.model import asset_path
    from pr1.tasks.grounding import Grounding

    path = asset_path("tiny-perception-sft")
    processor = AutoProcessor.from_pretrained(path, min_pixels=56 * 56, max_pixels=112 * 112)  # as model=tiny
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    recs = records_in_pr1_order(
        load_records(Path(spec["data_dir"])), spec["steps"], setup["prompts_per_step"]
    )
    text = [Grounding.template.format(question=r["question"]) for r in recs]  # thinking off
    return train_trl(model, processor, trl_dataset(recs, text), [rewards.build(setup["reward"])], setup, spec)


def trl_dataset(records: list[dict], prompts: list[str], **columns: list) -> Any:
    """TRL's dataset of one image + prompt text per record, with the reward columns (and any `columns`)."""
    import datasets

    chats = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": t}]}] for t in prompts]
    return datasets.Dataset.from_dict(
        {
            "prompt": chats,
            "image": [r["image"] for r in records],
            "solution": [list(r["solution"]) for r in records],
            "image_size": [list(r["image_size"]) for r in records],
            **columns,
        }
    ).cast_column("image", datasets.Image())


def grpo_config(setup: dict, steps: int, output_dir: str, suppress: list[int], **overrides: Any) -> Any:
    """TRL's GRPOConfig with every knob pr1 also sets at `setup`'s value; `overrides` for the rest (device,
    precision, gradient checkpointing)."""
    from trl import GRPOConfig

    s = setup
    kwargs = dict(
        use_cpu=True,
        seed=s["seed"],
        per_device_train_batch_size=s["prompts_per_step"] * s["num_generations"],
        num_generations=s["num_generations"],
        max_completion_length=s["max_new_tokens"],
        temperature=s["temperature"],
        top_p=s["top_p"],
        top_k=s["top_k"],
        beta=s["beta"],
        learning_rate=s["lr"],
        weight_decay=s["weight_decay"],
        max_grad_norm=s["grad_clip"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        optim="adamw_torch",
        epsilon=s["epsilon"],
        epsilon_high=s["epsilon"],
        num_iterations=s["num_iterations"],
        loss_type=s["loss_type"],
        scale_rewards=s["scale_rewards"],
        shuffle_dataset=False,
        gradient_checkpointing=False,  # TRL's default is True, pr1's model=tiny has it off
        bf16=False,  # TRL's default is True, pr1's model=tiny is float32
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    return GRPOConfig(
        output_dir=output_dir,
        max_steps=steps,
        generation_kwargs={"suppress_tokens": suppress},
        **{**kwargs, **overrides},
    )


def train_trl(
    model: Any,
    processor: Any,
    ds: Any,
    reward_funcs: list,
    setup: dict,
    spec: dict,
    peft_config: Any = None,
    **config: Any,
) -> dict:
    """Train `model` with GRPOTrainer on `ds` for spec["steps"] steps; step times, lengths, rewards, bytes.
    The vision tokens pr1 never samples are suppressed here too; `config` overrides grpo_config."""
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    from pr1.engine import QWEN_VISION_TOKENS

    processor.tokenizer.padding_side = "left"
    tok = processor.tokenizer
    suppress = [i for i in tok.convert_tokens_to_ids(list(QWEN_VISION_TOKENS)) if i is not None]
    clock = Clock()
    step_logs: list[dict] = []
    rss_before: list[float] = []

    class Timer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            rss_before.append(rss_now_mib())
            clock.tick()

        def on_step_end(self, args, state, control, **kw):
            clock.tick()

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                step_logs.append(logs)

    with tempfile.TemporaryDirectory() as tmp:
        trainer = GRPOTrainer(
            model=model,
            processing_class=processor,
            reward_funcs=reward_funcs,
            args=grpo_config(setup, spec["steps"], tmp, suppress, **config),
            train_dataset=ds,
            callbacks=[Timer()],
            peft_config=peft_config,
        )
        trainer.train()
        policy_bytes, ptrs = unique_param_bytes(trainer.model)
        ref_bytes = unique_param_bytes(trainer.ref_model, ptrs)[0] if trainer.ref_model is not None else 0
    return {
        **clock.steps(),
        "rss_before_train_mib": rss_before[0],
        "policy_param_bytes": policy_bytes,
        "reference_extra_param_bytes": ref_bytes,
        "completion_length_steps": [x["completions/mean_length"] for x in step_logs],
        "reward_steps": [x["reward"] for x in step_logs],
        "eos_token_ids": list(trainer.eos_token_ids),
    }


# ------------------------------------------------------------------------------------------ orchestrator
def worker(spec: dict) -> None:
    """Run one configuration in this (fresh) process and print its result as a tagged stdout line."""
    if spec.get("src"):  # a pr1 source tree to measure instead of this checkout's (--before)
        sys.path.insert(0, spec["src"])
    import torch

    import pr1

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    load_start = os.getloadavg()[0]
    setup = {**SETUP, **spec.get("setup", {})}
    result = run_trl(spec, setup) if spec["side"] == "trl" else run_pr1(spec, setup)
    result.update(
        pr1_source=str(Path(pr1.__file__).parents[1]),
        peak_rss_mib=peak_rss_mib(),
        torch_threads=torch.get_num_threads(),
        loadavg_1min=[load_start, os.getloadavg()[0]],
    )
    print("BENCH_RESULT " + json.dumps(result), flush=True)


def launch(spec: dict) -> dict:
    """Run one worker subprocess (its own peak RSS) and return its result."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "offline"}
    if spec.get("threads"):
        env["OMP_NUM_THREADS"] = str(spec["threads"])
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], env=env, capture_output=True, text=True
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{spec['label']} failed ({proc.returncode}):\n{proc.stderr[-5000:]}")
    result = json.loads(lines[-1].removeprefix("BENCH_RESULT "))
    steps = after_warmup(result["step_s"], spec["warmup"])
    print(
        f"  {spec['label']:<44} {statistics.median(steps):7.3f} s/step  "
        f"(run {time.perf_counter() - t0:4.0f} s, load {result['loadavg_1min'][1]:.1f})",
        flush=True,
    )
    return result


def pooled(runs: list[dict], warmup: int, setup: dict) -> dict:
    """One configuration's numbers from its repeated runs: medians over all post-warm-up steps."""

    def steps(key: str) -> list[float]:
        return [v for r in runs for v in after_warmup(r[key], warmup)]

    median_step = statistics.median(steps("step_s"))
    out = {
        "median_step_s": median_step,
        "median_cpu_step_s": statistics.median(steps("cpu_step_s")),
        "rollouts_per_s": setup["prompts_per_step"] * setup["num_generations"] / median_step,
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "rss_before_train_mib": max(r["rss_before_train_mib"] for r in runs),
        "completion_length": statistics.fmean(steps("completion_length_steps")),
        "reward": statistics.fmean(steps("reward_steps")),
        "policy_param_bytes": runs[0]["policy_param_bytes"],
        "reference_extra_param_bytes": runs[0]["reference_extra_param_bytes"],
        "timed_steps": len(steps("step_s")),
    }
    if "phase_steps_s" in runs[0]:
        out["phases_s"] = {
            p: statistics.median([v for r in runs for v in after_warmup(r["phase_steps_s"][p], warmup)])
            for p in (*PHASES, "loop")
        }
    return out


def fmt_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def versions() -> dict[str, str]:
    import importlib.metadata as md

    return {p: md.version(p) for p in ("torch", "transformers", "trl", "peft", "lightning")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=12, help="optimizer steps per run (default 12)")
    ap.add_argument("--warmup", type=int, default=2, help="first steps of a run left out (default 2)")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved runs per side, pooled (default 2)")
    ap.add_argument("--scaling-steps", type=int, default=6, help="steps per scaling run (default 6)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per run (default 1: on a shared 2-core machine, 2 threads on a model this small "
        "mostly wait for each other; 0 keeps torch's default)",
    )
    ap.add_argument("--quick", action="store_true", help="5 steps, one repeat, no LoRA or scaling runs")
    ap.add_argument("--before", help="also run pr1 from this source tree (before/after in the same run)")
    ap.add_argument("--out", default=str(OUT), help=f"JSON output (default {OUT.relative_to(ROOT)})")
    args = ap.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    steps, repeats = (5, 1) if args.quick else (args.steps, args.repeats)
    warm = min(args.warmup, steps - 1)
    data_dir = Path(tempfile.mkdtemp(prefix="pr1-bench-data-"))
    load_records(data_dir)  # generated once here, read by every run
    base = {"steps": steps, "warmup": warm, "data_dir": str(data_dir), "threads": args.threads}
    print(f"GRPO step benchmark, {steps} steps x {repeats} repeats per side: {SETUP}", flush=True)

    sides = {
        "trl": {**base, "side": "trl", "label": "TRL GRPOTrainer"},
        "pr1": {**base, "side": "pr1", "label": "pr1"},
    }
    if args.before:
        src = str(Path(args.before).resolve())
        sides["pr1_before"] = {**base, "side": "pr1", "label": f"pr1 from {args.before}", "src": src}
    raw: dict[str, Any] = {key: [] for key in sides}
    for _ in range(repeats):  # interleaved, so that a busy spell on the machine hits every side alike
        for key, spec in sides.items():
            raw[key].append(launch(spec))
    main_runs = {key: pooled(runs, warm, SETUP) for key, runs in raw.items()}

    lora: dict[str, Any] = {}
    scaling: dict[str, Any] = {}
    if not args.quick:
        for model, setup, n in (("tiny", {}, 4), ("medium", MEDIUM_SETUP, 2)):
            spec = {**base, "side": "pr1", "lora": True, "model": model, "steps": n, "warmup": 1}
            variants = {
                "policy_only": {"label": "no reference (beta=0)", "setup": {**setup, "beta": 0.0}},
                "adapter_reference": {"label": "adapter-disabled reference", "setup": setup},
                "full_copy_reference": {
                    "label": "frozen full-copy reference",
                    "setup": setup,
                    "full_copy_reference": True,
                },
            }
            lora[model] = {}
            for key, v in variants.items():
                run = launch({**spec, **v, "label": f"pr1 LoRA {model}, {v['label']}"})
                lora[model][key] = pooled([run], 1, {**SETUP, **v["setup"]})
        scale = {
            **base,
            "side": "pr1",
            "steps": args.scaling_steps,
            "warmup": min(warm, args.scaling_steps - 1),
        }
        scaling["num_generations"] = {SETUP["num_generations"]: main_runs["pr1"]}
        for g in (4, 16):
            run = launch({**scale, "label": f"pr1 G={g}", "setup": {"num_generations": g}})
            scaling["num_generations"][g] = pooled([run], scale["warmup"], {**SETUP, "num_generations": g})
        # The SFT model ends its answers after ~25 tokens whatever the limit, so completion length is scaled
        # on the same architecture with random weights, whose completions run to the limit.
        scaling["max_new_tokens (random-init model)"] = {}
        for t in (16, 32, 64):
            run = launch(
                {
                    **scale,
                    "model": "scratch",
                    "label": f"pr1 random-init, T={t}",
                    "setup": {"max_new_tokens": t},
                }
            )
            scaling["max_new_tokens (random-init model)"][t] = pooled(
                [run], scale["warmup"], {**SETUP, "max_new_tokens": t}
            )

    report = {
        "setup": SETUP,
        "steps_per_run": steps,
        "warmup_steps": warm,
        "repeats": repeats,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": sys.version},
        "versions": versions(),
        "differences": DIFFERENCES,
        "results": main_runs,
        "lora": lora,
        "lora_medium_model": {"build": MEDIUM, "setup": MEDIUM_SETUP},
        "scaling": scaling,
        "summary": summarise(main_runs, lora, scaling),
        "raw_runs": raw,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")


def summarise(res: dict, lora: dict, scaling: dict) -> dict:
    """Print the tables; return the headline numbers (ratios are pr1 / TRL unless named otherwise)."""
    trl, pr1 = res["trl"], res["pr1"]
    names = {"trl": "TRL", "pr1": "pr1", "pr1_before": "pr1 before"}
    rows = [["", "s/step", "CPU s/step", "rollouts/s", "peak RSS MiB", "RSS at start MiB", "mean len"]]
    for key, r in res.items():
        rows.append(
            [
                names[key],
                f"{r['median_step_s']:.3f}",
                f"{r['median_cpu_step_s']:.3f}",
                f"{r['rollouts_per_s']:.1f}",
                f"{r['peak_rss_mib']:.0f}",
                f"{r['rss_before_train_mib']:.0f}",
                f"{r['completion_length']:.1f}",
            ]
        )
    out: dict[str, Any] = {
        "step_time_ratio_pr1_over_trl": pr1["median_step_s"] / trl["median_step_s"],
        "cpu_time_ratio_pr1_over_trl": pr1["median_cpu_step_s"] / trl["median_cpu_step_s"],
        "speedup_pr1_vs_trl": trl["median_step_s"] / pr1["median_step_s"],
        "rollouts_per_s_ratio_pr1_over_trl": pr1["rollouts_per_s"] / trl["rollouts_per_s"],
        "peak_rss_ratio_pr1_over_trl": pr1["peak_rss_mib"] / trl["peak_rss_mib"],
    }
    print("\n== pr1 vs TRL GRPOTrainer (medians over post-warm-up steps) ==")
    print(fmt_table(rows))
    print(
        f"pr1/TRL: step time {out['step_time_ratio_pr1_over_trl']:.2f} (pr1 {out['speedup_pr1_vs_trl']:.2f}x "
        f"faster), CPU time {out['cpu_time_ratio_pr1_over_trl']:.2f}, rollouts/s "
        f"{out['rollouts_per_s_ratio_pr1_over_trl']:.2f}, peak RSS {out['peak_rss_ratio_pr1_over_trl']:.2f}"
    )
    for key in ("pr1", "pr1_before"):
        if key in res:
            ph, total = res[key]["phases_s"], res[key]["median_step_s"]
            print(f"\n== {names[key]}: time per phase (median s, share of the median step) ==")
            print(fmt_table([[p, f"{v:.4f}", f"{v / total:.1%}"] for p, v in ph.items()]))
    ph = pr1["phases_s"]
    out["pr1_outside_rollout_and_model_share"] = (ph["reward"] + ph["other"] + ph["loop"]) / pr1[
        "median_step_s"
    ]
    if "pr1_before" in res:
        before = res["pr1_before"]
        out["pr1_speedup_vs_before"] = before["median_step_s"] / pr1["median_step_s"]
        out["pr1_cpu_speedup_vs_before"] = before["median_cpu_step_s"] / pr1["median_cpu_step_s"]
        out["pr1_before_speedup_vs_trl"] = trl["median_step_s"] / before["median_step_s"]
        print(
            f"\npr1 now vs before: {out['pr1_speedup_vs_before']:.2f}x faster per step "
            f"({out['pr1_cpu_speedup_vs_before']:.2f}x in CPU time); before vs TRL: "
            f"{out['pr1_before_speedup_vs_trl']:.2f}x"
        )
    for model, runs in lora.items():
        base = runs["policy_only"]["peak_rss_mib"]
        rows = [["reference", "peak RSS MiB", "vs no reference", "policy params MiB", "reference extra MiB"]]
        for key, r in runs.items():
            rows.append(
                [
                    key,
                    f"{r['peak_rss_mib']:.0f}",
                    f"{r['peak_rss_mib'] / base:.3f}",
                    f"{r['policy_param_bytes'] / 2**20:.1f}",
                    f"{r['reference_extra_param_bytes'] / 2**20:.1f}",
                ]
            )
        print(f"\n== pr1 + LoRA, {model} model: peak memory ==")
        print(fmt_table(rows))
        out[f"lora_{model}"] = {
            "adapter_ref_over_policy_only": runs["adapter_reference"]["peak_rss_mib"] / base,
            "full_copy_over_policy_only": runs["full_copy_reference"]["peak_rss_mib"] / base,
            "full_copy_over_adapter_ref": runs["full_copy_reference"]["peak_rss_mib"]
            / runs["adapter_reference"]["peak_rss_mib"],
            "adapter_ref_extra_param_bytes": runs["adapter_reference"]["reference_extra_param_bytes"],
            "full_copy_extra_param_bytes": runs["full_copy_reference"]["reference_extra_param_bytes"],
        }
    if scaling:
        print("\n== pr1 scaling: median s/step (mean completion length) ==")
        for knob, runs in scaling.items():
            cells = [
                f"{v}: {r['median_step_s']:.3f} ({r['completion_length']:.0f})"
                for v, r in sorted(runs.items())
            ]
            print(f"{knob:>36}  " + "   ".join(cells))
        out["scaling_s_per_step"] = {
            knob: {v: r["median_step_s"] for v, r in runs.items()} for knob, runs in scaling.items()
        }
    out["targets"] = {
        "pr1 >= 1.3x faster than TRL": out["speedup_pr1_vs_trl"] >= 1.3,
        "outside rollout+model < 10% of the step": out["pr1_outside_rollout_and_model_share"] < 0.10,
    }
    if lora:
        out["targets"]["LoRA peak RSS within 15% of policy-only (medium model)"] = (
            out["lora_medium"]["adapter_ref_over_policy_only"] <= 1.15
        )
    print("\n== targets ==")
    for name, ok in out["targets"].items():
        print(f"  {'MET    ' if ok else 'NOT MET'}  {name}")
    return out


if __name__ == "__main__":
    main()

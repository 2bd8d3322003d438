"""pr1's GRPO step vs TRL's GRPOTrainer on the same work, same machine, same run.

Both sides train the embedded tiny Qwen2-VL (pr1/assets/tiny-grounding-sft) on the same synthetic grounding
prompts, in the same order, with the same G, completion length, sampling, optimiser, KL, loss aggregation and
reward function (pr1's `iou`). Each configuration runs in its own subprocess (so peak RSS is its own); pr1 is
driven through `pr1.run.train` with a composed Hydra config, TRL through `GRPOTrainer.train`.

Measured: seconds per optimizer step (wall time between consecutive step ends, median after warm-up; the
training loop's own overhead is included on both sides), rollouts/s, peak RSS, pr1's per-phase time
(`time/*` from history.jsonl); LoRA memory (adapter-disabled reference vs a frozen full copy vs no
reference); pr1 step time vs G and vs max new tokens. `--before DIR` also runs pr1 from another source tree
(e.g. `git archive HEAD | tar -x -C DIR`) in the same run, for before/after numbers.

    python bench/bench_grpo.py            # full run, writes results/bench/grpo.json
    python bench/bench_grpo.py --quick    # fewer steps, no scaling sweep (a smoke run)
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

# What the two runs still do differently (no config on either side makes them equal); printed and saved.
DIFFERENCES = [
    "Decoding for the reward: TRL decodes completions with skip_special_tokens=True (Qwen's <|box_start|> "
    "markup is stripped), pr1 keeps the markup; the `iou` reward parses both, which is why it is the only "
    "reward here (pr1's default `format` reward would fail on TRL's stripped text).",
    "Advantage epsilon: pr1 adds objective.adv_eps=1e-4 to the group std, TRL a fixed 1e-4 (equal here).",
    "Log-probs: TRL computes them with its fused LM head (chunked log-softmax, no full logits tensor); pr1 "
    "materialises the completion logits. Same values up to float rounding.",
    "Loop: pr1 runs on Lightning (CSV + TensorBoard loggers, pr1's run recorder, a last checkpoint after the "
    "final step, outside the timed steps); TRL on transformers.Trainer with report_to=none, no checkpoints.",
    "Sampling RNG: both sample with do_sample, same temperature/top-p/top-k, but from different random "
    "streams, so the completions (and their lengths, which set the work) differ; mean completion length is "
    "reported for both.",
    "Prompt order: TRL reads the dataset unshuffled in the exact order pr1's StepBatchSampler yields it, so "
    "each step sees the same 4 prompts on both sides.",
]


# ----------------------------------------------------------------------------------------------- helpers
def peak_rss_mib() -> float:
    """Peak resident set size of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def unique_param_bytes(model, exclude: set[int] = frozenset()) -> tuple[int, set[int]]:
    """Bytes of the parameter/buffer storages of `model` that are not in `exclude` (by data pointer)."""
    seen: dict[int, int] = {}
    for t in [*model.parameters(), *model.buffers()]:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in exclude:
            seen[ptr] = t.untyped_storage().nbytes()
    return sum(seen.values()), set(seen)


def median_after(values: list[float], warmup: int) -> float:
    return float(statistics.median(values[warmup:] if len(values) > warmup else values))


def records_in_pr1_order(records: list[dict], steps: int) -> list[dict]:
    """The prompts pr1's sampler feeds its first `steps` steps, flattened (TRL reads them in this order)."""
    from pr1.sampler import StepBatchSampler

    sampler = StepBatchSampler(len(records), SETUP["prompts_per_step"], SETUP["seed"])
    order: list[int] = []
    for batch in sampler:
        order += batch
        if len(order) >= steps * SETUP["prompts_per_step"]:
            break
    return [records[i] for i in order]


def load_records(data_dir: Path) -> list[dict]:
    from pr1.data.synthetic import load_or_make

    return load_or_make(
        "grounding",
        n=SETUP["records"],
        seed=SETUP["seed"],
        root=data_dir,
        knobs={"size": SETUP["image_size"], "shapes": ["rectangle"], "colors": ["red"], "n_distractors": 0},
    )


# ---------------------------------------------------------------------------------------------- pr1 side
class StepTimer(L.Callback):
    """Wall time of every optimizer step (end to end, loop overhead included) and parameter memory.

    Instantiated by pr1.run through `cfg.callbacks` (the documented way to add callbacks to a run). With
    `full_copy_reference` it swaps pr1's LoRA reference (the policy with adapters disabled) for a frozen
    deep copy, the memory baseline that LoRA's shared-weight reference avoids.
    """

    report: dict[str, Any] = {}

    def __init__(self, full_copy_reference: bool = False):
        self.full_copy_reference = full_copy_reference
        self.ends: list[float] = []
        self.t0 = 0.0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.full_copy_reference:
            from pr1.model import Reference

            pl_module.reference = Reference(pl_module.policy, lora=False)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.t0 = time.perf_counter()
        StepTimer.report["rss_before_train_mib"] = rss_now_mib()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.ends.append(time.perf_counter())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        stamps = [self.t0, *self.ends]
        policy_bytes, policy_ptrs = unique_param_bytes(pl_module.policy)
        ref = pl_module.reference
        ref_bytes = unique_param_bytes(ref.model, exclude=policy_ptrs)[0] if ref is not None else 0
        StepTimer.report.update(
            step_s=[b - a for a, b in zip(stamps, stamps[1:], strict=False)],
            policy_param_bytes=policy_bytes,
            reference_extra_param_bytes=ref_bytes,
            trainable_params=sum(p.numel() for p in pl_module.policy.parameters() if p.requires_grad),
        )


def rss_now_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def pr1_overrides(spec: dict, run_dir: Path, data_dir: Path) -> list[str]:
    s = {**SETUP, **spec.get("setup", {})}
    ov = [
        "task.val=null",
        f"task.train.n={s['records']}",
        f"task.train.root={data_dir}",
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
    return ov + list(spec.get("overrides", []))


def run_pr1(spec: dict) -> dict:
    """One pr1 run through pr1.run.train; returns step times, phases and memory."""
    import pr1.run
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    conf = Path(pr1.run.__file__).resolve().parents[1] / "conf"
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = compose("config", overrides=pr1_overrides(spec, run_dir, Path(spec["data_dir"])))
        with open_dict(cfg):  # the same reward as TRL's side: iou only (see DIFFERENCES)
            for name in list(cfg.task.rewards):
                if name != SETUP["reward"]:
                    del cfg.task.rewards[name]
        pr1.run.train(cfg)
        rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "time/rollout" in r]
    warm = spec["warmup"]
    report = dict(StepTimer.report)
    steps = report.pop("step_s")
    phases = {p: median_after([r.get(f"time/{p}", 0.0) for r in rows], warm) for p in PHASES}
    phases["loop"] = max(median_after(steps, warm) - sum(phases.values()), 0.0)
    return {
        **report,
        "step_s": steps,
        "median_step_s": median_after(steps, warm),
        "phases_s": phases,
        "completion_length": statistics.fmean(r["train/completion_length"] for r in rows[warm:] or rows),
        "reward": statistics.fmean(r["train/reward"] for r in rows),
    }


# ---------------------------------------------------------------------------------------------- TRL side
def run_trl(spec: dict) -> dict:
    """One TRL GRPOTrainer run on the same model, prompts (same order), settings and reward."""
    import datasets
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from pr1 import rewards
    from pr1.model import asset_path
    from pr1.tasks.prompts import build_prompt

    s = {**SETUP, **spec.get("setup", {})}
    path = asset_path("tiny-grounding-sft")
    processor = AutoProcessor.from_pretrained(path, min_pixels=3136, max_pixels=12544)
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    tok = processor.tokenizer
    vision = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
    suppress = [i for i in tok.convert_tokens_to_ids(list(vision)) if i is not None]  # as pr1 suppresses

    recs = records_in_pr1_order(load_records(Path(spec["data_dir"])), spec["steps"])
    ds = datasets.Dataset.from_dict(
        {
            "prompt": [
                [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image"},
                            {"type": "text", "text": build_prompt("grounding", r["question"], False)},
                        ],
                    }
                ]
                for r in recs
            ],
            "image": [r["image"] for r in recs],
            "solution": [list(r["solution"]) for r in recs],
            "image_size": [list(r["image_size"]) for r in recs],
        }
    ).cast_column("image", datasets.Image())

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []
            self.t0 = 0.0
            self.lengths: list[float] = []
            self.rewards: list[float] = []
            self.rss_before = 0.0

        def on_train_begin(self, args, state, control, **kw):
            self.rss_before = rss_now_mib()
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.ends.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                self.lengths.append(logs["completions/mean_length"])
                self.rewards.append(logs["reward"])

    timer = Timer()
    with tempfile.TemporaryDirectory() as tmp:
        args = GRPOConfig(
            output_dir=tmp,
            use_cpu=True,
            seed=s["seed"],
            per_device_train_batch_size=s["prompts_per_step"] * s["num_generations"],
            num_generations=s["num_generations"],
            max_completion_length=s["max_new_tokens"],
            temperature=s["temperature"],
            top_p=s["top_p"],
            top_k=s["top_k"],
            generation_kwargs={"suppress_tokens": suppress},
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
            max_steps=spec["steps"],
            shuffle_dataset=False,
            gradient_checkpointing=False,
            bf16=False,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = GRPOTrainer(
            model=model,
            processing_class=processor,
            reward_funcs=[rewards.build(s["reward"])],
            args=args,
            train_dataset=ds,
            callbacks=[timer],
        )
        trainer.train()
        ref_bytes = 0
        policy_bytes, ptrs = unique_param_bytes(trainer.model)
        if trainer.ref_model is not None:
            ref_bytes = unique_param_bytes(trainer.ref_model, exclude=ptrs)[0]
    stamps = [timer.t0, *timer.ends]
    steps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    warm = spec["warmup"]
    return {
        "step_s": steps,
        "median_step_s": median_after(steps, warm),
        "completion_length": statistics.fmean(timer.lengths[warm:] or timer.lengths),
        "reward": statistics.fmean(timer.rewards),
        "rss_before_train_mib": timer.rss_before,
        "policy_param_bytes": policy_bytes,
        "reference_extra_param_bytes": ref_bytes,
        "eos_token_ids": list(trainer.eos_token_ids),
    }


# ------------------------------------------------------------------------------------------ orchestrator
def worker(spec: dict) -> None:
    """Run one configuration in this (fresh) process and print its result as the last stdout line."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = run_trl(spec) if spec["side"] == "trl" else run_pr1(spec)
    result["peak_rss_mib"] = peak_rss_mib()
    print("BENCH_RESULT " + json.dumps(result), flush=True)


def launch(spec: dict, pythonpath: str | None = None) -> dict:
    """Run a worker subprocess (its own peak RSS) and parse its result."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([pythonpath, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    label = spec["label"]
    print(f"  running {label} ...", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{label} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    result = json.loads(lines[-1].removeprefix("BENCH_RESULT "))
    rollouts = spec.get("setup", {}).get("num_generations", SETUP["num_generations"]) * SETUP["prompts_per_step"]
    result["rollouts_per_s"] = rollouts / result["median_step_s"]
    print(f"    {label}: {result['median_step_s']:.3f} s/step ({time.perf_counter() - t0:.0f} s)", flush=True)
    return result


def fmt_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=12, help="optimizer steps per run (default 12)")
    ap.add_argument("--warmup", type=int, default=2, help="steps dropped before the median (default 2)")
    ap.add_argument("--scaling-steps", type=int, default=6, help="steps per scaling run (default 6)")
    ap.add_argument("--quick", action="store_true", help="5 steps, no LoRA/scaling runs")
    ap.add_argument("--before", help="also run pr1 from this source tree (before/after in the same run)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    steps = 5 if args.quick else args.steps
    warm = min(args.warmup, steps - 1)
    data_dir = Path(tempfile.mkdtemp(prefix="pr1-bench-data-"))
    load_records(data_dir)  # generated once, read by every worker
    base = {"steps": steps, "warmup": warm, "data_dir": str(data_dir)}
    print(f"GRPO step benchmark: {SETUP}", flush=True)

    res: dict[str, Any] = {}
    res["trl"] = launch({**base, "side": "trl", "label": "TRL GRPOTrainer"})
    res["pr1"] = launch({**base, "side": "pr1", "label": "pr1"})
    if args.before:
        res["pr1_before"] = launch({**base, "side": "pr1", "label": "pr1 (before)"}, pythonpath=args.before)
    lora: dict[str, Any] = {}
    scaling: dict[str, Any] = {"G": {}, "max_new_tokens": {}}
    if not args.quick:
        lora_base = {**base, "side": "pr1", "lora": True}
        lora["policy_only"] = launch(
            {**lora_base, "label": "pr1 LoRA, no reference (beta=0)", "setup": {"beta": 0.0}}
        )
        lora["adapter_reference"] = launch({**lora_base, "label": "pr1 LoRA, adapter-disabled reference"})
        lora["full_copy_reference"] = launch(
            {**lora_base, "label": "pr1 LoRA, frozen full-copy reference", "full_copy_reference": True}
        )
        sc = {**base, "side": "pr1", "steps": args.scaling_steps, "warmup": min(warm, args.scaling_steps - 1)}
        for g in (4, 8, 16):
            r = res["pr1"] if g == SETUP["num_generations"] else None
            scaling["G"][g] = r or launch({**sc, "label": f"pr1 G={g}", "setup": {"num_generations": g}})
        for t in (16, 32, 64):
            r = res["pr1"] if t == SETUP["max_new_tokens"] else None
            scaling["max_new_tokens"][t] = r or launch(
                {**sc, "label": f"pr1 max_new_tokens={t}", "setup": {"max_new_tokens": t}}
            )
    summary = summarise(res, lora, scaling)
    report = {
        "setup": SETUP,
        "steps": steps,
        "warmup": warm,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": sys.version},
        "versions": versions(),
        "differences": DIFFERENCES,
        "runs": res,
        "lora": lora,
        "scaling": scaling,
        "summary": summary,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")


def versions() -> dict[str, str]:
    import importlib.metadata as md

    return {p: md.version(p) for p in ("torch", "transformers", "trl", "peft", "lightning")}


def summarise(res: dict, lora: dict, scaling: dict) -> dict:
    """Print the tables and return the headline numbers (ratios are pr1 / TRL)."""
    trl, pr1 = res["trl"], res["pr1"]
    sides = [("TRL", trl), ("pr1", pr1)] + ([("pr1 before", res["pr1_before"])] if "pr1_before" in res else [])
    rows = [["", "s/step", "rollouts/s", "peak RSS MiB", "RSS before train MiB", "mean completion len"]]
    for name, r in sides:
        rows.append(
            [
                name,
                f"{r['median_step_s']:.3f}",
                f"{r['rollouts_per_s']:.1f}",
                f"{r['peak_rss_mib']:.0f}",
                f"{r['rss_before_train_mib']:.0f}",
                f"{r['completion_length']:.1f}",
            ]
        )
    out: dict[str, Any] = {
        "step_time_ratio_pr1_over_trl": pr1["median_step_s"] / trl["median_step_s"],
        "speedup_pr1_vs_trl": trl["median_step_s"] / pr1["median_step_s"],
        "peak_rss_ratio_pr1_over_trl": pr1["peak_rss_mib"] / trl["peak_rss_mib"],
    }
    print("\n== pr1 vs TRL (median over steps after warm-up) ==")
    print(fmt_table(rows))
    print(
        f"ratios pr1/TRL: step time {out['step_time_ratio_pr1_over_trl']:.2f} "
        f"(pr1 {out['speedup_pr1_vs_trl']:.2f}x faster), peak RSS {out['peak_rss_ratio_pr1_over_trl']:.2f}"
    )
    for name, r in sides[1:]:
        ph = r["phases_s"]
        total = r["median_step_s"]
        print(f"\n== {name} phases (median s, share of step) ==")
        print(fmt_table([[p, f"{v:.4f}", f"{v / total:.1%}"] for p, v in ph.items()]))
    ph = pr1["phases_s"]
    out["pr1_phases_s"] = ph
    out["pr1_outside_rollout_and_model_share"] = (ph["reward"] + ph["other"] + ph["loop"]) / pr1["median_step_s"]
    if "pr1_before" in res:
        out["pr1_speedup_vs_before"] = res["pr1_before"]["median_step_s"] / pr1["median_step_s"]
        print(f"\npr1 after vs before: {out['pr1_speedup_vs_before']:.2f}x faster")
    if lora:
        base = lora["policy_only"]["peak_rss_mib"]
        rows = [["pr1 + LoRA", "peak RSS MiB", "vs policy-only", "policy param MiB", "reference extra MiB"]]
        for key, r in lora.items():
            rows.append(
                [
                    key,
                    f"{r['peak_rss_mib']:.0f}",
                    f"{r['peak_rss_mib'] / base:.3f}",
                    f"{r['policy_param_bytes'] / 2**20:.2f}",
                    f"{r['reference_extra_param_bytes'] / 2**20:.2f}",
                ]
            )
        print("\n== LoRA memory ==")
        print(fmt_table(rows))
        out["lora_peak_rss_ratio_adapter_ref_over_policy_only"] = lora["adapter_reference"]["peak_rss_mib"] / base
        out["lora_peak_rss_ratio_full_copy_over_adapter_ref"] = (
            lora["full_copy_reference"]["peak_rss_mib"] / lora["adapter_reference"]["peak_rss_mib"]
        )
    if scaling["G"]:
        print("\n== pr1 scaling (median s/step) ==")
        for knob, runs in scaling.items():
            print(
                f"{knob:>15}: "
                + "  ".join(f"{k}: {r['median_step_s']:.3f} (len {r['completion_length']:.0f})" for k, r in runs.items())
            )
        out["scaling_s"] = {k: {v: r["median_step_s"] for v, r in runs.items()} for k, runs in scaling.items()}
    return out


if __name__ == "__main__":
    main()

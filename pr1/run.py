"""`python -m pr1.run [overrides]`: compose the config, build task/data/model, train (GRPO/SFT) or evaluate.

One entry point for every arm of every sweep; `-m` runs a Hydra multirun through the configured launcher.
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from pr1.callbacks import RunRecorder
from pr1.datamodule import RecordDataModule
from pr1.model import asset_path, load_policy
from pr1.module import PR1Module
from pr1.preemption import PreemptionCheckpoint
from pr1.results import arm_name, read_jsonl, safe_name, write_json_atomic
from pr1.tasks.task import Task

log = logging.getLogger("pr1")
# pr1 checkpoints after the optimizer step on purpose (a resumed run continues from the updated policy).
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
OmegaConf.register_new_resolver("pr1.asset", asset_path, replace=True)


def arm_id(exclude: list[str]) -> str:
    """The arm of this run from its Hydra overrides (`matcher=naive,thinking=true`), file-system safe.

    Hydra renders swept booleans as True/False; they are written as typed on the command line (true/false).
    """
    overrides = [
        re.sub(r"=(True|False)$", lambda m: "=" + m.group(1).lower(), o)
        for o in HydraConfig.get().overrides.task
    ]
    return safe_name(arm_name(overrides, list(exclude)))


OmegaConf.register_new_resolver("pr1.arm", arm_id, replace=True)


def validate(cfg: DictConfig) -> None:
    """Reject values Hydra cannot check by itself, before anything is built."""
    if not isinstance(cfg.thinking, bool):
        raise ValueError(f"thinking must be true or false, got {cfg.thinking!r}")
    if cfg.mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {cfg.mode!r}")


def build_data(cfg: DictConfig) -> RecordDataModule:
    val = instantiate(cfg.task.val) if cfg.task.get("val") is not None else None
    return RecordDataModule(
        instantiate(cfg.task.train),
        val,
        int(cfg.objective.prompts_per_step),
        int(cfg.seed),
        num_workers=int(cfg.data.num_workers),
    )


def trim_history(run_dir: Path, step: int) -> None:
    """Drop history rows written after the checkpoint we resume from (they will be redone)."""
    path = run_dir / "history.jsonl"
    if not path.exists():
        return
    rows = read_jsonl(path)
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows if r.get("step", 0) <= step))
    os.replace(tmp, path)


def train(cfg: DictConfig) -> dict:
    run_dir = Path(cfg.paths.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    L.seed_everything(int(cfg.seed), workers=True)

    task = Task.from_config(
        cfg.task,
        thinking=bool(cfg.thinking),
        frame=OmegaConf.to_container(cfg.model.frame, resolve=True),
    )
    data = build_data(cfg)
    policy, processor = load_policy(cfg.model)
    module = PR1Module(cfg, task, policy, processor)

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    recorder = RunRecorder(
        run_dir, cfg.sweep, cfg.arm, int(cfg.seed), overrides, task.metric, cfg.print_every
    )
    ckpt_dir = run_dir / "checkpoints"
    callbacks = [
        recorder,
        ModelCheckpoint(
            dirpath=ckpt_dir,
            save_last=True,
            save_top_k=0,
            every_n_train_steps=int(cfg.trainer.val_check_interval),
        ),
    ]
    if data.val_set is not None:
        callbacks.append(
            ModelCheckpoint(
                dirpath=ckpt_dir,
                filename="best",
                monitor=f"val/{task.metric}",
                mode="max",
                save_top_k=1,
                save_on_train_epoch_end=False,
            )
        )
    callbacks += [instantiate(v) for v in cfg.callbacks.values()]
    callbacks.append(PreemptionCheckpoint(ckpt_dir / "last.ckpt"))  # last: the step is fully recorded first
    loggers = [instantiate(v) for v in cfg.logger.values()] if cfg.get("logger") else False
    trainer = L.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        logger=loggers,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # StepBatchSampler shards by rank itself, groups intact
    )

    for lg in trainer.loggers:  # the composed config travels with every logger (W&B config, hparams.yaml)
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if cfg.resume and last.exists() else None
    if ckpt_path:
        step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
        log.info("resuming from %s (step %d)", last, step)
        trim_history(run_dir, step)
    elif data.val_set is not None:
        trainer.validate(module, datamodule=data, verbose=False)  # the starting point of the task metric
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    result = recorder.write(trainer, "completed")

    if cfg.export_dir and trainer.is_global_zero:
        export = Path(cfg.export_dir)
        # LoRA adapters are merged so that the export loads like any checkpoint (model.path=<export_dir>).
        policy = module.policy.merge_and_unload() if cfg.model.lora.enabled else module.policy
        policy.save_pretrained(export)
        processor.save_pretrained(export)
        log.info("exported policy + processor to %s", export)
    if trainer.is_global_zero:
        print_summary(result, run_dir)
    return result


def print_summary(result: dict, run_dir: Path) -> None:
    metric = result["task_metric"]
    lines = [
        "",
        "=" * 72,
        f"pr1 run finished: {result['steps']} steps in {result['wall_time_s']:.0f}s",
        f"  reward  first 20% of steps: {result['reward_start']:.4f}   last 20%: {result['reward_end']:.4f}",
    ]
    if metric in result["final"]:
        lines.append(
            f"  {metric}  final: {result['final'][metric]:.4f}"
            f"   best: {result['best'].get(metric, float('nan')):.4f}"
        )
    lines += [f"  run dir: {run_dir}", "=" * 72]
    print("\n".join(lines), flush=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    validate(cfg)
    if cfg.mode == "eval":
        from pr1.eval import evaluate

        return evaluate(cfg)[f"{cfg.task.metric}"]
    try:
        result = train(cfg)
    except Exception as exc:
        record_failure(cfg, exc)
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            raise
        log.exception("arm %s seed %s failed; the sweep goes on", cfg.arm, cfg.seed)
        return None
    return result["final"].get(result["task_metric"])


def record_failure(cfg: DictConfig, exc: BaseException) -> None:
    """Mark the run failed in metrics.json (the recorder does it for errors inside fit; this covers setup)."""
    path = Path(cfg.paths.run_dir) / "metrics.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        data = {
            "sweep": cfg.sweep,
            "arm": cfg.arm,
            "seed": int(cfg.seed),
            "steps": 0,
            "final": {},
            "best": {},
        }
    if data.get("status") != "failed":
        data.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        write_json_atomic(path, data)


if __name__ == "__main__":
    main()

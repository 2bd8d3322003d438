"""`python -m pr1.run [overrides]`: compose the config, build task/data/model, train (GRPO/SFT) or evaluate.

One entry point for every arm of every sweep; `-m` runs a Hydra multirun through the configured launcher.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from pr1.callbacks import RunRecorder
from pr1.data.dataset import RecordDataset, collate_records
from pr1.model import asset_path, load_policy
from pr1.module import PR1Module
from pr1.results import read_jsonl, safe_name
from pr1.tasks.task import Task

log = logging.getLogger("pr1")
OmegaConf.register_new_resolver("pr1.asset", asset_path, replace=True)
OmegaConf.register_new_resolver("pr1.arm", lambda dirname="": safe_name(dirname or "default"), replace=True)


def validate(cfg: DictConfig) -> None:
    """Reject values Hydra cannot check by itself, before anything is built."""
    if not isinstance(cfg.thinking, bool):
        raise ValueError(f"thinking must be true or false, got {cfg.thinking!r}")
    if cfg.mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {cfg.mode!r}")


def build_loaders(cfg: DictConfig) -> tuple[DataLoader, DataLoader | None]:
    train = RecordDataset(instantiate(cfg.task.train))
    gen = torch.Generator().manual_seed(int(cfg.seed))
    train_loader = DataLoader(
        train,
        batch_size=int(cfg.objective.prompts_per_step),
        shuffle=True,
        generator=gen,
        collate_fn=collate_records,
        num_workers=int(cfg.data.num_workers),
        drop_last=True,
    )
    val_loader = None
    if cfg.task.get("val") is not None:
        val = RecordDataset(instantiate(cfg.task.val))
        val_loader = DataLoader(
            val,
            batch_size=16,
            shuffle=False,
            collate_fn=collate_records,
            num_workers=int(cfg.data.num_workers),
        )
    return train_loader, val_loader


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
    train_loader, val_loader = build_loaders(cfg)
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
    if val_loader is not None:
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
    loggers = [instantiate(v) for v in cfg.logger.values()] if cfg.get("logger") else False
    trainer = L.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        logger=loggers,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
    )

    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if cfg.resume and last.exists() else None
    if ckpt_path:
        step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
        log.info("resuming from %s (step %d)", last, step)
        trim_history(run_dir, step)
    elif val_loader is not None:
        trainer.validate(module, val_loader, verbose=False)  # the starting point of the task metric
    trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path)
    result = recorder.write(trainer, "completed")

    if cfg.export_dir and trainer.is_global_zero:
        export = Path(cfg.export_dir)
        module.policy.save_pretrained(export)
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
    result = train(cfg)
    return result["final"].get(result["task_metric"])


if __name__ == "__main__":
    main()

"""`python -m pr1.run [overrides]`: compose the config, build task/data/model, train (GRPO/SFT) or evaluate.

One entry point for every arm of every sweep; `-m` runs a Hydra multirun through the configured launcher.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from pr1 import resolvers, schema
from pr1.callbacks import RunRecorder, git_commit
from pr1.checkpointing import remove_stale_temps
from pr1.datamodule import RecordDataModule
from pr1.model import load_policy
from pr1.module import PR1Module
from pr1.paired import improvement
from pr1.preemption import PREEMPTED_EXIT_CODE, Preempted
from pr1.results import mark_failed, write_text_atomic
from pr1.resume import CHECKPOINT_DIR, completed_record, resume_checkpoint, trim_history
from pr1.tasks import Task

log = logging.getLogger("pr1")


def build_data(cfg: DictConfig) -> RecordDataModule:
    val = instantiate(cfg.task.val) if cfg.task.get("val") is not None else None
    return RecordDataModule(
        instantiate(cfg.task.train),
        val,
        int(cfg.objective.prompts_per_step),
        int(cfg.seed),
        num_workers=int(cfg.data.num_workers),
        val_batch_size=int(cfg.data.val_batch_size),
    )


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The `callbacks` group's callbacks (conf/callbacks/, plus those the logger adds)."""
    return [instantiate(spec) for spec in cfg.callbacks.values()]


def check_task_metric(task: Task, records: list[dict], metric: str) -> None:
    """task.metric must be a metric the task reports: evaluate the task on one record's own answer, so a
    typo fails before training rather than at the first validation."""
    names = set(task.evaluate([task.answer(records[0])], records[:1])[0])
    schema.check_metric(metric, names, type(task).__name__)


def _read_or_none(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def train(cfg: DictConfig) -> dict:
    schema.validate(cfg)
    run_dir = Path(cfg.paths.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_temps(run_dir) + remove_stale_temps(run_dir / CHECKPOINT_DIR):
        log.info("removed %s (a temp file of a killed writer)", stale)
    point = resume_checkpoint(run_dir, bool(cfg.resume))
    done = completed_record(run_dir, point, int(cfg.trainer.max_steps))
    config_text = OmegaConf.to_yaml(cfg, resolve=True)
    if not done:
        write_text_atomic(run_dir / "config.yaml", config_text)
    elif _read_or_none(run_dir / "config.yaml") != config_text:
        log.warning(
            "%s completed with another composed config than this command's; its records and config.yaml "
            "are kept as they are (move the run dir aside, or set resume=false, to train this config)",
            run_dir,
        )
    if done and not cfg.export_dir:
        # Nothing to train and nothing to export: return before loading the data and the model (for a real
        # checkpoint in a sweep rerun that load is minutes).
        log.info("%s completed at step %d: nothing to train or export", run_dir, point.step)
        if rank_zero_only.rank == 0:
            print_summary(done, run_dir)
        return done
    L.seed_everything(int(cfg.seed), workers=True)

    task = Task.from_config(cfg.task, resolvers.run_options(cfg))
    data = build_data(cfg)
    check_task_metric(task, (data.val_set or data.train_set).records, str(cfg.task.metric))
    policy, processor = load_policy(cfg.model)
    module = PR1Module(cfg, task, policy, processor)
    callbacks = build_callbacks(cfg)
    recorder = next(c for c in callbacks if isinstance(c, RunRecorder))
    recorder.extra["skipped"] = data.skip_reports()
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

    if done:  # fit below only restores the weights for export_dir; no record (history included) is rewritten
        recorder.keep(done)
        log.info("%s completed at step %d: records unchanged", run_dir, point.step)
    else:
        trim_history(run_dir, point)
        if point:
            log.info("resuming from %s (step %d)", point.path, point.step)
        elif data.val_set is not None:
            trainer.validate(module, datamodule=data, verbose=False)  # the starting point of the task metric
    trainer.fit(module, datamodule=data, ckpt_path=str(point.path) if point else None)
    if not done and data.val_set is not None and module.val_step != trainer.global_step:
        # The last step was not a validation step (max_steps not a multiple of the validation interval, or
        # num_iterations > 1): validate the final policy, so that the run's end point is its last step.
        trainer.validate(module, datamodule=data, verbose=False)
    if not done and module.start_val_rows and module.val_rows:
        (records, start), (_, end) = module.start_val_rows, module.val_rows
        recorder.extra["improvement"] = improvement(task, records, start, end, seed=int(cfg.seed))
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


def _fmt(value: float | None, sign: str = "") -> str:
    """Four decimals; "n/a" for what metrics.json stores as null (NaN: an interval of fewer than 2 images)."""
    return "n/a" if value is None or value != value else f"{value:{sign}.4f}"


def print_summary(result: dict, run_dir: Path) -> None:
    metric = result["task_metric"]
    lines = [
        "",
        "=" * 72,
        f"pr1 run finished: {result['steps']} steps in {result['wall_time_s']:.0f}s",
        f"  reward  first 20% of steps: {_fmt(result['reward_start'])}"
        f"   last 20%: {_fmt(result['reward_end'])}",
    ]
    if metric in result["final"]:
        lines.append(
            f"  {metric}  final: {_fmt(result['final'][metric])}   best: {_fmt(result['best'].get(metric))}"
        )
    for name, d in (result.get("improvement") or {}).items():
        lines.append(
            f"  val/{name}  start {_fmt(d['start'])} -> end {_fmt(d['end'])}: change {_fmt(d['diff'], '+')} "
            f"(95% CI [{_fmt(d['lo'], '+')}, {_fmt(d['hi'], '+')}], {d['n']} images, {d['method']})"
        )
    for split, report in (result.get("skipped") or {}).items():
        if report["skipped"]:
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(report["by_reason"].items()))
            lines.append(f"  {split} data: skipped {report['skipped']} records ({reasons})")
    lines += [f"  run dir: {run_dir}", "=" * 72]
    print("\n".join(lines), flush=True)


@hydra.main(version_base="1.3", config_path=resolvers.CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    if cfg.mode == "eval":
        from pr1.eval import evaluate

        return evaluate(cfg)[f"{cfg.task.metric}"]
    try:
        result = train(cfg)
    except Preempted as exc:
        log.warning("%s (exit code %d)", exc, PREEMPTED_EXIT_CODE)
        sys.exit(PREEMPTED_EXIT_CODE)
    except Exception as exc:
        record_failure(cfg, exc)
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            raise
        log.exception("arm %s seed %s failed; the sweep goes on", cfg.arm, cfg.seed)
        return None
    return result["final"].get(result["task_metric"])


def record_failure(cfg: DictConfig, exc: BaseException) -> None:
    """Mark the run failed in metrics.json (the recorder does it for errors inside fit; this covers setup)."""
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    meta = {
        "sweep": cfg.sweep,
        "arm": cfg.arm,
        "seed": int(cfg.seed),
        "overrides": overrides,
        "task_metric": f"val/{cfg.task.metric}",
        "git_commit": git_commit(),
    }
    mark_failed(cfg.paths.run_dir, meta, f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()

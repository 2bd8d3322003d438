"""The LightningModule that owns the policy and the frozen reference and runs one GRPO (or SFT) step.

Read `_grpo_step` top to bottom: rollout -> rewards -> group advantages -> ref log-probs -> mu clipped updates
with the k3 KL penalty. The model work is `pr1.engine.PolicyEngine`'s, the math `pr1.grpo`'s, the task's
prompts/rewards/metrics `pr1.tasks`'; this file wires them to Lightning's loop and optimizer.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import get_scheduler

from pr1 import grpo
from pr1.engine import Batch, PolicyEngine, Rollout, Sampling, chunks
from pr1.model import Reference
from pr1.resume import rng_state, set_rng_state
from pr1.tasks.base import Task


@dataclass(frozen=True)
class Sample:
    """One completion of the last rollout batch (the W&B sample table's row)."""

    record: dict
    completion: str
    reward: float
    advantage: float
    terms: dict[str, float]


@dataclass(frozen=True)
class GRPOStats:
    """What one GRPO step logs under train/ (token means over the batch's real completion tokens)."""

    reward: float
    reward_std: float  # mean over groups of the within-group std
    frac_reward_zero_std: float  # share of groups whose G rewards are all equal (no policy gradient)
    loss: float
    kl: float
    clip_ratio: float
    entropy: float
    completion_length: float
    truncated_frac: float  # share of completions that hit max_new_tokens
    terms: dict[str, float] = field(default_factory=dict)  # reward/<name> and reward/<name>_std

    def as_log(self) -> dict[str, float]:
        out = asdict(self)
        return {**{k: v for k, v in out.items() if k != "terms"}, **self.terms}


@dataclass(frozen=True)
class SFTStats:
    loss: float
    ppl: float

    def as_log(self) -> dict[str, float]:
        return asdict(self)


def term_stats(per_term: dict[str, list[float]]) -> dict[str, float]:
    """Mean and std of each reward term over the rows it applies to (NaN rows are another task's), keyed
    reward/<name> and reward/<name>_std; a mixture's `<task>/<term>` becomes <task>/reward/<term>."""
    out = {}
    for name, vals in per_term.items():
        v = torch.tensor(vals, dtype=torch.float64)
        v = v[~v.isnan()]
        task, _, term = name.rpartition("/")
        key = f"{task}/reward/{term}" if task else f"reward/{term}"
        # A task absent from this batch logs NaN (null in history.jsonl), never the last batch's value.
        out[key] = float(v.mean()) if len(v) else math.nan
        out[f"{key}_std"] = float(v.std()) if len(v) > 1 else (0.0 if len(v) else math.nan)
    return out


def task_rewards(rewards: torch.Tensor, groups: dict[str, list[int]], terms: list) -> dict[str, float]:
    """A mixture's mean total reward per task (`<task>/reward`), NaN for a task absent from the batch."""
    names = sorted({t.name.rpartition("/")[0] for t in terms} - {""})
    return {f"{k}/reward": float(rewards[groups[k]].mean()) if groups.get(k) else math.nan for k in names}


def lr_scheduler(obj: DictConfig, optimizer: torch.optim.Optimizer, max_steps: int) -> Any:
    """`objective.lr_schedule` (a transformers schedule name: constant_with_warmup, cosine,
    cosine_with_min_lr, ...) over `max_steps` optimizer steps, with `objective.lr_schedule_kwargs`."""
    return get_scheduler(
        obj.lr_schedule,
        optimizer,
        num_warmup_steps=int(obj.warmup_steps),
        num_training_steps=int(max_steps),
        scheduler_specific_kwargs=dict(obj.lr_schedule_kwargs),
    )


def check_groups(records: list[dict], g: int) -> None:
    """Group bookkeeping: the G rows of a prompt are one record, so a group never mixes tasks or truths."""
    for i in range(0, len(records), g):
        group = records[i : i + g]
        if any(r is not group[0] for r in group) or len({r.get("task") for r in group}) != 1:
            raise RuntimeError(f"rollout group {i // g} mixes records or tasks")


class PR1Module(L.LightningModule):
    def __init__(self, cfg: DictConfig, task: Task, policy: Any, processor: Any):
        super().__init__()
        self.automatic_optimization = False  # GRPO needs mu updates per rollout batch: we drive the optimizer
        self.cfg = cfg
        self.obj = cfg.objective
        self.task = task
        self.policy = policy
        self.processor = processor
        self.engine = PolicyEngine(
            policy, processor, gradient_checkpointing=bool(cfg.model.gradient_checkpointing)
        )
        rl = self.obj.name == "rl"
        self.reference = Reference(policy, lora=cfg.model.lora.enabled) if rl and self.obj.beta > 0 else None
        self.val_outputs: list[tuple[str, dict]] = []
        self.val_rows: tuple[list[dict], list[dict]] | None = None  # (records, rows) of the last validation
        self.start_val_rows: tuple[list[dict], list[dict]] | None = None  # the same at step 0, this process
        self.val_step: int | None = None  # the optimizer step of the last validation
        self.batches_seen = 0  # rollout batches trained on by this process (drives gradient accumulation)
        self.samples_done = 0  # prompts consumed over all processes; the data sampler resumes from it
        self.restored_grads: dict[str, torch.Tensor] = {}  # a resumed mid-cycle gradient (on_train_start)

    # ----------------------------------------------------------------------------------------- optimizer
    def configure_optimizers(self) -> dict:
        params = [p for p in self.policy.parameters() if p.requires_grad]
        opt = instantiate(self.obj.optimizer)(params)
        sched = lr_scheduler(self.obj, opt, int(self.trainer.max_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Data position, RNG and accumulation state, so a resumed run continues exactly where it stopped.

        Mid-way through a gradient-accumulation cycle the half-built gradient is saved with the batch counter
        (gradients are identical on every rank after DDP's all-reduce, so rank 0's copy serves all).
        """
        mid_cycle = self.batches_seen % self.accumulation != 0
        grads = {
            name: p.grad.detach().cpu().clone()
            for name, p in self.policy.named_parameters()
            if mid_cycle and p.grad is not None
        }
        checkpoint["pr1"] = {
            "samples_done": self.samples_done,
            "rng": rng_state(),
            "batches_seen": self.batches_seen,
            "grads": grads,
            # per-image rows of the step-0 and the latest validation: the run's paired start-vs-end test
            "val_rows": {"start": self.start_val_rows, "last": self.val_rows},
            "val_step": self.val_step,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("pr1")
        if state is None:
            raise KeyError(
                "checkpoint has no 'pr1' state (not written by pr1): cannot resume data order and RNG"
            )
        self.samples_done = int(state["samples_done"])
        self.batches_seen = int(state.get("batches_seen", 0))
        self.restored_grads = state.get("grads", {})
        set_rng_state(state["rng"])
        rows = state.get("val_rows") or {}
        self.start_val_rows = self.start_val_rows or rows.get("start")
        self.val_rows = rows.get("last")
        self.val_step = state.get("val_step")

    def on_fit_start(self) -> None:
        if self.reference is not None:
            self.reference.to(self.device)

    def on_train_start(self) -> None:
        """Put back a resumed accumulation cycle's half-built gradient. Not in `on_load_checkpoint`: Lightning
        zeroes the module's gradients after restoring a checkpoint, when its fit stage starts."""
        params = dict(self.policy.named_parameters())
        for name, grad in self.restored_grads.items():
            params[name].grad = grad.to(params[name].device, params[name].dtype)
        self.restored_grads = {}

    def encode(self, batch: list[dict]) -> Batch:
        return self.engine.encode(
            [self.task.messages(r) for r in batch], [r["pil"] for r in batch], self.device
        )

    def chunks(self, n: int) -> Iterator[torch.Tensor]:
        return chunks(n, int(self.obj.micro_batch_size), self.device)

    @contextmanager
    def timed(self, times: dict, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        times[phase] += time.perf_counter() - t0

    # -------------------------------------------------------------------------------------------- train
    def training_step(self, batch: list[dict], batch_idx: int) -> dict:
        """One step; returns {"stats": GRPOStats | SFTStats, "samples": [Sample]} to the callbacks."""
        t0 = time.perf_counter()
        times: dict[str, float] = defaultdict(float)
        if self.obj.name == "sft":
            stats, samples = self._sft_step(batch, times), []
        else:
            stats, samples = self._grpo_step(batch, times)
        self.samples_done += len(batch) * self.trainer.world_size
        times["other"] = time.perf_counter() - t0 - sum(times.values())
        logged = {**stats.as_log(), "lr": self.optimizers().param_groups[0]["lr"]}
        bar = {"reward", "kl", "loss"}
        for k, v in logged.items():
            self.log(
                f"train/{k}", float(v), on_step=True, prog_bar=k in bar, sync_dist=True, batch_size=len(batch)
            )
        for k, v in times.items():
            self.log(f"time/{k}", v, on_step=True, batch_size=len(batch))
        return {"stats": stats, "samples": samples}

    @property
    def accumulation(self) -> int:
        return int(self.obj.grad_accum)

    def begin_accumulation(self, opt) -> None:
        """Zero the gradients at the first rollout batch of an accumulation cycle."""
        if self.batches_seen % self.accumulation == 0:
            opt.zero_grad()

    def on_validation_model_zero_grad(self) -> None:
        """Lightning zeroes gradients before a validation; mid-way through an accumulation cycle that would
        drop the half-built gradient, so it is kept until the cycle's optimizer step."""
        if self.batches_seen % self.accumulation == 0:
            super().on_validation_model_zero_grad()

    def finish_accumulation(self, opt) -> None:
        """Clip, step the optimizer and the LR schedule after the last batch of an accumulation cycle."""
        self.batches_seen += 1
        if self.batches_seen % self.accumulation:
            return
        if self.obj.grad_clip:
            self.clip_gradients(opt, gradient_clip_val=self.obj.grad_clip, gradient_clip_algorithm="norm")
        opt.step()
        self.lr_schedulers().step()

    def global_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of a tensor over all processes (itself on one process)."""
        return self.all_gather(x).sum(0) if self.trainer.world_size > 1 else x

    def sampling(self) -> Sampling:
        obj = self.obj
        return Sampling(float(obj.temperature), float(obj.top_p), int(obj.top_k), int(obj.max_new_tokens))

    def _grpo_step(self, batch: list[dict], times: dict) -> tuple[GRPOStats, list[Sample]]:
        obj, g = self.obj, int(self.obj.num_generations)
        opt = self.optimizers()

        # 1. Rollout: G sampled completions per prompt (rows grouped by prompt).
        with self.timed(times, "rollout"):
            ro: Rollout = self.engine.rollout(self.encode(batch), g, self.sampling())
            records = [r for r in batch for _ in range(g)]
            check_groups(records, g)
            mask = ro.mask

        # 2. Rewards: each named term scored separately, then the weighted sum.
        with self.timed(times, "reward"):
            per_term = self.task.score(ro.texts, records, step=int(self.trainer.global_step))
            rewards = torch.tensor(self.task.total(per_term), dtype=torch.float32, device=self.device)

        # 3. Group-relative advantages (a group lives on one process; "batch" scaling uses the global std).
        batch_std = None
        if obj.scale_rewards == "batch" and self.trainer.world_size > 1:
            batch_std = self.all_gather(rewards).flatten().std()
        adv = grpo.group_advantages(rewards, g, obj.scale_rewards, obj.adv_eps, batch_std=batch_std)

        # 4. Log-probs of the reference, no grad. Those of the sampling policy (needed only when mu > 1) are
        #    the first update pass's own log-probs, detached: no optimizer step happens before that pass ends.
        with self.timed(times, "logps"):
            ref_logps = None
            if self.reference is not None:
                with self.reference.active() as ref:
                    ref_logps = self.engine.frozen_logps(ref, ro, obj.temperature, int(obj.micro_batch_size))

        # 5. mu policy updates on this rollout batch. Gradients are averaged over processes by DDP and summed
        #    over accumulation steps, so each process's loss is its share of the global-batch loss:
        #    1/grad_accum of it, and for dapo normalised by the global token count / world size.
        num_items = None
        if obj.loss_type == "dapo":
            num_items = self.global_sum(mask.sum().float()) / self.trainer.world_size
        weights = (
            grpo.token_weights(mask, obj.loss_type, int(obj.max_new_tokens), num_items) / self.accumulation
        )
        old_logps: dict[int, torch.Tensor] = {}  # chunk -> the sampling policy's log-probs (first pass)
        with self.timed(times, "update"):
            for _ in range(int(obj.num_iterations)):
                self.begin_accumulation(opt)
                loss_sum, kl_sum, clip_sum, ent_sum = 0.0, 0.0, 0.0, 0.0
                for i, c in enumerate(self.chunks(len(ro.ids))):
                    logp, ent = self.engine.group_logps(
                        self.policy, ro, c, obj.temperature, with_entropy=True
                    )
                    parts = grpo.grpo_loss(
                        logp,
                        old_logps.setdefault(i, logp.detach()),
                        adv[c],
                        weights[c],
                        mask[c],
                        obj.epsilon,
                        obj.epsilon_high,
                        obj.beta,
                        None if ref_logps is None else ref_logps[c],
                    )
                    self.manual_backward(parts.loss)
                    loss_sum += float(parts.loss.detach()) * self.accumulation
                    kl_sum += float(parts.kl_sum)
                    clip_sum += float(parts.clipped_sum)
                    ent_sum += float((ent * mask[c]).sum())
                self.finish_accumulation(opt)

        n_tok = float(mask.sum().clamp(min=1))
        grouped = rewards.view(-1, g)
        stats = GRPOStats(
            reward=float(rewards.mean()),
            reward_std=float(grouped.std(dim=1).mean()),
            frac_reward_zero_std=float((grouped.std(dim=1) < 1e-6).float().mean()),
            loss=loss_sum,
            kl=kl_sum / n_tok,
            clip_ratio=clip_sum / n_tok,
            entropy=ent_sum / n_tok,
            completion_length=float(mask.sum(1).float().mean()),
            truncated_frac=float(self.engine.truncated(ro.ids).float().mean()),
            terms={
                **term_stats(per_term),
                **task_rewards(rewards, self.task.groups(records), self.task.rewards),
            },
        )
        samples = [
            Sample(rec, text, r, a, {name: per_term[name][i] for name in per_term})
            for i, (rec, text, r, a) in enumerate(
                zip(records, ro.texts, rewards.tolist(), adv.tolist(), strict=True)
            )
        ]
        return stats, samples

    def _sft_step(self, batch: list[dict], times: dict) -> SFTStats:
        """Cross-entropy on the ground-truth answer tokens, through the same prompt path as GRPO."""
        opt = self.optimizers()
        with self.timed(times, "update"):
            prompts = self.encode(batch)
            ids, mask = self.engine.encode_answers([self.task.answer(r) for r in batch], self.device)
            self.begin_accumulation(opt)
            n_tok = float(mask.sum()) * self.accumulation
            loss_sum = 0.0
            for c in self.chunks(len(ids)):
                logp, _ = self.engine.row_logps(self.policy, prompts.select(c), ids[c], mask[c], 1.0)
                loss = -(logp * mask[c]).sum() / n_tok
                self.manual_backward(loss)
                loss_sum += float(loss.detach()) * self.accumulation
            self.finish_accumulation(opt)
        return SFTStats(loss=loss_sum, ppl=math.exp(min(loss_sum, 50.0)))

    # --------------------------------------------------------------------------------------- validation
    def validation_step(self, batch: list[dict], batch_idx: int) -> None:
        texts = self.engine.greedy(self.encode(batch), int(self.cfg.task.val_max_new_tokens))
        self.val_outputs.extend(zip(texts, batch, strict=True))

    def on_validation_epoch_start(self) -> None:
        self.val_outputs = []

    def on_validation_epoch_end(self) -> None:
        records = [{k: v for k, v in r.items() if k != "pil"} for _, r in self.val_outputs]
        metrics, rows = self.task.evaluate([t for t, _ in self.val_outputs], records)
        # Per-image rows of the latest validation, and of the step-0 one (the start of a paired comparison).
        self.val_rows = (records, rows)
        self.val_step = int(self.trainer.global_step)
        if self.trainer.global_step == 0 and self.start_val_rows is None:
            self.start_val_rows = (records, rows)
        for k, v in metrics.items():
            self.log(f"val/{k}", v, prog_bar=k == self.task.metric, sync_dist=True)

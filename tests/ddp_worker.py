"""One GRPO training run for the DDP invariant tests, launched as its own process (Lightning's `ddp` strategy
re-executes this script for the other ranks).

Rollouts are replaced by fixed completions derived from each prompt's id, so that runs which split the
batch differently (1 process x 2B, 2 processes x B, 1 process x B x accumulation 2) see exactly the same
completions and must reach the same parameters. Usage:

    python tests/ddp_worker.py OUT.pt --devices 2 --batch 2 --accum 1 --loss-type grpo --steps 1
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pr1.run  # noqa: E402,F401  (registers the pr1.* resolvers)
from pr1.data.synthetic import load_or_make  # noqa: E402
from pr1.datamodule import RecordDataModule  # noqa: E402
from pr1.engine import PolicyEngine  # noqa: E402
from pr1.module import PR1Module  # noqa: E402
from pr1.tasks import RewardTerm, RunOptions  # noqa: E402
from pr1.tasks.grounding import Grounding  # noqa: E402
from pr1.tiny import build_model, build_processor  # noqa: E402


def char_reward(completions, **columns):
    """Deterministic, varied within a group: a pure function of the completion text."""
    return [float(sum(map(ord, c)) % 7) for c in completions]


class FixedEngine(PolicyEngine):
    """Completions fixed per (prompt id, sample index) instead of sampled."""

    batch_ids: list[str] = []

    def sample(self, prompts, g, sampling):
        vocab = [
            i for i in range(len(self.tokenizer)) if i not in self.eos_ids and i not in self.suppress_ids
        ]
        vocab = torch.tensor([i for i in vocab if i != self.tokenizer.pad_token_id])
        rows = []
        for pid in self.batch_ids:
            for j in range(g):
                seed = int(hashlib.sha256(f"{pid}/{j}".encode()).hexdigest()[:8], 16)
                gen = torch.Generator().manual_seed(seed)
                n = int(torch.randint(2, 9, (1,), generator=gen))
                toks = vocab[torch.randint(len(vocab), (n,), generator=gen)].tolist() + [self.end_id]
                rows.append(toks + [self.tokenizer.pad_token_id] * (10 - len(toks)))
        completions = torch.tensor(rows, device=prompts.input_ids.device)
        return torch.cat([prompts.input_ids.repeat_interleave(g, 0), completions], 1)


class FixedRollout(PR1Module):
    """GRPO on FixedEngine's completions."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.engine = FixedEngine(self.policy, self.processor)

    def training_step(self, batch, batch_idx):
        self.engine.batch_ids = [r["id"] for r in batch]
        return super().training_step(batch, batch_idx)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--loss-type", default="grpo")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--ckpt", default=None, help="save a checkpoint here at the end")
    p.add_argument("--resume", default=None, help="resume from this checkpoint")
    p.add_argument("--lr", default="1e-4")
    p.add_argument("--data", required=True)
    a = p.parse_args()

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                f"objective.prompts_per_step={a.batch}",
                f"objective.grad_accum={a.accum}",
                f"objective.loss_type={a.loss_type}",
                "objective.num_generations=3",
                "objective.max_new_tokens=10",
                f"objective.lr={a.lr}",
                "objective.grad_clip=0",
                "model.lora.enabled=false",
            ],
        )
    L.seed_everything(0)
    processor = build_processor()
    model = build_model(
        processor, hidden_size=32, num_layers=1, num_heads=2, vision_depth=1, vision_embed_dim=16
    )
    task = Grounding(
        [RewardTerm("chars", 1.0, char_reward)],
        "acc50",
        RunOptions(thinking=False, frame={"kind": "rel1000"}),
    )
    module = FixedRollout(cfg, task, model, processor)
    records = load_or_make("grounding", n=8, seed=0, root=a.data)
    data = RecordDataModule(records, None, a.batch, seed=0)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=a.devices,
        strategy="ddp" if a.devices > 1 else "auto",
        max_steps=a.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        limit_val_batches=0,
    )
    losses, grads = [], []

    class Record(L.Callback):
        """Loss per rollout batch, and the (all-reduced, accumulated) gradient at each optimizer step."""

        def on_train_batch_end(self, trainer, *args):
            losses.append(float(trainer.callback_metrics["train/loss"]))

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            grads.append(
                {
                    n: p.grad.detach().clone()
                    for n, p in pl_module.policy.named_parameters()
                    if p.grad is not None
                }
            )

    trainer.callbacks.append(Record())
    trainer.fit(module, datamodule=data, ckpt_path=a.resume)
    if a.ckpt:
        trainer.save_checkpoint(a.ckpt)
    if trainer.is_global_zero:
        torch.save(
            {
                "params": {k: v.detach().clone() for k, v in module.policy.state_dict().items()},
                "losses": losses,
                "grads": grads,
                "samples_done": module.samples_done,
                "world": trainer.world_size,
            },
            a.out,
        )


if __name__ == "__main__":
    main()

"""The GRPO step on the real Lightning loop with a tiny random Qwen2-VL."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from pr1.data.dataset import RecordDataset, collate_records
from pr1.model import Reference
from pr1.module import GRPOStats, PR1Module, Sample
from pr1.tasks import RewardTerm, RunOptions, Task
from tests.helpers import TINY_MODEL, make_module


class KeepOutputs(L.Callback):
    """The training step's outputs (typed stats and samples) as the callbacks receive them."""

    def __init__(self):
        self.outputs = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.outputs.append(outputs)


def fit_steps(module, records, steps=1, batch=2, callbacks=()):
    loader = DataLoader(RecordDataset(records), batch_size=batch, collate_fn=collate_records)
    trainer = L.Trainer(
        callbacks=list(callbacks),
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, loader)
    return trainer


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_one_step_changes_policy_not_reference(compose, tiny_model, tiny_processor, grounding_records):
    cfg = compose(
        *TINY_MODEL, "objective.num_generations=4", "objective.max_new_tokens=8", "objective.lr=1e-2"
    )
    module = make_module(cfg, tiny_model, tiny_processor)
    before = snapshot(module.policy)
    ref_before = snapshot(module.reference.model)
    keep = KeepOutputs()
    trainer = fit_steps(module, grounding_records[:4], callbacks=[keep])
    after = snapshot(module.policy)
    assert any(not torch.equal(before[k], after[k]) for k in before), "policy did not move"
    assert all(torch.equal(ref_before[k], v) for k, v in module.reference.model.state_dict().items())
    assert all(not p.requires_grad for p in module.reference.model.parameters())
    assert not module.reference.model.training
    opt_params = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert not opt_params & {id(p) for p in module.reference.model.parameters()}
    metrics = trainer.callback_metrics
    for key in (
        "train/reward",
        "train/kl",
        "train/loss",
        "train/clip_ratio",
        "train/entropy",
        "train/frac_reward_zero_std",
        "train/completion_length",
        "train/reward/varied",
        "time/rollout",
        "time/reward",
        "time/logps",
        "time/update",
    ):
        assert key in metrics, key
    (out,) = keep.outputs
    stats, samples = out["stats"], out["samples"]
    assert isinstance(stats, GRPOStats) and float(metrics["train/reward"]) == pytest.approx(stats.reward)
    assert len(samples) == 2 * 4 and all(isinstance(s, Sample) for s in samples)
    assert samples[0].record["id"] == samples[3].record["id"] != samples[4].record["id"]  # G rows per prompt
    assert [s.terms["varied"] for s in samples] == [float(len(s.completion) % 5) for s in samples]


def test_beta_zero_builds_no_reference(compose, tiny_model, tiny_processor):
    cfg = compose(*TINY_MODEL, "objective.beta=0")
    assert make_module(cfg, tiny_model, tiny_processor).reference is None
    sft = compose(*TINY_MODEL, "objective=sft")
    assert make_module(sft, tiny_model, tiny_processor).reference is None


def test_identical_rewards_leave_policy_unchanged_without_kl(
    compose, tiny_model, tiny_processor, grounding_records
):
    cfg = compose(
        *TINY_MODEL,
        "objective.beta=0",
        "objective.num_generations=4",
        "objective.max_new_tokens=8",
        "objective.lr=1e-2",
        "objective.grad_clip=0",
    )
    const = RewardTerm("const", 1.0, lambda completions, **kw: [0.5] * len(completions))
    module = make_module(cfg, tiny_model, tiny_processor, rewards=[const])
    before = snapshot(module.policy)
    fit_steps(module, grounding_records[:4])
    assert all(torch.equal(before[k], v) for k, v in module.policy.state_dict().items())


def test_lora_reference_is_adapter_disabled_base(compose, tiny_model, tiny_processor, grounding_records):
    from peft import LoraConfig, get_peft_model

    enc = (
        make_module(compose(*TINY_MODEL), tiny_model, tiny_processor)
        .encode([RecordDataset(grounding_records)[0]])
        ._asdict()
    )
    with torch.no_grad():
        base_logits = tiny_model(**enc).logits
    peft_model = get_peft_model(
        tiny_model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    )
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
        adapted = peft_model(**enc).logits
    ref = Reference(peft_model, lora=True)
    assert ref.model is peft_model  # no second copy of the weights
    with ref.active() as m:
        ref_logits = m(**enc).logits
    assert not torch.allclose(adapted, base_logits)
    torch.testing.assert_close(ref_logits, base_logits)


def test_sft_step_lowers_loss(compose, tiny_model, tiny_processor, grounding_records):
    cfg = compose(*TINY_MODEL, "objective=sft", "objective.lr=3e-3", "objective.warmup_steps=0")
    task = Task.from_config(cfg.task, RunOptions(thinking=False, frame={"kind": "rel1000"}))
    module = PR1Module(cfg, task, tiny_model, tiny_processor)
    losses = []

    class Track(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            losses.append(float(trainer.callback_metrics["train/loss"]))

    loader = DataLoader(RecordDataset(grounding_records[:4]), batch_size=4, collate_fn=collate_records)
    L.Trainer(
        accelerator="cpu",
        max_steps=15,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Track()],
    ).fit(module, loader)
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_loss_types_run(compose, tiny_model, tiny_processor, grounding_records, loss_type):
    cfg = compose(
        *TINY_MODEL,
        f"objective.loss_type={loss_type}",
        "objective.num_generations=2",
        "objective.max_new_tokens=4",
        "objective.num_iterations=2",
        "objective.micro_batch_size=3",
    )
    trainer = fit_steps(make_module(cfg, tiny_model, tiny_processor), grounding_records[:2])
    assert torch.isfinite(trainer.callback_metrics["train/loss"])

"""The GRPO step on the real Lightning loop with a tiny random Qwen2-VL."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from pr1.data.dataset import RecordDataset, collate_records
from pr1.model import Reference
from pr1.module import PR1Module
from pr1.tasks.task import RewardTerm, Task
from tests.conftest import TINY_MODEL


def varied_reward(completions, **columns):
    """A test reward that differs within a group (a random model scores -1 everywhere on the real ones)."""
    return [float(len(c) % 5) for c in completions]


def make_module(cfg, model, processor, rewards=None):
    task = Task(
        kind="grounding",
        thinking=False,
        frame={"kind": "rel1000"},
        metric="acc50",
        rewards=rewards or [RewardTerm("varied", 1.0, varied_reward)],
    )
    return PR1Module(cfg, task, model, processor)


def fit_steps(module, records, steps=1, batch=2):
    loader = DataLoader(RecordDataset(records), batch_size=batch, collate_fn=collate_records)
    trainer = L.Trainer(
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
    trainer = fit_steps(module, grounding_records[:4])
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


def test_rollout_ignores_checkpoint_sampling_defaults(compose, tiny_model, tiny_processor, grounding_records):
    """Qwen2-VL checkpoints ship top_k=1/top_p=0.001; rollouts must still sample with pr1's settings."""
    tiny_model.generation_config.top_k = 1
    tiny_model.generation_config.top_p = 0.001
    cfg = compose(*TINY_MODEL, "objective.num_generations=8", "objective.max_new_tokens=6")
    module = make_module(cfg, tiny_model, tiny_processor)
    gen = module.generation_config(
        do_sample=True, top_k=0, top_p=1.0, temperature=1.0, max_new_tokens=6, num_return_sequences=8
    )
    enc = module.encode_prompts([RecordDataset(grounding_records)[0]])
    torch.manual_seed(0)
    seqs = tiny_model.generate(**enc, generation_config=gen)
    assert len({tuple(s.tolist()) for s in seqs}) > 1, "all G samples identical: greedy defaults leaked"
    vision = set(module.suppress_ids)
    assert not vision & set(seqs[:, enc["input_ids"].shape[1] :].flatten().tolist())


def test_completion_mask_and_repeat(compose, tiny_model, tiny_processor, grounding_records):
    module = make_module(compose(*TINY_MODEL), tiny_model, tiny_processor)
    end = module.end_id
    ids = torch.tensor([[5, 6, end, 7, 7], [5, 6, 7, 8, 9]])
    assert module.completion_mask(ids).tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    ds = RecordDataset(grounding_records)
    enc = module.encode_prompts([ds[0], ds[1]])
    rep = module.repeat_prompts(enc, 3)
    assert rep["input_ids"].shape[0] == 6 and torch.equal(rep["input_ids"][2], enc["input_ids"][0])
    per_image = int(enc["image_grid_thw"][0].prod())
    assert rep["pixel_values"].shape[0] == 3 * enc["pixel_values"].shape[0]
    assert torch.equal(rep["pixel_values"][:per_image], rep["pixel_values"][per_image : 2 * per_image])
    sub = module.select(rep, torch.tensor([3]))
    assert torch.equal(sub["pixel_values"], enc["pixel_values"][per_image:])


def test_lora_reference_is_adapter_disabled_base(compose, tiny_model, tiny_processor, grounding_records):
    from peft import LoraConfig, get_peft_model

    enc = PR1Module.encode_prompts(
        make_module(compose(*TINY_MODEL), tiny_model, tiny_processor), [RecordDataset(grounding_records)[0]]
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
    task = Task.from_config(cfg.task, thinking=False, frame={"kind": "rel1000"})
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

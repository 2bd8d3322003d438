"""The policy engine: sampling settings, masks, prompt batches, and the shared-prompt paths vs plain ones.

`PolicyEngine.group_logps` runs each prompt once for its G completions (KV cache indexed out to the rows); it
must give the same log-probs, entropies and gradients as `row_logps` (a forward over every [prompt,
completion] row), with left-padded prompts of different lengths, completions that end early, micro-batches
that split a group, and LoRA's adapter-disabled reference. The fast path is built on Qwen-VL internals, so
every check runs on a tiny random model of each family (Qwen2-VL, Qwen2.5-VL, Qwen3-VL: real classes), and
the plain fallback for a family without the fast path is checked too.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from pr1.data.dataset import RecordDataset
from pr1.engine import FAMILIES, PolicyEngine, Rollout, Sampling, chunks, family_of
from pr1.model import Reference
from pr1.tiny import build_model, build_processor
from tests.helpers import FAMILY_TINY, grounding_task

G = 3
TASK = grounding_task()
SAMPLING = Sampling(temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=6)


def encode(engine, batch):
    return engine.encode([TASK.messages(r) for r in batch], [r["pil"] for r in batch], "cpu")


def two_prompts(engine, records):
    """Two encoded prompts of different lengths, so that one is left padded."""
    ds = RecordDataset(records)
    batch = [ds[0], {**ds[1], "question": "small red rectangle near the top left corner of the picture"}]
    enc = encode(engine, batch)
    assert (enc.attention_mask == 0).any(), "the prompts should need padding"
    return enc


def rollout_batch(engine, records):
    """Two prompts and G fixed completions each, ending at different lengths (end token, then padding) or
    running to the length limit; the rollout and the prompts repeated per row."""
    enc = two_prompts(engine, records)
    gen = torch.Generator().manual_seed(0)
    vocab = [i for i in range(40, 600) if i not in engine.eos_ids and i not in engine.suppress_ids]
    ids = torch.tensor(vocab)[torch.randint(len(vocab), (2 * G, 7), generator=gen)]
    for row, end in enumerate([2, 6, 9, 0, 4, 9]):  # 9: no end token within the 7 tokens
        if end < ids.shape[1]:
            ids[row, end] = engine.end_id
            ids[row, end + 1 :] = engine.tokenizer.pad_token_id
    prompts = enc.repeat(G)
    mask = engine.completion_mask(ids)
    positions = engine.rope_positions(prompts, ids, mask)
    return Rollout(enc, G, ids, mask, positions, engine.decode(ids, mask)), prompts


@pytest.fixture(scope="module")
def family_processors() -> dict:
    return {family: build_processor(family=family) for family in FAMILIES}


@pytest.fixture(params=sorted(FAMILIES))
def family_model(request, family_processors):
    """(model, processor): a fresh tiny random model of each Qwen-VL family (real model/processor classes)."""
    processor = family_processors[request.param]
    return build_model(processor, family=request.param, **FAMILY_TINY), processor


def perturb(model) -> None:
    """Move the weights off their initialisation so that every logit depends on them."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)


def test_shared_prefix_rollout_samples_what_generate_samples(family_model, grounding_records):
    """The rollout encodes each prompt once and repeats its cache; same seed, same tokens as generate's own
    expansion of every prompt G times."""
    tiny_model, tiny_processor = family_model
    engine = PolicyEngine(tiny_model, tiny_processor)
    assert engine.family.shared_prefix
    enc = two_prompts(engine, grounding_records)
    gen = engine.generation_config(do_sample=True, num_return_sequences=G, **SAMPLING._asdict())
    torch.manual_seed(0)
    with torch.no_grad():
        expected = tiny_model.generate(**enc._asdict(), generation_config=gen)
    torch.manual_seed(0)
    seqs = engine.sample(enc, G, SAMPLING)
    assert torch.equal(seqs, expected)
    completions = seqs[:, enc.input_ids.shape[1] :]
    assert len({tuple(c) for c in completions.tolist()}) > 1, "rows of a group should be sampled apart"
    torch.manual_seed(0)
    ro = engine.rollout(enc, G, SAMPLING)
    assert torch.equal(ro.ids, completions) and len(ro.texts) == 2 * G
    assert torch.equal(ro.positions, engine.rope_positions(enc.repeat(G), ro.ids, ro.mask))


def test_shared_prompt_logps_match_plain_forward(family_model, grounding_records):
    tiny_model, tiny_processor = family_model
    engine = PolicyEngine(tiny_model, tiny_processor)
    ro, prompts = rollout_batch(engine, grounding_records)
    rows = torch.arange(len(ro.ids))
    with torch.no_grad():
        plain, plain_ent = engine.row_logps(tiny_model, prompts, ro.ids, ro.mask, 0.7, with_entropy=True)
        fast, fast_ent = engine.group_logps(tiny_model, ro, rows, 0.7, with_entropy=True)
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fast_ent, plain_ent, rtol=1e-5, atol=1e-5)
        # A micro-batch that takes part of each group (rows 2..4: prompt 0's last row, prompt 1's first two).
        part = torch.tensor([2, 3, 4])
        sub, _ = engine.group_logps(tiny_model, ro, part, 0.7)
        torch.testing.assert_close(sub, plain[part], rtol=1e-5, atol=1e-5)
        frozen = engine.frozen_logps(tiny_model, ro, 0.7, micro_batch=4)  # chunks of 4 and 2 rows
        torch.testing.assert_close(frozen, plain, rtol=1e-5, atol=1e-5)


def test_shared_prompt_gradients_match_plain_forward(family_model, grounding_records):
    tiny_model, tiny_processor = family_model
    engine = PolicyEngine(tiny_model, tiny_processor)
    perturb(tiny_model)
    ro, prompts = rollout_batch(engine, grounding_records)
    weights = torch.rand(ro.ids.shape, generator=torch.Generator().manual_seed(1)) * ro.mask

    def grads(logp: torch.Tensor) -> dict[str, torch.Tensor]:
        tiny_model.zero_grad()
        (logp * weights).sum().backward()
        return {n: p.grad.clone() for n, p in tiny_model.named_parameters() if p.grad is not None}

    plain = grads(engine.row_logps(tiny_model, prompts, ro.ids, ro.mask, 1.0)[0])
    fast = grads(engine.group_logps(tiny_model, ro, torch.arange(len(ro.ids)), 1.0)[0])
    assert plain.keys() == fast.keys()
    assert any(n.startswith("model.visual") for n in fast), "the vision tower must get gradients too"
    for name, g in plain.items():
        torch.testing.assert_close(fast[name], g, rtol=1e-4, atol=1e-6 * float(g.abs().max()), msg=name)


def test_shared_prompt_lora_reference_matches_plain_forward(family_model, grounding_records):
    from peft import LoraConfig, get_peft_model

    tiny_model, tiny_processor = family_model

    policy = get_peft_model(tiny_model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    engine = PolicyEngine(policy, tiny_processor)
    ro, prompts = rollout_batch(engine, grounding_records)
    rows = torch.arange(len(ro.ids))
    with Reference(policy, lora=True).active() as ref:
        plain, _ = engine.row_logps(ref, prompts, ro.ids, ro.mask, 1.0)
        fast, _ = engine.group_logps(ref, ro, rows, 1.0)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        adapted, _ = engine.group_logps(policy, ro, rows, 1.0)
    assert not torch.allclose(adapted, fast), "adapters should change the policy's log-probs"


def test_gradient_checkpointing_uses_the_plain_forward(family_model, grounding_records):
    """Checkpointed layers drop the KV cache under autograd, so the update falls back to full rows."""
    tiny_model, tiny_processor = family_model
    engine = PolicyEngine(tiny_model, tiny_processor, gradient_checkpointing=True)
    tiny_model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    tiny_model.train()
    ro, prompts = rollout_batch(engine, grounding_records)
    fast, _ = engine.group_logps(tiny_model, ro, torch.arange(len(ro.ids)), 1.0)
    assert fast.requires_grad
    with torch.no_grad():
        plain, _ = engine.row_logps(tiny_model, prompts, ro.ids, ro.mask, 1.0)
    torch.testing.assert_close(fast.detach(), plain, rtol=1e-5, atol=1e-5)


def test_family_is_detected_from_the_model_config(family_processors):
    from peft import LoraConfig, get_peft_model

    for name, processor in family_processors.items():
        model = build_model(processor, family=name, **FAMILY_TINY)
        assert family_of(model) is FAMILIES[name] and PolicyEngine(model, processor).family is FAMILIES[name]
        wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
        assert family_of(wrapped) is FAMILIES[name]
    model.config.model_type = "llava"
    with pytest.raises(ValueError, match="'llava' is not a supported Qwen-VL family"):
        PolicyEngine(model, processor)


def test_a_family_without_the_fast_path_falls_back_to_the_plain_path(family_model, grounding_records, caplog):
    """Same tokens, log-probs and gradients as the fast path, without any of its internals (no M-RoPE
    positions in the rollout), and one log line saying so."""
    model, processor = family_model
    perturb(model)
    plain_family = dataclasses.replace(family_of(model), shared_prefix=False)
    fast = PolicyEngine(model, processor)
    with caplog.at_level(logging.INFO, logger="pr1.engine"):
        engine = PolicyEngine(model, processor, family=plain_family)
        enc = two_prompts(engine, grounding_records)
        torch.manual_seed(0)
        ro = engine.rollout(enc, G, SAMPLING)
        ro_fixed, prompts = rollout_batch(fast, grounding_records)
        ro_fixed = ro_fixed._replace(positions=None)
        rows = torch.arange(len(ro_fixed.ids))
        plain, plain_ent = engine.group_logps(model, ro_fixed, rows, 0.7, with_entropy=True)
        frozen = engine.frozen_logps(model, ro_fixed, 0.7, micro_batch=4)
    logged = [r.getMessage() for r in caplog.records if "shared-prefix fast path" in r.getMessage()]
    assert len(logged) == 1 and plain_family.name in logged[0]
    torch.manual_seed(0)
    expected = fast.rollout(enc, G, SAMPLING)
    assert torch.equal(ro.ids, expected.ids) and ro.texts == expected.texts and ro.positions is None

    with torch.no_grad():
        by_row, by_row_ent = engine.row_logps(model, prompts, ro_fixed.ids, ro_fixed.mask, 0.7, True)
    torch.testing.assert_close(plain, by_row, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain_ent, by_row_ent, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(frozen, by_row, rtol=1e-5, atol=1e-5)

    ro_fast, _ = rollout_batch(fast, grounding_records)
    weights = torch.rand(ro_fast.ids.shape, generator=torch.Generator().manual_seed(1)) * ro_fast.mask

    def grads(eng: PolicyEngine, rollout: Rollout) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        logp = eng.group_logps(model, rollout, rows, 1.0)[0]
        (logp * weights).sum().backward()
        return logp.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain_logp, plain_grads = grads(engine, ro_fixed)
    fast_logp, fast_grads = grads(fast, ro_fast)
    torch.testing.assert_close(plain_logp, fast_logp, rtol=1e-5, atol=1e-5)
    assert plain_grads.keys() == fast_grads.keys()
    for name, g in fast_grads.items():
        tol = 1e-6 * float(g.abs().max())
        torch.testing.assert_close(plain_grads[name], g, rtol=1e-4, atol=tol, msg=name)


def test_decode_keeps_markup_and_drops_end_and_padding(tiny_model, tiny_processor):
    module = PolicyEngine(tiny_model, tiny_processor)
    tok = module.tokenizer
    box = tok("<|box_start|>(1,2),(3,4)<|box_end|>", add_special_tokens=False)["input_ids"]
    pad = tok.pad_token_id
    ids = torch.tensor([[*box, module.end_id, pad, pad], [*box, box[0], box[1], box[2]]])
    texts = module.decode(ids, module.completion_mask(ids))
    assert texts[0] == "<|box_start|>(1,2),(3,4)<|box_end|>"
    assert texts[1] == tok.decode([*box, *box[:3]], skip_special_tokens=False)


def test_rollout_ignores_checkpoint_sampling_defaults(tiny_model, tiny_processor, grounding_records):
    """Qwen2-VL checkpoints ship top_k=1/top_p=0.001; rollouts must still sample with pr1's settings."""
    tiny_model.generation_config.top_k = 1
    tiny_model.generation_config.top_p = 0.001
    engine = PolicyEngine(tiny_model, tiny_processor)
    enc = encode(engine, [RecordDataset(grounding_records)[0]])
    torch.manual_seed(0)
    seqs = engine.sample(enc, 8, SAMPLING)
    assert len({tuple(s.tolist()) for s in seqs}) > 1, "all G samples identical: greedy defaults leaked"
    assert not set(engine.suppress_ids) & set(seqs[:, enc.input_ids.shape[1] :].flatten().tolist())


def test_completion_mask_repeat_select_and_chunks(tiny_model, tiny_processor, grounding_records):
    engine = PolicyEngine(tiny_model, tiny_processor)
    end = engine.end_id
    ids = torch.tensor([[5, 6, end, 7, 7], [5, 6, 7, 8, 9]])
    assert engine.completion_mask(ids).tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    # Truncated = no end token at all; ending with it in the last column is a finished answer.
    ends_last = torch.tensor([[5, 6, 7, 8, end], [5, 6, 7, 8, 9], [5, end, 0, 0, 0]])
    assert engine.truncated(ends_last).tolist() == [False, True, False]
    ds = RecordDataset(grounding_records)
    enc = encode(engine, [ds[0], ds[1]])
    rep = enc.repeat(3)
    assert rep.input_ids.shape[0] == 6 and torch.equal(rep.input_ids[2], enc.input_ids[0])
    per_image = int(enc.image_grid_thw[0].prod())
    assert rep.pixel_values.shape[0] == 3 * enc.pixel_values.shape[0]
    assert torch.equal(rep.pixel_values[:per_image], rep.pixel_values[per_image : 2 * per_image])
    sub = rep.select(torch.tensor([3]))
    assert torch.equal(sub.pixel_values, enc.pixel_values[per_image:])
    assert [c.tolist() for c in chunks(5, 2)] == [[0, 1], [2, 3], [4]]
    assert [c.tolist() for c in chunks(3, 0)] == [[0, 1, 2]]


def test_encode_answers_closes_each_answer_with_the_end_token(tiny_model, tiny_processor):
    engine = PolicyEngine(tiny_model, tiny_processor)
    ids, mask = engine.encode_answers(["(1,2)", "a longer answer text"], "cpu")
    assert mask.sum(1).tolist() == [int(m) for m in mask.sum(1)] and mask[0].sum() < mask[1].sum()
    for row, m in zip(ids, mask, strict=True):
        assert row[int(m.sum()) - 1] == engine.end_id
    assert engine.decode(ids, mask) == ["(1,2)", "a longer answer text"]

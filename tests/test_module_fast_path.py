"""The shared-prompt log-prob path (`PR1Module.group_logps`) against one plain forward per row.

The GRPO step runs each prompt once for its G completions (KV cache indexed out to the rows); it must give the
same log-probs, entropies and gradients as a forward over every [prompt, completion] row, with left-padded
prompts of different lengths, completions that end early, micro-batches that split a group, and LoRA's
adapter-disabled reference.
"""

from __future__ import annotations

import torch

from pr1.data.dataset import RecordDataset
from pr1.model import Reference
from tests.conftest import TINY_MODEL
from tests.test_module import make_module

G = 3


def two_prompts(module, records) -> dict:
    """Two encoded prompts of different lengths, so that one is left padded."""
    ds = RecordDataset(records)
    batch = [ds[0], {**ds[1], "question": "small red rectangle near the top left corner of the picture"}]
    enc = module.encode_prompts(batch)
    assert (enc["attention_mask"] == 0).any(), "the prompts should need padding"
    return enc


def rollout_batch(module, records):
    """Two prompts and G fixed completions each, ending at different lengths (end token, then padding) or
    running to the length limit."""
    enc = two_prompts(module, records)
    gen = torch.Generator().manual_seed(0)
    vocab = [i for i in range(40, 600) if i not in module.eos_ids and i not in module.suppress_ids]
    ids = torch.tensor(vocab)[torch.randint(len(vocab), (2 * G, 7), generator=gen)]
    for row, end in enumerate([2, 6, 9, 0, 4, 9]):  # 9: no end token within the 7 tokens
        if end < ids.shape[1]:
            ids[row, end] = module.end_id
            ids[row, end + 1 :] = module.tokenizer.pad_token_id
    prompts = module.repeat_prompts(enc, G)
    mask = module.completion_mask(ids)
    return enc, prompts, ids, mask, module.rope_positions(prompts, ids, mask)


def perturb(model) -> None:
    """Move the weights off their initialisation so that every logit depends on them."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)


def test_shared_prefix_rollout_samples_what_generate_samples(
    compose, tiny_model, tiny_processor, grounding_records
):
    """The rollout encodes each prompt once and repeats its cache; same seed, same tokens as generate's own
    expansion of every prompt G times."""
    module = make_module(compose(*TINY_MODEL, "objective.max_new_tokens=6"), tiny_model, tiny_processor)
    enc = two_prompts(module, grounding_records)
    obj = module.obj
    gen = module.generation_config(
        do_sample=True,
        temperature=obj.temperature,
        top_p=obj.top_p,
        top_k=obj.top_k,
        max_new_tokens=obj.max_new_tokens,
        num_return_sequences=G,
    )
    torch.manual_seed(0)
    with torch.no_grad():
        expected = tiny_model.generate(**enc, generation_config=gen)
    torch.manual_seed(0)
    seqs = module.rollout(enc, G)
    assert torch.equal(seqs, expected)
    completions = seqs[:, enc["input_ids"].shape[1] :]
    assert len({tuple(c) for c in completions.tolist()}) > 1, "rows of a group should be sampled apart"


def test_shared_prompt_logps_match_plain_forward(compose, tiny_model, tiny_processor, grounding_records):
    module = make_module(compose(*TINY_MODEL), tiny_model, tiny_processor)
    enc, prompts, ids, mask, positions = rollout_batch(module, grounding_records)
    rows = torch.arange(len(ids))
    with torch.no_grad():
        plain, plain_ent = module.completion_logps(tiny_model, prompts, ids, mask, 0.7, with_entropy=True)
        fast, fast_ent = module.group_logps(
            tiny_model, enc, rows, G, ids, mask, positions, 0.7, with_entropy=True
        )
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fast_ent, plain_ent, rtol=1e-5, atol=1e-5)
        # A micro-batch that takes part of each group (rows 2..4: prompt 0's last row, prompt 1's first two).
        part = torch.tensor([2, 3, 4])
        sub, _ = module.group_logps(tiny_model, enc, part, G, ids[part], mask[part], positions, 0.7)
        torch.testing.assert_close(sub, plain[part], rtol=1e-5, atol=1e-5)


def test_shared_prompt_gradients_match_plain_forward(compose, tiny_model, tiny_processor, grounding_records):
    module = make_module(compose(*TINY_MODEL), tiny_model, tiny_processor)
    perturb(tiny_model)
    enc, prompts, ids, mask, positions = rollout_batch(module, grounding_records)
    weights = torch.rand(ids.shape, generator=torch.Generator().manual_seed(1)) * mask

    def grads(logp: torch.Tensor) -> dict[str, torch.Tensor]:
        tiny_model.zero_grad()
        (logp * weights).sum().backward()
        return {n: p.grad.clone() for n, p in tiny_model.named_parameters() if p.grad is not None}

    plain = grads(module.completion_logps(tiny_model, prompts, ids, mask, 1.0)[0])
    fast = grads(module.group_logps(tiny_model, enc, torch.arange(len(ids)), G, ids, mask, positions, 1.0)[0])
    assert plain.keys() == fast.keys()
    assert any(n.startswith("model.visual") for n in fast), "the vision tower must get gradients too"
    for name, g in plain.items():
        torch.testing.assert_close(fast[name], g, rtol=1e-4, atol=1e-6 * float(g.abs().max()), msg=name)


def test_shared_prompt_lora_reference_matches_plain_forward(
    compose, tiny_model, tiny_processor, grounding_records
):
    from peft import LoraConfig, get_peft_model

    policy = get_peft_model(tiny_model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    module = make_module(compose(*TINY_MODEL, "model.lora.enabled=true"), policy, tiny_processor)
    enc, prompts, ids, mask, positions = rollout_batch(module, grounding_records)
    rows = torch.arange(len(ids))
    with Reference(policy, lora=True).active() as ref:
        plain, _ = module.completion_logps(ref, prompts, ids, mask, 1.0)
        fast, _ = module.group_logps(ref, enc, rows, G, ids, mask, positions, 1.0)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        adapted, _ = module.group_logps(policy, enc, rows, G, ids, mask, positions, 1.0)
    assert not torch.allclose(adapted, fast), "adapters should change the policy's log-probs"


def test_gradient_checkpointing_uses_the_plain_forward(
    compose, tiny_model, tiny_processor, grounding_records
):
    """Checkpointed layers drop the KV cache under autograd, so the update falls back to full rows."""
    module = make_module(
        compose(*TINY_MODEL, "model.gradient_checkpointing=true"), tiny_model, tiny_processor
    )
    tiny_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    tiny_model.train()
    enc, prompts, ids, mask, positions = rollout_batch(module, grounding_records)
    fast, _ = module.group_logps(tiny_model, enc, torch.arange(len(ids)), G, ids, mask, positions, 1.0)
    assert fast.requires_grad
    with torch.no_grad():
        plain, _ = module.completion_logps(tiny_model, prompts, ids, mask, 1.0)
    torch.testing.assert_close(fast.detach(), plain, rtol=1e-5, atol=1e-5)


def test_decode_keeps_markup_and_drops_end_and_padding(compose, tiny_model, tiny_processor):
    module = make_module(compose(*TINY_MODEL), tiny_model, tiny_processor)
    tok = module.tokenizer
    box = tok("<|box_start|>(1,2),(3,4)<|box_end|>", add_special_tokens=False)["input_ids"]
    pad = tok.pad_token_id
    ids = torch.tensor([[*box, module.end_id, pad, pad], [*box, box[0], box[1], box[2]]])
    texts = module.decode(ids, module.completion_mask(ids))
    assert texts[0] == "<|box_start|>(1,2),(3,4)<|box_end|>"
    assert texts[1] == tok.decode([*box, *box[:3]], skip_special_tokens=False)

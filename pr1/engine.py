"""The policy engine: prompt encoding, rollout, shared-prefix log-probs, greedy decoding (Qwen-VL families).

It knows nothing of Lightning, rewards or losses, so the training module and `pr1.eval` drive the same code.
Shapes: B prompts, G completions per prompt (rows grouped by prompt: row r continues prompt r // G), N = B*G
rows, P the padded prompt length, T the completion length, S the image patches of all B images.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from transformers import GenerationConfig

from pr1 import grpo
from pr1.model import family_of_model_type

log = logging.getLogger(__name__)

QWEN_VISION_TOKENS = (
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


@dataclass(frozen=True)
class Family:
    """What the engine needs to know about a model family: its chat markup's end-of-turn and vision tokens,
    and whether it takes the shared-prefix fast path.

    Vision placeholders must never be sampled: a completion holding one mismatches the image features. The
    fast path is built on the family's internals (`get_rope_index` with `mm_token_type_ids`, the KV cache's
    `batch_select_indices` / `batch_repeat_interleave`, generate's [text; 3 M-RoPE axes] position layout);
    a family whose internals differ sets `shared_prefix=False` and runs one forward per [prompt, completion]
    row instead, which needs none of them (tests/test_engine.py checks both paths for every family).
    """

    name: str
    end_token: str = "<|im_end|>"
    vision_tokens: tuple[str, ...] = QWEN_VISION_TOKENS
    shared_prefix: bool = True


QWEN2_VL = Family("qwen2vl")
QWEN25_VL = Family("qwen25vl")
QWEN3_VL = Family("qwen3vl")
FAMILIES = {f.name: f for f in (QWEN2_VL, QWEN25_VL, QWEN3_VL)}


def family_of(model: Any) -> Family:
    """The family of a loaded model (PEFT-wrapped or not), from its config's model_type."""
    return FAMILIES[family_of_model_type(model.config.model_type, type(model).__name__)]


class Batch(NamedTuple):
    """Encoded prompts (the processor's output) as typed tensors; `model(**batch._asdict())` runs them."""

    input_ids: torch.Tensor  # (B, P) left padded
    attention_mask: torch.Tensor  # (B, P)
    mm_token_type_ids: torch.Tensor  # (B, P) 1 on image tokens
    pixel_values: torch.Tensor  # (S, D) the patches of image 0, then image 1, ...
    image_grid_thw: torch.Tensor  # (B, 3) patches per image = prod(thw)

    def select(self, rows: torch.Tensor) -> Batch:
        """The prompts of `rows` (repeats allowed), image patches sliced per row."""
        sizes = self.image_grid_thw.prod(-1)
        starts = torch.cumsum(sizes, 0) - sizes
        patches = [
            self.pixel_values[s : s + n]
            for s, n in zip(starts[rows].tolist(), sizes[rows].tolist(), strict=True)
        ]
        return Batch(
            self.input_ids[rows],
            self.attention_mask[rows],
            self.mm_token_type_ids[rows],
            torch.cat(patches),
            self.image_grid_thw[rows],
        )

    def repeat(self, g: int) -> Batch:
        """Each prompt g times, rows i*g .. i*g+g-1 for prompt i."""
        return self.select(
            torch.arange(len(self.input_ids), device=self.input_ids.device).repeat_interleave(g)
        )


class Sampling(NamedTuple):
    """Rollout sampling knobs, always set explicitly (checkpoint defaults like Qwen's top_k=1 never leak)."""

    temperature: float
    top_p: float
    top_k: int
    max_new_tokens: int


class Rollout(NamedTuple):
    """G sampled completions per prompt and what every later forward of the step needs."""

    prompts: Batch  # the B prompts, encoded once
    group_size: int  # G
    ids: torch.Tensor  # (N, T) completion tokens, padding after the end token
    mask: torch.Tensor  # (N, T) 1 up to and including the end token
    positions: torch.Tensor | None  # (3, N, P + T) M-RoPE positions of each row; None on the plain path
    texts: list[str]  # N decoded completions (markup kept, end token dropped)


def chunks(n: int, size: int, device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
    """Row indices 0..n-1 in micro-batches of `size` (0: one chunk of all rows)."""
    size = size or n
    for s in range(0, n, size):
        yield torch.arange(s, min(s + size, n), device=device)


def backbone(model: Any) -> torch.nn.Module:
    """The Qwen2-VL-family base model (`.model` of the ForConditionalGeneration), PEFT-wrapped or not."""
    return (model.get_base_model() if hasattr(model, "get_base_model") else model).model


class PolicyEngine:
    """Runs a policy (and any model sharing its architecture, such as the reference) on prompt batches.

    The family is detected from the policy's config unless given; one without the shared-prefix fast path
    is logged once, here, and every rollout and log-prob of this engine then takes the plain path.
    """

    def __init__(
        self, policy: Any, processor: Any, gradient_checkpointing: bool = False, family: Family | None = None
    ):
        family = family or family_of(policy)
        if not family.shared_prefix:
            log.warning(
                "model family %s does not take the shared-prefix fast path: rollouts run generate with "
                "num_return_sequences=G and log-probs one forward per [prompt, completion] row (same "
                "results, each prompt encoded G times)",
                family.name,
            )
        self.family = family
        self.policy = policy
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.gradient_checkpointing = gradient_checkpointing
        self.end_id = self.tokenizer.convert_tokens_to_ids(family.end_token)
        eos = policy.generation_config.eos_token_id
        self.eos_ids = sorted(
            {self.end_id, *(eos if isinstance(eos, list) else [eos] if eos is not None else [])}
        )
        ids = self.tokenizer.convert_tokens_to_ids(list(family.vision_tokens))
        self.suppress_ids = [i for i in ids if i is not None]

    # ------------------------------------------------------------------------------------------ encoding
    def encode(self, chats: Sequence[list[dict]], images: Sequence[Any], device: torch.device | str) -> Batch:
        """Chat template + processor over one chat and image per prompt (left padded, images patchified)."""
        texts = [
            self.processor.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chats
        ]
        enc = self.processor(text=texts, images=list(images), padding=True, return_tensors="pt")
        n_img = int((enc["input_ids"] == self.policy.config.image_token_id).sum())
        expected = int(enc["image_grid_thw"].prod(-1).sum()) // self.processor.image_processor.merge_size**2
        if n_img != expected:
            raise RuntimeError(f"image tokens were truncated: {n_img} in the prompt, {expected} expected")
        return Batch(*(enc[k].to(device) for k in Batch._fields))

    def encode_answers(
        self, answers: Sequence[str], device: torch.device | str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Answer texts as completion ids (each closed by the end token, then padded) and mask, (N, T)."""
        tok = self.tokenizer(list(answers), add_special_tokens=False)["input_ids"]
        longest = max(len(t) for t in tok) + 1
        ids = torch.full((len(tok), longest), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, t in enumerate(tok):
            ids[i, : len(t) + 1] = torch.tensor([*t, self.end_id])
            mask[i, : len(t) + 1] = 1
        return ids.to(device), mask.to(device)

    def generation_config(self, **overrides: Any) -> GenerationConfig:
        """A copy of the policy's generation config with pr1's end tokens, padding, suppressed vision tokens.

        Every sampling knob is set explicitly by the caller: checkpoint defaults (Qwen2-VL ships top_k=1,
        top_p=0.001) must never leak into rollouts.
        """
        gen = copy.deepcopy(self.policy.generation_config)
        gen.update(
            eos_token_id=self.eos_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            suppress_tokens=self.suppress_ids,
            **overrides,
        )
        return gen

    def completion_mask(self, completion_ids: torch.Tensor) -> torch.Tensor:
        """1 up to and including the first end-of-turn token, 0 after it."""
        is_eos = torch.isin(completion_ids, torch.tensor(self.eos_ids, device=completion_ids.device))
        after = (torch.cumsum(is_eos.int(), dim=1) - is_eos.int()) > 0
        return (~after).long()

    def truncated(self, completion_ids: torch.Tensor) -> torch.Tensor:
        """True for the completions that hold no end-of-turn token: generation stopped them at max_new_tokens.
        (A completion that ends in the padded batch's last column with its end token is not truncated.)"""
        eos = torch.tensor(self.eos_ids, device=completion_ids.device)
        return ~torch.isin(completion_ids, eos).any(dim=1)

    def decode(self, completion_ids: torch.Tensor, mask: torch.Tensor) -> list[str]:
        """Completion text with Qwen's markup tokens kept (they carry the boxes) and the end token dropped."""
        eos = torch.tensor(self.eos_ids, device=completion_ids.device)
        keep = mask.bool() & ~torch.isin(completion_ids, eos)
        return self.tokenizer.batch_decode(
            [ids[k].tolist() for ids, k in zip(completion_ids, keep, strict=True)], skip_special_tokens=False
        )

    # ------------------------------------------------------------------------------------------ positions
    def rope_positions(self, prompts: Batch, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """M-RoPE position ids (3, N, P + T) of each [prompt, completion] row (`prompts` one row per row),
        exactly as the model's own forward derives them (padding skipped); they do not depend on the weights,
        so one call serves every forward of the step."""
        positions, _ = backbone(self.policy).get_rope_index(
            torch.cat([prompts.input_ids, ids], 1),
            mm_token_type_ids=torch.cat([prompts.mm_token_type_ids, torch.zeros_like(ids)], 1),
            image_grid_thw=prompts.image_grid_thw,
            attention_mask=torch.cat([prompts.attention_mask, mask], 1),
        )
        return positions

    # ------------------------------------------------------------------------------------------- decoding
    def sample(self, prompts: Batch, g: int, sampling: Sampling) -> torch.Tensor:
        """G sampled continuations per prompt in one batched generate, rows grouped by prompt: (N, P + T).

        The prompts go through the model once (vision tower included) and their KV cache is repeated G times,
        so generation continues every row from its prompt's last token instead of re-encoding each prompt G
        times: the same tokens as `generate(num_return_sequences=G)` (tests/test_engine.py), which a family
        without the fast path runs instead.
        """
        gen = self.generation_config(do_sample=True, **sampling._asdict())
        was_training = self.policy.training
        self.policy.eval()
        with torch.no_grad():
            if self.family.shared_prefix:
                seqs = self._sample_shared(prompts, g, gen)
            else:
                gen.num_return_sequences = g
                seqs = self.policy.generate(**prompts._asdict(), generation_config=gen)
        self.policy.train(was_training)
        return seqs

    def _sample_shared(self, prompts: Batch, g: int, gen: GenerationConfig) -> torch.Tensor:
        """`sample`'s fast path: prefill each prompt once, repeat its cache G times, continue every row."""
        ids, mask = prompts.input_ids, prompts.attention_mask
        positions, _ = backbone(self.policy).get_rope_index(
            ids,
            mm_token_type_ids=prompts.mm_token_type_ids,
            image_grid_thw=prompts.image_grid_thw,
            attention_mask=mask,
        )
        cache = self.policy(
            input_ids=ids[:, :-1],
            attention_mask=mask[:, :-1],
            position_ids=positions[..., :-1],
            pixel_values=prompts.pixel_values,
            image_grid_thw=prompts.image_grid_thw,
            use_cache=True,
            logits_to_keep=1,
        ).cache
        cache.batch_repeat_interleave(g)
        mask = mask.repeat_interleave(g, 0)
        # The Qwen-VL families' generate position layout: [text positions; 3 M-RoPE axes], extended per token.
        text = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        return self.policy.generate(
            input_ids=ids.repeat_interleave(g, 0),
            attention_mask=mask,
            position_ids=torch.cat([text[None], positions.repeat_interleave(g, 1)]),
            cache=cache,
            generation_config=gen,
        )

    def rollout(self, prompts: Batch, g: int, sampling: Sampling) -> Rollout:
        """`sample`, checked to keep group order, split into completions with mask, text and positions."""
        seqs = self.sample(prompts, g, sampling)
        plen = prompts.input_ids.shape[1]
        # Group bookkeeping: row i must continue prompt i // G, so a group shares one prompt and truth.
        if not torch.equal(seqs[:, :plen], prompts.input_ids.repeat_interleave(g, 0)):
            raise RuntimeError("rollout returned rows that do not continue their prompts in group order")
        ids = seqs[:, plen:]
        mask = self.completion_mask(ids)
        positions = self.rope_positions(prompts.repeat(g), ids, mask) if self.family.shared_prefix else None
        return Rollout(prompts, g, ids, mask, positions, self.decode(ids, mask))

    def greedy(self, prompts: Batch, max_new_tokens: int) -> list[str]:
        """One greedy completion per prompt (validation and eval), decoded like a rollout's."""
        gen = self.generation_config(
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            num_return_sequences=1,
            max_new_tokens=int(max_new_tokens),
        )
        seqs = self.policy.generate(**prompts._asdict(), generation_config=gen)
        ids = seqs[:, prompts.input_ids.shape[1] :]
        return self.decode(ids, self.completion_mask(ids))

    # ------------------------------------------------------------------------------------------ log-probs
    def row_logps(
        self,
        model: Any,
        prompts: Batch,
        ids: torch.Tensor,
        mask: torch.Tensor,
        temperature: float,
        with_entropy: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-token log pi(o_t | prompt, o_<t) (N, T), one forward per [prompt, completion] row (`prompts`
        one row per completion); logits scaled by the temperature."""
        out = model(
            input_ids=torch.cat([prompts.input_ids, ids], 1),
            attention_mask=torch.cat([prompts.attention_mask, mask], 1),
            mm_token_type_ids=torch.cat([prompts.mm_token_type_ids, torch.zeros_like(ids)], 1),
            pixel_values=prompts.pixel_values,
            image_grid_thw=prompts.image_grid_thw,
            logits_to_keep=ids.shape[1] + 1,
            use_cache=False,
        )
        return grpo.token_logps(out.logits[:, :-1], ids, temperature, with_entropy)

    def group_logps(
        self,
        model: Any,
        rollout: Rollout,
        rows: torch.Tensor,
        temperature: float,
        with_entropy: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`row_logps` of rollout rows `rows` (len(rows), T), each prompt run once for all its rows.

        The G completions of a prompt share it, so the prompt (vision tower included) goes through the model
        once and its key/value cache is indexed out to the rows that continue it; the completion tokens then
        attend to it. Same attention, positions and masks as one forward per [prompt, completion] row (and
        gradients flow back through the shared cache), at 1/G of the prompt's cost.
        """
        g, enc = rollout.group_size, rollout.prompts
        ids, mask, positions = rollout.ids[rows], rollout.mask[rows], rollout.positions
        if not self.family.shared_prefix or (self.gradient_checkpointing and torch.is_grad_enabled()):
            # The plain path: the family lacks the fast path's internals, or checkpointed layers drop the KV
            # cache under autograd. Run each row's [prompt, completion].
            return self.row_logps(model, enc.select(rows // g), ids, mask, temperature, with_entropy)
        plen = enc.input_ids.shape[1]
        prompt_ids, row_prompt = torch.unique(rows // g, return_inverse=True)
        sub = enc.select(prompt_ids)
        out = model(
            input_ids=sub.input_ids,
            attention_mask=sub.attention_mask,
            position_ids=positions[:, prompt_ids * g, :plen],
            pixel_values=sub.pixel_values,
            image_grid_thw=sub.image_grid_thw,
            use_cache=True,
            logits_to_keep=1,
        )
        logits = out.logits[row_prompt]  # predicts each row's first completion token
        if ids.shape[1] > 1:
            cache = out.cache
            cache.batch_select_indices(row_prompt)
            rest = model(
                input_ids=ids[:, :-1],
                attention_mask=torch.cat([sub.attention_mask[row_prompt], mask[:, :-1]], 1),
                position_ids=positions[:, rows, plen : plen + ids.shape[1] - 1],
                cache=cache,
                use_cache=False,
            )
            logits = torch.cat([logits, rest.logits], 1)
        return grpo.token_logps(logits, ids, temperature, with_entropy)

    @torch.no_grad()
    def frozen_logps(
        self, model: Any, rollout: Rollout, temperature: float, micro_batch: int
    ) -> torch.Tensor:
        """Log-probs (N, T) of a model not being trained now (the reference), chunked, prompts shared."""
        n = len(rollout.ids)
        return torch.cat(
            [
                self.group_logps(model, rollout, c, temperature)[0]
                for c in chunks(n, micro_batch, rollout.ids.device)
            ]
        )

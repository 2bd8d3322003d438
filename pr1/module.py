"""The LightningModule that owns the policy and the frozen reference and runs one GRPO (or SFT) step.

Read `_grpo_step` top to bottom: rollout -> rewards -> group advantages -> old/ref log-probs -> mu clipped
updates with the k3 KL penalty. The math lives in pr1/grpo.py; this file only wires tensors.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections import defaultdict
from contextlib import contextmanager

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig
from transformers import GenerationConfig

from pr1 import grpo
from pr1.model import Reference
from pr1.tasks.task import Task


def numpy_rng_state() -> dict:
    """NumPy's global RNG state as tensors and ints, loadable by `torch.load(weights_only=True)`."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }


def set_numpy_rng_state(state: dict) -> None:
    np.random.set_state(
        (
            state["name"],
            state["keys"].numpy().astype(np.uint32),
            state["pos"],
            state["has_gauss"],
            state["gauss"],
        )
    )


class PR1Module(L.LightningModule):
    def __init__(self, cfg: DictConfig, task: Task, policy, processor):
        super().__init__()
        self.automatic_optimization = False  # GRPO needs mu updates per rollout batch: we drive the optimizer
        self.cfg = cfg
        self.obj = cfg.objective
        self.task = task
        self.policy = policy
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.end_id = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        eos = policy.generation_config.eos_token_id
        self.eos_ids = sorted(
            {self.end_id, *(eos if isinstance(eos, list) else [eos] if eos is not None else [])}
        )
        rl = self.obj.name == "rl"
        if rl and self.obj.loss_type not in grpo.LOSS_TYPES:
            raise ValueError(
                f"objective.loss_type must be one of {grpo.LOSS_TYPES}, got {self.obj.loss_type!r}"
            )
        if rl and self.accumulation > 1 and self.obj.num_iterations > 1:
            raise ValueError("objective.grad_accum > 1 needs objective.num_iterations == 1")
        self.reference = Reference(policy, lora=cfg.model.lora.enabled) if rl and self.obj.beta > 0 else None
        self.val_outputs: list[tuple[str, dict]] = []
        self.last_samples: list[dict] = []
        self.batches_seen = 0  # rollout batches trained on by this process (drives gradient accumulation)
        self.samples_done = 0  # prompts consumed over all processes; the data sampler resumes from it
        # Vision placeholders must never be sampled: a completion holding one mismatches the image features.
        vision = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
        self.suppress_ids = [i for i in self.tokenizer.convert_tokens_to_ids(list(vision)) if i is not None]

    # ----------------------------------------------------------------------------------------- optimizer
    def configure_optimizers(self):
        params = [p for p in self.policy.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.obj.lr, weight_decay=self.obj.weight_decay)
        warmup = max(int(self.obj.warmup_steps), 0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (warmup + 1)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Data position and RNG state, so a resumed run continues exactly where it stopped."""
        checkpoint["pr1"] = {
            "samples_done": self.samples_done,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": numpy_rng_state(),
                "python": random.getstate(),
            },
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("pr1")
        if state is None:
            raise KeyError(
                "checkpoint has no 'pr1' state (not written by pr1): cannot resume data order and RNG"
            )
        self.samples_done = int(state["samples_done"])
        torch.set_rng_state(state["rng"]["torch"])
        set_numpy_rng_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])

    def on_fit_start(self) -> None:
        if self.reference is not None:
            self.reference.to(self.device)

    # ------------------------------------------------------------------------------------------ encoding
    def encode_prompts(self, batch: list[dict]):
        """Chat template + processor over the prompts of a batch (left padded, images patchified)."""
        texts = [
            self.processor.apply_chat_template(
                self.task.messages(r), add_generation_prompt=True, tokenize=False
            )
            for r in batch
        ]
        enc = self.processor(text=texts, images=[r["pil"] for r in batch], padding=True, return_tensors="pt")
        n_img = int((enc["input_ids"] == self.policy.config.image_token_id).sum())
        expected = int(enc["image_grid_thw"].prod(-1).sum()) // self.processor.image_processor.merge_size**2
        if n_img != expected:
            raise RuntimeError(f"image tokens were truncated: {n_img} in the prompt, {expected} expected")
        return enc.to(self.device)

    @staticmethod
    def repeat_prompts(enc, g: int) -> dict:
        """Repeat each prompt (and its image patches) g times, row i*g..i*g+g-1 for prompt i."""
        sizes = enc["image_grid_thw"].prod(-1).tolist()
        patches = torch.split(enc["pixel_values"], sizes)
        return {
            "input_ids": enc["input_ids"].repeat_interleave(g, 0),
            "attention_mask": enc["attention_mask"].repeat_interleave(g, 0),
            "mm_token_type_ids": enc["mm_token_type_ids"].repeat_interleave(g, 0),
            "pixel_values": torch.cat([p for p in patches for _ in range(g)]),
            "image_grid_thw": enc["image_grid_thw"].repeat_interleave(g, 0),
        }

    @staticmethod
    def select(prompts: dict, rows: torch.Tensor) -> dict:
        """The prompt tensors of a subset of rows (image patches are sliced per row)."""
        sizes = prompts["image_grid_thw"].prod(-1)
        starts = torch.cumsum(sizes, 0) - sizes
        patches = [
            prompts["pixel_values"][s : s + n]
            for s, n in zip(starts[rows].tolist(), sizes[rows].tolist(), strict=True)
        ]
        out = {k: v[rows] for k, v in prompts.items() if k != "pixel_values"}
        out["pixel_values"] = torch.cat(patches)
        return out

    def generation_config(self, **overrides) -> GenerationConfig:
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

    def decode(self, completion_ids: torch.Tensor, mask: torch.Tensor) -> list[str]:
        """Completion text with Qwen's markup tokens kept (they carry the boxes) and the end token dropped."""
        eos = torch.tensor(self.eos_ids, device=completion_ids.device)
        keep = mask.bool() & ~torch.isin(completion_ids, eos)
        return self.tokenizer.batch_decode(
            [ids[k].tolist() for ids, k in zip(completion_ids, keep, strict=True)], skip_special_tokens=False
        )

    def completion_logps(
        self,
        model,
        prompts: dict,
        ids: torch.Tensor,
        mask: torch.Tensor,
        temperature: float,
        with_entropy: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-token log pi(o_t | prompt, o_<t) of the completion; logits scaled by the temperature."""
        out = model(
            input_ids=torch.cat([prompts["input_ids"], ids], 1),
            attention_mask=torch.cat([prompts["attention_mask"], mask], 1),
            mm_token_type_ids=torch.cat([prompts["mm_token_type_ids"], torch.zeros_like(ids)], 1),
            pixel_values=prompts["pixel_values"],
            image_grid_thw=prompts["image_grid_thw"],
            logits_to_keep=ids.shape[1] + 1,
            use_cache=False,
        )
        return grpo.token_logps(out.logits[:, :-1], ids, temperature, with_entropy)

    @staticmethod
    def backbone(model) -> torch.nn.Module:
        """The Qwen2-VL-family base model (`.model` of the ForConditionalGeneration), PEFT-wrapped or not."""
        return (model.get_base_model() if hasattr(model, "get_base_model") else model).model

    def rope_positions(self, prompts: dict, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """M-RoPE position ids (3, N, P + T) of each [prompt, completion] row, exactly as the model's own
        forward derives them (padding skipped); they do not depend on the weights, so one call serves every
        forward of the step."""
        positions, _ = self.backbone(self.policy).get_rope_index(
            torch.cat([prompts["input_ids"], ids], 1),
            mm_token_type_ids=torch.cat([prompts["mm_token_type_ids"], torch.zeros_like(ids)], 1),
            image_grid_thw=prompts["image_grid_thw"],
            attention_mask=torch.cat([prompts["attention_mask"], mask], 1),
        )
        return positions

    def group_logps(
        self,
        model,
        enc,
        rows: torch.Tensor,
        g: int,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        temperature: float,
        with_entropy: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`completion_logps` for rows `rows` of a rollout batch, each prompt run once for all its rows.

        The G completions of a prompt share it, so the prompt (vision tower included) goes through the model
        once and its key/value cache is indexed out to the rows that continue it; the completion tokens then
        attend to it. Same attention, positions and masks as one forward per [prompt, completion] row (and
        gradients flow back through the shared cache), at 1/G of the prompt's cost. `ids`/`mask` are the
        rows' completions, `positions` the whole batch's `rope_positions`; row r continues prompt r // g.
        """
        if self.cfg.model.gradient_checkpointing and torch.is_grad_enabled():
            # Checkpointed layers drop the KV cache under autograd: run each row's [prompt, completion].
            return self.completion_logps(
                model, self.select(enc, rows // g), ids, mask, temperature, with_entropy
            )
        plen = enc["input_ids"].shape[1]
        prompt_ids, row_prompt = torch.unique(rows // g, return_inverse=True)
        sub = self.select(enc, prompt_ids)
        out = model(
            input_ids=sub["input_ids"],
            attention_mask=sub["attention_mask"],
            position_ids=positions[:, prompt_ids * g, :plen],
            pixel_values=sub["pixel_values"],
            image_grid_thw=sub["image_grid_thw"],
            use_cache=True,
            logits_to_keep=1,
        )
        logits = out.logits[row_prompt]  # predicts each row's first completion token
        if ids.shape[1] > 1:
            cache = out.cache
            cache.batch_select_indices(row_prompt)
            rest = model(
                input_ids=ids[:, :-1],
                attention_mask=torch.cat([sub["attention_mask"][row_prompt], mask[:, :-1]], 1),
                position_ids=positions[:, rows, plen : plen + ids.shape[1] - 1],
                cache=cache,
                use_cache=False,
            )
            logits = torch.cat([logits, rest.logits], 1)
        return grpo.token_logps(logits, ids, temperature, with_entropy)

    def chunks(self, n: int):
        size = int(self.obj.micro_batch_size) or n
        for s in range(0, n, size):
            yield torch.arange(s, min(s + size, n), device=self.device)

    @contextmanager
    def timed(self, times: dict, phase: str):
        t0 = time.perf_counter()
        yield
        times[phase] += time.perf_counter() - t0

    # -------------------------------------------------------------------------------------------- train
    def training_step(self, batch: list[dict], batch_idx: int) -> None:
        t0 = time.perf_counter()
        times: dict[str, float] = defaultdict(float)
        stats = self._sft_step(batch, times) if self.obj.name == "sft" else self._grpo_step(batch, times)
        self.samples_done += len(batch) * self.trainer.world_size
        times["other"] = time.perf_counter() - t0 - sum(times.values())
        stats["lr"] = self.optimizers().param_groups[0]["lr"]
        bar = {"reward", "kl", "loss"}
        for k, v in stats.items():
            self.log(
                f"train/{k}", float(v), on_step=True, prog_bar=k in bar, sync_dist=True, batch_size=len(batch)
            )
        for k, v in times.items():
            self.log(f"time/{k}", v, on_step=True, batch_size=len(batch))

    @property
    def accumulation(self) -> int:
        return max(int(self.obj.get("grad_accum", 1)), 1)

    def begin_accumulation(self, opt) -> None:
        """Zero the gradients at the first rollout batch of an accumulation cycle."""
        if self.batches_seen % self.accumulation == 0:
            opt.zero_grad()

    def finish_accumulation(self, opt) -> None:
        """Clip, step the optimizer and the LR schedule after the last batch of an accumulation cycle."""
        self.batches_seen += 1
        if self.batches_seen % self.accumulation:
            return
        if self.obj.grad_clip:
            self.clip_gradients(opt, gradient_clip_val=self.obj.grad_clip, gradient_clip_algorithm="norm")
        opt.step()
        self.lr_schedulers().step()

    def rollout(self, enc, g: int) -> torch.Tensor:
        """G sampled continuations per prompt in one batched generate, rows grouped by prompt.

        The prompts go through the model once (vision tower included) and their KV cache is repeated G times,
        so generation continues every row from its prompt's last token instead of re-encoding each prompt G
        times: the same tokens as `generate(num_return_sequences=G)` (tests/test_module_fast_path.py).
        """
        obj = self.obj
        gen = self.generation_config(
            do_sample=True,
            temperature=obj.temperature,
            top_p=obj.top_p,
            top_k=obj.top_k,
            max_new_tokens=obj.max_new_tokens,
        )
        ids, mask = enc["input_ids"], enc["attention_mask"]
        self.policy.eval()
        with torch.no_grad():
            positions, _ = self.backbone(self.policy).get_rope_index(
                ids,
                mm_token_type_ids=enc["mm_token_type_ids"],
                image_grid_thw=enc["image_grid_thw"],
                attention_mask=mask,
            )
            cache = self.policy(
                input_ids=ids[:, :-1],
                attention_mask=mask[:, :-1],
                position_ids=positions[..., :-1],
                pixel_values=enc["pixel_values"],
                image_grid_thw=enc["image_grid_thw"],
                use_cache=True,
                logits_to_keep=1,
            ).cache
            cache.batch_repeat_interleave(g)
            mask = mask.repeat_interleave(g, 0)
            # generate's Qwen2-VL position layout: [text positions; 3 M-RoPE axes], extended per token.
            text = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
            seqs = self.policy.generate(
                input_ids=ids.repeat_interleave(g, 0),
                attention_mask=mask,
                position_ids=torch.cat([text[None], positions.repeat_interleave(g, 1)]),
                cache=cache,
                generation_config=gen,
            )
        self.policy.train()
        return seqs

    @torch.no_grad()
    def frozen_logps(
        self, model, enc, g: int, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """Log-probs of a model that is not being trained now (the reference), chunked, prompts shared."""
        return torch.cat(
            [
                self.group_logps(model, enc, c, g, ids[c], mask[c], positions, self.obj.temperature)[0]
                for c in self.chunks(len(ids))
            ]
        )

    def global_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of a tensor over all processes (itself on one process)."""
        return self.all_gather(x).sum(0) if self.trainer.world_size > 1 else x

    def _grpo_step(self, batch: list[dict], times: dict) -> dict[str, float]:
        obj, g = self.obj, int(self.obj.num_generations)
        opt = self.optimizers()

        # 1. Rollout: G sampled completions per prompt.
        with self.timed(times, "rollout"):
            enc = self.encode_prompts(batch)
            seqs = self.rollout(enc, g)
            prompts = self.repeat_prompts(enc, g)
            plen = enc["input_ids"].shape[1]
            # Group bookkeeping: row i must continue prompt i // G, so a group shares one prompt and truth.
            if not torch.equal(seqs[:, :plen], prompts["input_ids"]):
                raise RuntimeError("rollout returned rows that do not continue their prompts in group order")
            ids = seqs[:, plen:]
            mask = self.completion_mask(ids)
            texts = self.decode(ids, mask)
            records = [r for r in batch for _ in range(g)]

        # 2. Rewards: each named term scored separately, then the weighted sum.
        with self.timed(times, "reward"):
            per_term = self.task.score(texts, records)
            rewards = sum(
                t.weight * torch.tensor(per_term[t.name], dtype=torch.float32) for t in self.task.rewards
            ).to(self.device)

        # 3. Group-relative advantages (a group lives on one process; "batch" scaling uses the global std).
        batch_std = None
        if obj.scale_rewards == "batch" and self.trainer.world_size > 1:
            batch_std = self.all_gather(rewards).flatten().std()
        adv = grpo.group_advantages(rewards, g, obj.scale_rewards, obj.adv_eps, batch_std=batch_std)

        # 4. Log-probs of the reference, no grad. Those of the sampling policy (needed only when mu > 1) are
        #    the first update pass's own log-probs, detached: no optimizer step happens before that pass ends.
        with self.timed(times, "logps"):
            positions = self.rope_positions(prompts, ids, mask)
            ref_logps = None
            if self.reference is not None:
                with self.reference.active() as ref:
                    ref_logps = self.frozen_logps(ref, enc, g, ids, mask, positions)

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
                for i, c in enumerate(self.chunks(len(ids))):
                    logp, ent = self.group_logps(
                        self.policy, enc, c, g, ids[c], mask[c], positions, obj.temperature, with_entropy=True
                    )
                    old = old_logps.setdefault(i, logp.detach())
                    per_token, clipped = grpo.clipped_surrogate(
                        logp, old, adv[c], obj.epsilon, obj.epsilon_high
                    )
                    if ref_logps is not None:
                        kl = grpo.kl_k3(logp, ref_logps[c])
                        per_token = per_token + obj.beta * kl
                        kl_sum += float((kl.detach() * mask[c]).sum())
                    loss = (per_token * weights[c]).sum()
                    self.manual_backward(loss)
                    loss_sum += float(loss.detach()) * self.accumulation
                    clip_sum += float((clipped * mask[c]).sum())
                    ent_sum += float((ent * mask[c]).sum())
                self.finish_accumulation(opt)

        n_tok = float(mask.sum().clamp(min=1))
        grouped = rewards.view(-1, g)
        stats = {
            "reward": float(rewards.mean()),
            "reward_std": float(grouped.std(dim=1).mean()),
            "frac_reward_zero_std": float((grouped.std(dim=1) < 1e-6).float().mean()),
            "loss": loss_sum,
            "kl": kl_sum / n_tok,
            "clip_ratio": clip_sum / n_tok,
            "entropy": ent_sum / n_tok,
            "completion_length": float(mask.sum(1).float().mean()),
            "truncated_frac": float((mask[:, -1] == 1).float().mean()),
        }
        for name, vals in per_term.items():
            v = torch.tensor(vals)
            stats[f"reward/{name}"] = float(v.mean())
            stats[f"reward/{name}_std"] = float(v.std()) if len(v) > 1 else 0.0
        # The last rollout batch, for sample tables (W&B): one dict per completion.
        self.last_samples = [
            {
                "record": rec,
                "completion": text,
                "reward": r,
                "advantage": a,
                "terms": {name: per_term[name][i] for name in per_term},
            }
            for i, (rec, text, r, a) in enumerate(
                zip(records, texts, rewards.tolist(), adv.tolist(), strict=True)
            )
        ]
        return stats

    def _sft_step(self, batch: list[dict], times: dict) -> dict[str, float]:
        """Cross-entropy on the ground-truth answer tokens, through the same prompt path as GRPO."""
        opt = self.optimizers()
        with self.timed(times, "update"):
            enc = self.encode_prompts(batch)
            prompts = self.repeat_prompts(enc, 1)
            answers = [self.task.answer(r) for r in batch]
            tok = self.tokenizer(answers, add_special_tokens=False)["input_ids"]
            longest = max(len(t) for t in tok) + 1
            ids = torch.full((len(tok), longest), self.tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, t in enumerate(tok):
                ids[i, : len(t) + 1] = torch.tensor([*t, self.end_id])
                mask[i, : len(t) + 1] = 1
            ids, mask = ids.to(self.device), mask.to(self.device)
            self.begin_accumulation(opt)
            n_tok = float(mask.sum()) * self.accumulation
            loss_sum = 0.0
            for c in self.chunks(len(ids)):
                logp, _ = self.completion_logps(self.policy, self.select(prompts, c), ids[c], mask[c], 1.0)
                loss = -(logp * mask[c]).sum() / n_tok
                self.manual_backward(loss)
                loss_sum += float(loss.detach()) * self.accumulation
            self.finish_accumulation(opt)
        return {"loss": loss_sum, "ppl": math.exp(min(loss_sum, 50.0))}

    # --------------------------------------------------------------------------------------- validation
    def validation_step(self, batch: list[dict], batch_idx: int) -> None:
        enc = self.encode_prompts(batch)
        gen = self.generation_config(
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            num_return_sequences=1,
            max_new_tokens=int(self.cfg.task.val_max_new_tokens),
        )
        seqs = self.policy.generate(**enc, generation_config=gen)
        ids = seqs[:, enc["input_ids"].shape[1] :]
        texts = self.decode(ids, self.completion_mask(ids))
        self.val_outputs.extend(zip(texts, batch, strict=True))

    def on_validation_epoch_start(self) -> None:
        self.val_outputs = []

    def on_validation_epoch_end(self) -> None:
        texts = [t for t, _ in self.val_outputs]
        records = [r for _, r in self.val_outputs]
        metrics, self.val_rows = self.task.evaluate(texts, records)
        for k, v in metrics.items():
            self.log(f"val/{k}", v, prog_bar=k == self.task.metric, sync_dist=True)

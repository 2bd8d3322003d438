"""Load the policy (tiny or real Qwen2-VL-family checkpoint) and its frozen reference: one code path."""

from __future__ import annotations

import copy
import logging
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import AutoModelForImageTextToText, AutoProcessor, PreTrainedModel, ProcessorMixin

log = logging.getLogger(__name__)

ASSETS = Path(__file__).parent / "assets"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def asset_path(name: str) -> str:
    """Path of a model shipped in pr1/assets (the `${pr1.asset:NAME}` config resolver)."""
    return str(ASSETS / name)


def load_policy(cfg: DictConfig) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Model + processor from `model.path` (hub id or folder), or a random tiny model if `model.build` is set.

    Applies dtype, attention implementation, min/max pixels, vision freezing, LoRA and gradient checkpointing.
    """
    if cfg.build is not None:
        from pr1.tiny import build_model, build_processor

        processor = build_processor(min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
        model = build_model(processor, **OmegaConf.to_container(cfg.build))
        model.to(DTYPES[cfg.dtype])
    else:
        if cfg.path is None:
            raise ValueError("model.path is null and model.build is null: set one (hub id or local folder)")
        local = Path(str(cfg.path)).expanduser()
        if str(cfg.path).startswith(str(ASSETS)) and not (local / "config.json").is_file():
            raise FileNotFoundError(
                f"embedded checkpoint missing at {local}; "
                "rebuild it with: python -m pr1.run experiment=build_tiny"
            )
        processor = AutoProcessor.from_pretrained(
            str(cfg.path), min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels
        )
        model = AutoModelForImageTextToText.from_pretrained(
            str(cfg.path), dtype=DTYPES[cfg.dtype], attn_implementation=cfg.attn_implementation
        )
    processor.tokenizer.padding_side = "left"  # generation appends to the right end of every prompt
    if cfg.freeze_vision:
        visual = model.model.visual if hasattr(model.model, "visual") else model.visual
        visual.requires_grad_(False)
    if cfg.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.lora.enabled:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=cfg.lora.r,
            lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout,
            target_modules=list(cfg.lora.target_modules),
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    return model, processor


class Reference:
    """The frozen reference policy for the KL term.

    Without LoRA it is a deep copy of the initial policy (eval mode, no grads, never in the optimizer, and
    deliberately not an nn.Module attribute of the LightningModule, so checkpoints hold the policy only).
    With LoRA it is the policy itself with its adapters disabled: no second copy of the weights in memory.
    """

    def __init__(self, policy: PreTrainedModel, lora: bool):
        self.lora = lora
        self.model = policy if lora else copy.deepcopy(policy).eval().requires_grad_(False)

    def to(self, device: torch.device) -> Reference:
        if not self.lora:
            self.model.to(device)
        return self

    @contextmanager
    def active(self):
        """Run the reference: adapters off (LoRA) or the frozen copy; no autograd graph either way."""
        ctx = self.model.disable_adapter() if self.lora else nullcontext()
        with ctx, torch.no_grad():
            yield self.model

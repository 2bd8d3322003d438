"""Load the policy (tiny or real Qwen-VL checkpoint of any family) and its frozen reference: one code path.

The coordinate frame follows the checkpoint: `model.frame` resolves (`${pr1.frame:...}`) from the family in
`model.path`'s config.json (a local folder, or a hub id already in the local HF cache; nothing is downloaded),
falling back to the config's declared `model.family` when the checkpoint cannot be read yet. After loading,
`load_policy` checks the frame against the loaded model and processor and refuses a contradicting one.
"""

from __future__ import annotations

import copy
import json
import logging
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import AutoModelForImageTextToText, AutoProcessor, PreTrainedModel, ProcessorMixin

from pr1.coords import FAMILIES, family_frame

log = logging.getLogger(__name__)

ASSETS = Path(__file__).parent / "assets"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# transformers' model_type (config.json) -> pr1's family name.
MODEL_TYPES = {"qwen2_vl": "qwen2vl", "qwen2_5_vl": "qwen25vl", "qwen3_vl": "qwen3vl"}


# How each embedded checkpoint is rebuilt (each stage starts from the one before it). The tiny4x
# stages are the model-size ablation's larger model (not shipped).
_TINY_PERCEPTION = (
    "python -m pr1.run experiment=build_tiny && python -m pr1.run experiment=build_tiny_perception"
)
_TINY4X_PERCEPTION = (
    "python -m pr1.run experiment=build_tiny4x && python -m pr1.run experiment=build_tiny4x_perception"
)
ASSET_RECIPES = {
    "tiny-grounding-sft": "python -m pr1.run experiment=build_tiny",
    "tiny-perception-sft": _TINY_PERCEPTION,
    "tiny-perception-ocr8-sft": (
        f"{_TINY_PERCEPTION} && python -m pr1.run experiment=build_tiny_perception_ocr8"
    ),
    "tiny4x-grounding-sft": "python -m pr1.run experiment=build_tiny4x",
    "tiny4x-perception-sft": _TINY4X_PERCEPTION,
    "tiny4x-perception-ocr8-sft": (
        f"{_TINY4X_PERCEPTION} && python -m pr1.run experiment=build_tiny4x_perception_ocr8"
    ),
}


def rebuild_command(asset: Path) -> str:
    """The command that rebuilds the embedded checkpoint folder `asset` (the default model's, for a folder
    no recipe names)."""
    return ASSET_RECIPES.get(Path(asset).name, ASSET_RECIPES["tiny-perception-ocr8-sft"])


def asset_path(name: str) -> str:
    """Path of a model shipped in pr1/assets (the `${pr1.asset:NAME}` config resolver)."""
    return str(ASSETS / name)


def family_of_model_type(model_type: str, where: str) -> str:
    """pr1's family for a transformers model_type; a clear error naming the checkpoint for any other."""
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"{where}: model_type {model_type!r} is not a supported Qwen-VL family; "
            f"supported model types: {sorted(MODEL_TYPES)}"
        )
    return MODEL_TYPES[model_type]


def _local_config(path: str) -> Path | None:
    """config.json of a local folder or of a hub id in the local HF cache (never downloads), else None."""
    local = Path(path).expanduser() / "config.json"
    if local.is_file():
        return local
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(path, "config.json")
    except HFValidationError:  # a folder path that does not exist is no hub id either
        return None
    return Path(cached) if isinstance(cached, str) else None


def checkpoint_family(path: str | None) -> str | None:
    """The family of the checkpoint at `path` from its config.json, or None if it cannot be read offline."""
    if path is None:
        return None
    config = _local_config(str(path))
    if config is None:
        return None
    try:
        model_type = json.loads(config.read_text())["model_type"]
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise ValueError(f"{config}: cannot read model_type ({type(exc).__name__}: {exc})") from exc
    return family_of_model_type(model_type, str(config))


def resolve_frame(path: str | None, family: str | None, min_pixels: int, max_pixels: int) -> DictConfig:
    """`${pr1.frame:${model.path},${model.family},...}`: the frame of the checkpoint's family.

    The checkpoint's own config.json wins over the declared `model.family` (a Qwen3-VL folder given to the
    Qwen2.5-VL config still gets Qwen3-VL's frame); the declared family covers a hub id not yet downloaded
    and random builds (`model.path=null`).
    """
    found = checkpoint_family(path)
    if found is None and family is None:
        raise ValueError(
            f"cannot tell the model family of model.path={path!r} (no config.json there or in the local HF "
            f"cache): set model.family to one of {FAMILIES}"
        )
    return OmegaConf.create(family_frame(found or family, min_pixels, max_pixels))


OmegaConf.register_new_resolver("pr1.frame", resolve_frame, replace=True)


def processor_frame(family: str, processor: ProcessorMixin) -> dict:
    """The frame a loaded model and processor really use (resize limits and factor from the processor)."""
    ip = processor.image_processor
    frame = family_frame(family, ip.size["shortest_edge"], ip.size["longest_edge"])
    if frame["kind"] == "abs_resized":
        frame["factor"] = int(ip.patch_size * ip.merge_size)
    return frame


def check_frame_matches(cfg: DictConfig, model: PreTrainedModel, processor: ProcessorMixin) -> None:
    """Refuse a `model.frame` that contradicts the loaded checkpoint: every reward would be wrong."""
    family = family_of_model_type(model.config.model_type, f"model.path={cfg.path}")
    if cfg.family is not None and cfg.family != family:
        log.info(
            "model.family is %s but the checkpoint is %s: the frame follows the checkpoint",
            cfg.family,
            family,
        )
    expected = processor_frame(family, processor)
    given = OmegaConf.to_container(cfg.frame, resolve=True)
    if given.get("kind") == "abs_resized":
        given = {"factor": 28, **given}
    if {k: given.get(k) for k in expected} != expected or set(given) - set(expected):
        raise ValueError(
            f"model.frame={given} contradicts the checkpoint ({family} at model.path={cfg.path}, processor "
            f"resize limits included), whose frame is {expected}: drop the model.frame override (the frame "
            f"follows the checkpoint) or point model.path at a checkpoint of the intended family"
        )


def load_policy(cfg: DictConfig) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Model + processor from `model.path` (hub id or folder), or a random tiny model if `model.build` is set.

    Applies dtype, attention implementation, min/max pixels, vision freezing, LoRA and gradient checkpointing.
    """
    if cfg.build is not None and cfg.path is not None:
        raise ValueError(
            f"model.path={cfg.path} and model.build={OmegaConf.to_container(cfg.build)} are both set: set "
            "model.build=null to load the checkpoint, or model.path=null to build a random model"
        )
    if cfg.build is not None:
        from pr1.tiny import build_model, build_processor

        processor = build_processor(min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels, family=cfg.family)
        model = build_model(processor, family=cfg.family, **OmegaConf.to_container(cfg.build))
        model.to(DTYPES[cfg.dtype])
    else:
        if cfg.path is None:
            raise ValueError("model.path is null and model.build is null: set one (hub id or local folder)")
        local = Path(str(cfg.path)).expanduser()
        if str(cfg.path).startswith(str(ASSETS)) and not (local / "config.json").is_file():
            raise FileNotFoundError(
                f"embedded checkpoint missing at {local}; rebuild it with: {rebuild_command(local)}"
            )
        processor = AutoProcessor.from_pretrained(
            str(cfg.path), size={"shortest_edge": cfg.min_pixels, "longest_edge": cfg.max_pixels}
        )
        model = AutoModelForImageTextToText.from_pretrained(
            str(cfg.path), dtype=DTYPES[cfg.dtype], attn_implementation=cfg.attn_implementation
        )
    check_frame_matches(cfg, model, processor)
    processor.tokenizer.padding_side = "left"  # generation appends to the right end of every prompt
    if cfg.freeze_vision:
        visual = model.model.visual if hasattr(model.model, "visual") else model.visual
        visual.requires_grad_(False)
    if cfg.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.lora.enabled:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(cfg.lora))
    return model, processor


def lora_config(lora: DictConfig):
    """peft's LoraConfig from `model.lora` (the policy's adapters; TRL's side of the benchmarks too)."""
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )


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

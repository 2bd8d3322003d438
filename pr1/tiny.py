"""Build tiny Qwen-VL models (model + processor) offline: Qwen2-VL, Qwen2.5-VL and Qwen3-VL.

Each tiny model is the real `...ForConditionalGeneration` class of its family, with the family's own processor
class, at a size that trains on a laptop CPU, so every code path of pr1 (processor, chat template, generate,
forward) is the one used with the real checkpoints. The tokenizer is a byte-level BPE trained here with the
`tokenizers` library on pr1's own prompt/answer text and carries Qwen's special tokens, so the processors and
the template work unchanged. `python -m pr1.tiny FAMILY OUT_DIR` writes one with `save_pretrained`; load it
through the ordinary route, `model.path=OUT_DIR`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    PreTrainedModel,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2TokenizerFast,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
)

# pr1's family name -> (config class, model class, processor class, video processor class, vision patch size).
FAMILIES = {
    "qwen2vl": (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor, Qwen2VLVideoProcessor, 14),
    "qwen25vl": (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLVideoProcessor,
        14,
    ),
    "qwen3vl": (Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor, Qwen3VLVideoProcessor, 16),
}

# Qwen2-VL's special tokens, in Qwen's order (ids follow the learned vocabulary here).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2's pre-tokenizer regex: digits are split one by one, which keeps coordinates learnable.
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Qwen2-VL's chat template (system prompt, image placeholders, generation prompt), kept verbatim in spirit.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' or 'text' in content %}{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tokenizer_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: pr1's prompts, answer markup and common English words.

    The synthetic OCR vocabulary and the detection labels are in it (each word, with and without its leading
    space, repeated so that BPE merges it whole): reading a word is then one token to predict, not five.
    """
    from pr1.data.synthetic import SHAPES, WORDS
    from pr1.tasks.prompts import PROMPT_TEMPLATES

    words = [
        "the",
        "a",
        "an",
        "of",
        "in",
        "on",
        "at",
        "left",
        "right",
        "top",
        "bottom",
        "above",
        "below",
        "next",
        "to",
        "small",
        "large",
        "big",
        "tiny",
        "red",
        "green",
        "blue",
        "yellow",
        "purple",
        "orange",
        "black",
        "white",
        "gray",
        "cyan",
        "magenta",
        "brown",
        "pink",
        "circle",
        "square",
        "rectangle",
        "triangle",
        "ellipse",
        "star",
        "cross",
        "dot",
        "dots",
        "object",
        "objects",
        "text",
        "line",
        "word",
        "number",
        "count",
        "how",
        "many",
        "output",
        "all",
        "bounding",
        "box",
        "boxes",
        "coordinates",
        "names",
        "image",
        "picture",
        "please",
        "and",
        "or",
        "with",
        "without",
        "is",
        "are",
        "there",
        "what",
        "where",
        "which",
        "person",
        "car",
        "dog",
        "cat",
        "bus",
        "chair",
        "table",
        "bottle",
        "cup",
        "book",
        "label",
        "point",
        "points",
        "answer",
        "think",
        "reason",
        "first",
        "then",
    ]
    corpus = [" ".join(words)] * 4
    corpus += [f"{w} {w}" for w in (*WORDS, *SHAPES) for _ in range(4)]
    corpus += ["I see 3 objects: 1 ellipse, 2 rectangle.", "the image shows 2 words.", "is at the top."] * 4
    corpus += list(PROMPT_TEMPLATES.values())
    corpus += ["<think>", "</think>", "<answer>", "</answer>", "(0,0),(1000,1000)", "[10, 20, 30, 40]"]
    corpus += [f'{{"bbox_2d": [{i}, {i + 1}, {i + 2}, {i + 3}], "label": "x"}}' for i in range(10)]
    corpus += ["You are a helpful assistant.", "system", "user", "assistant"]
    corpus += ["ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz 0123456789 .,;:!?'\"()[]{}<>-_/"]
    return corpus


def build_tokenizer(vocab_size: int = 1024) -> Qwen2TokenizerFast:
    """Train a deterministic byte-level BPE with Qwen's special tokens and wrap it as a Qwen2 tokenizer."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    return Qwen2TokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        additional_special_tokens=SPECIAL_TOKENS[1:],
        model_max_length=4096,
        padding_side="left",
    )


def family_classes(family: str) -> tuple:
    """(config, model, processor, video processor, patch size) of a family; a clear error for a bad name."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; valid: {sorted(FAMILIES)}")
    return FAMILIES[family]


def build_processor(
    min_pixels: int = 56 * 56, max_pixels: int = 112 * 112, family: str = "qwen2vl"
) -> ProcessorMixin:
    """The family's stock processor around the tiny tokenizer (same classes the real checkpoints load)."""
    _, _, processor_cls, video_cls, patch = family_classes(family)
    image_processor = Qwen2VLImageProcessor(
        min_pixels=min_pixels, max_pixels=max_pixels, patch_size=patch, merge_size=2
    )
    return processor_cls(
        image_processor=image_processor,
        tokenizer=build_tokenizer(),
        video_processor=video_cls(patch_size=patch, merge_size=2),
        chat_template=CHAT_TEMPLATE,
    )


def mrope_section(head_dim: int) -> list[int]:
    """M-RoPE splits head_dim/2 rotary frequencies over (time, height, width), in Qwen's 2:3:3 proportion."""
    half = head_dim // 2
    return [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]


def vision_config(family: str, depth: int, width: int, num_heads: int, out_hidden: int, patch: int) -> dict:
    """The vision tower of a family at tiny size (the keys each family's config class reads)."""
    common = dict(depth=depth, num_heads=num_heads, patch_size=patch, spatial_merge_size=2)
    common["temporal_patch_size"] = 2
    if family == "qwen2vl":
        return dict(common, embed_dim=width, hidden_size=out_hidden, mlp_ratio=2)
    tower = dict(common, hidden_size=width, intermediate_size=width * 2, out_hidden_size=out_hidden)
    if family == "qwen25vl":
        # Window attention everywhere but the last block, as the real tower (windows of 112 px).
        return dict(tower, window_size=112, fullatt_block_indexes=[depth - 1])
    # Qwen3-VL: learned (interpolated) 2D position grid, and DeepStack features from a middle block.
    return dict(tower, num_position_embeddings=64, deepstack_visual_indexes=[depth // 2])


def build_model(
    processor: ProcessorMixin,
    hidden_size: int = 256,
    num_layers: int = 4,
    num_heads: int = 4,
    vision_depth: int = 4,
    vision_embed_dim: int = 128,
    seed: int = 0,
    family: str = "qwen2vl",
) -> PreTrainedModel:
    """A randomly initialised model of `family` whose token ids match `processor`'s tokenizer."""
    import torch

    config_cls, model_cls, _, _, patch = family_classes(family)
    tok = processor.tokenizer
    head_dim = hidden_size // num_heads
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section(head_dim)}
    if family == "qwen3vl":
        rope["mrope_interleaved"] = True
    text = dict(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=4096,
        rope_parameters=rope,
        bos_token_id=None,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.pad_token_id,
    )
    if family == "qwen3vl":
        text["head_dim"] = head_dim
    config = config_cls(
        text_config=text,
        vision_config=vision_config(family, vision_depth, vision_embed_dim, num_heads, hidden_size, patch),
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = model_cls(config)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = None
    return model


def build_tiny(out_dir: str | Path, seed: int = 0, family: str = "qwen2vl", **model_kwargs) -> Path:
    """Write a random tiny model + processor of `family` to `out_dir` (loadable with `from_pretrained`)."""
    out = Path(out_dir)
    processor = build_processor(family=family)
    model = build_model(processor, seed=seed, family=family, **model_kwargs)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    """`python -m pr1.tiny FAMILY OUT_DIR [--hidden-size N ...]`: a tiny random checkpoint (`model.path=`)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("family", choices=sorted(FAMILIES))
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--vision-depth", type=int, default=4)
    parser.add_argument("--vision-embed-dim", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = vars(parser.parse_args(argv))
    out = build_tiny(args.pop("out_dir"), family=args.pop("family"), **args)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Build the embedded tiny Qwen2-VL (model + processor) offline.

The tiny model is the real `Qwen2VLForConditionalGeneration` class at a size that trains on a laptop CPU, so
every code path of pr1 (processor, chat template, generate, forward) is the one used with Qwen2-VL-2B. Its
tokenizer is a byte-level BPE trained here with the `tokenizers` library on pr1's own prompt/answer text and
carries Qwen2-VL's special tokens, so the Qwen2-VL processor and template work unchanged.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    Qwen2TokenizerFast,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)

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
    """Text the tiny tokenizer is trained on: pr1's prompts, answer markup and common English words."""
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
    corpus += list(PROMPT_TEMPLATES.values())
    corpus += ["<think>", "</think>", "<answer>", "</answer>", "(0,0),(1000,1000)", "[10, 20, 30, 40]"]
    corpus += [f'{{"bbox_2d": [{i}, {i + 1}, {i + 2}, {i + 3}], "label": "x"}}' for i in range(10)]
    corpus += ["You are a helpful assistant.", "system", "user", "assistant"]
    corpus += ["ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz 0123456789 .,;:!?'\"()[]{}<>-_/"]
    return corpus


def build_tokenizer(vocab_size: int = 640) -> Qwen2TokenizerFast:
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


def build_processor(min_pixels: int = 56 * 56, max_pixels: int = 112 * 112) -> Qwen2VLProcessor:
    """The stock Qwen2-VL processor around the tiny tokenizer (same class the real checkpoints load)."""
    image_processor = Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    return Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=build_tokenizer(),
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )


def build_model(
    processor: Qwen2VLProcessor,
    hidden_size: int = 256,
    num_layers: int = 4,
    num_heads: int = 4,
    vision_depth: int = 4,
    vision_embed_dim: int = 128,
    seed: int = 0,
) -> Qwen2VLForConditionalGeneration:
    """A randomly initialised Qwen2-VL whose token ids match `processor`'s tokenizer."""
    import torch

    tok = processor.tokenizer
    head_dim = hidden_size // num_heads
    # M-RoPE splits head_dim/2 rotary frequencies over (time, height, width).
    half = head_dim // 2
    mrope = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=hidden_size,
            intermediate_size=hidden_size * 2,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=max(1, num_heads // 2),
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            bos_token_id=None,
            eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
            pad_token_id=tok.pad_token_id,
        ),
        vision_config=dict(
            depth=vision_depth,
            embed_dim=vision_embed_dim,
            hidden_size=hidden_size,
            num_heads=num_heads,
            mlp_ratio=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = None
    return model


def build_tiny(out_dir: str | Path, seed: int = 0, **model_kwargs) -> Path:
    """Write a random tiny model + processor to `out_dir` (loadable with `from_pretrained`)."""
    out = Path(out_dir)
    processor = build_processor()
    model = build_model(processor, seed=seed, **model_kwargs)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out

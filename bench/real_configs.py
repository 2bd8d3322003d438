"""The published architectures of the real Qwen-VL checkpoints pr1 has configs for, as offline data.

`real_config(name)` builds the transformers config object of each (no download; random-weight models at real
size come from `AutoModelForImageTextToText.from_config(...)`, for the GPU check). The numbers are those of
each checkpoint's config.json on the Hugging Face hub (`HUB_IDS`), architecture keys only: token ids,
dtypes and generation settings are left at the class defaults, which equal the published ones for the ids
pr1 reads (image/video/vision start/end tokens). Rotary settings use transformers 5's `rope_parameters`.
"""

from __future__ import annotations

import copy

from transformers import PretrainedConfig, Qwen2_5_VLConfig, Qwen2VLConfig, Qwen3VLConfig

HUB_IDS = {
    "qwen2vl_2b": "Qwen/Qwen2-VL-2B-Instruct",
    "qwen2vl_7b": "Qwen/Qwen2-VL-7B-Instruct",
    "qwen25vl_3b": "Qwen/Qwen2.5-VL-3B-Instruct",
    "qwen25vl_7b": "Qwen/Qwen2.5-VL-7B-Instruct",
    "qwen3vl_2b": "Qwen/Qwen3-VL-2B-Instruct",
    "qwen3vl_4b": "Qwen/Qwen3-VL-4B-Instruct",
    "qwen3vl_8b": "Qwen/Qwen3-VL-8B-Instruct",
}

_QWEN2_ROPE = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}
_QWEN3_ROPE = {
    "rope_type": "default",
    "rope_theta": 5000000.0,
    "mrope_section": [24, 20, 20],
    "mrope_interleaved": True,
}
# Qwen2-VL's vision tower is the same in both sizes but for its output width (the text hidden size).
_QWEN2_VISION = {
    "depth": 32,
    "embed_dim": 1280,
    "mlp_ratio": 4,
    "num_heads": 16,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
}
_QWEN25_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
}
_QWEN3_VISION_SMALL = {  # Qwen3-VL 2B and 4B
    "depth": 24,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_heads": 16,
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "num_position_embeddings": 2304,
    "deepstack_visual_indexes": [5, 11, 17],
}
_QWEN3_VISION_LARGE = {  # Qwen3-VL 8B
    **_QWEN3_VISION_SMALL,
    "depth": 27,
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "deepstack_visual_indexes": [8, 16, 24],
}

REAL_CONFIGS: dict[str, dict] = {
    "qwen2vl_2b": {
        "family": "qwen2vl",
        "tie_word_embeddings": True,
        "text_config": {
            "vocab_size": 151936,
            "hidden_size": 1536,
            "intermediate_size": 8960,
            "num_hidden_layers": 28,
            "num_attention_heads": 12,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            "rope_parameters": _QWEN2_ROPE,
        },
        "vision_config": {**_QWEN2_VISION, "hidden_size": 1536},
    },
    "qwen2vl_7b": {
        "family": "qwen2vl",
        "tie_word_embeddings": False,
        "text_config": {
            "vocab_size": 152064,
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            "rope_parameters": _QWEN2_ROPE,
        },
        "vision_config": {**_QWEN2_VISION, "hidden_size": 3584},
    },
    "qwen25vl_3b": {
        "family": "qwen25vl",
        "tie_word_embeddings": True,
        "text_config": {
            "vocab_size": 151936,
            "hidden_size": 2048,
            "intermediate_size": 11008,
            "num_hidden_layers": 36,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
            "max_position_embeddings": 128000,
            "rms_norm_eps": 1e-6,
            "rope_parameters": _QWEN2_ROPE,
        },
        "vision_config": {**_QWEN25_VISION, "out_hidden_size": 2048},
    },
    "qwen25vl_7b": {
        "family": "qwen25vl",
        "tie_word_embeddings": False,
        "text_config": {
            "vocab_size": 152064,
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "max_position_embeddings": 128000,
            "rms_norm_eps": 1e-6,
            "rope_parameters": _QWEN2_ROPE,
        },
        "vision_config": {**_QWEN25_VISION, "out_hidden_size": 3584},
    },
    "qwen3vl_2b": {
        "family": "qwen3vl",
        "tie_word_embeddings": True,
        "text_config": {
            "vocab_size": 151936,
            "hidden_size": 2048,
            "intermediate_size": 6144,
            "num_hidden_layers": 28,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "max_position_embeddings": 262144,
            "rms_norm_eps": 1e-6,
            "rope_parameters": _QWEN3_ROPE,
        },
        "vision_config": {**_QWEN3_VISION_SMALL, "out_hidden_size": 2048},
    },
    "qwen3vl_4b": {
        "family": "qwen3vl",
        "tie_word_embeddings": True,
        "text_config": {
            "vocab_size": 151936,
            "hidden_size": 2560,
            "intermediate_size": 9728,
            "num_hidden_layers": 36,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "max_position_embeddings": 262144,
            "rms_norm_eps": 1e-6,
            "rope_parameters": _QWEN3_ROPE,
        },
        "vision_config": {**_QWEN3_VISION_SMALL, "out_hidden_size": 2560},
    },
    "qwen3vl_8b": {
        "family": "qwen3vl",
        "tie_word_embeddings": False,
        "text_config": {
            "vocab_size": 151936,
            "hidden_size": 4096,
            "intermediate_size": 12288,
            "num_hidden_layers": 36,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "max_position_embeddings": 262144,
            "rms_norm_eps": 1e-6,
            "rope_parameters": _QWEN3_ROPE,
        },
        "vision_config": {**_QWEN3_VISION_LARGE, "out_hidden_size": 4096},
    },
}

CONFIG_CLASSES = {"qwen2vl": Qwen2VLConfig, "qwen25vl": Qwen2_5_VLConfig, "qwen3vl": Qwen3VLConfig}


def real_config(name: str, **text_overrides) -> PretrainedConfig:
    """The transformers config of a real architecture (offline); `text_overrides` change the text config
    (e.g. `num_hidden_layers=2` for a shallow check of the real widths)."""
    if name not in REAL_CONFIGS:
        raise ValueError(f"unknown real architecture {name!r}; valid: {sorted(REAL_CONFIGS)}")
    spec = copy.deepcopy(REAL_CONFIGS[name])
    config_cls = CONFIG_CLASSES[spec.pop("family")]
    tie = spec.pop("tie_word_embeddings")
    text = {**spec["text_config"], "tie_word_embeddings": tie, **text_overrides}
    return config_cls(text_config=text, vision_config=spec["vision_config"], tie_word_embeddings=tie)


def with_token_ids(config: PretrainedConfig, tokenizer) -> PretrainedConfig:
    """`config` with the special-token ids of `tokenizer` (e.g. pr1's tiny one, whose ids are small), so a
    random-weight model at real size runs with a tokenizer available offline: the vocabulary stays the
    published size (embedding and LM head at real cost); only the ids the model and processor look up move."""
    ids = tokenizer.convert_tokens_to_ids
    config.image_token_id = ids("<|image_pad|>")
    config.video_token_id = ids("<|video_pad|>")
    config.vision_start_token_id = ids("<|vision_start|>")
    config.vision_end_token_id = ids("<|vision_end|>")
    text = config.text_config
    text.eos_token_id, text.pad_token_id, text.bos_token_id = ids("<|im_end|>"), tokenizer.pad_token_id, None
    return config

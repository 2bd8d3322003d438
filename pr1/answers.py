"""Building blocks of answer texts: Qwen's native box/ref markup and the thinking wrapper.

Each task renders its ground truth with these (pr1/tasks/<kind>.py); rendered coordinates are the integers
of the model's frame (`pr1.coords.quantise`), so a rendered answer scores exactly 1 with the matching reward.
"""

from __future__ import annotations

from collections.abc import Sequence


def ref(label: str | None) -> str:
    """Qwen2-VL's object reference part, `<|object_ref_start|>LABEL<|object_ref_end|>` ("" for no label)."""
    return "" if label is None else f"<|object_ref_start|>{label}<|object_ref_end|>"


def native(xy: Sequence[int]) -> str:
    """A box `(x1,y1),(x2,y2)` or point `(x,y)` in Qwen's native `<|box_start|>…<|box_end|>` markup."""
    pairs = ",".join(f"({xy[i]},{xy[i + 1]})" for i in range(0, len(xy), 2))
    return f"<|box_start|>{pairs}<|box_end|>"


def wrap_answer(answer: str, thinking: bool, reasoning: str = "") -> str:
    """The full assistant text for an answer, as the format reward expects it."""
    if thinking:
        return f"<think>{reasoning}</think><answer>{answer}</answer>"
    return answer

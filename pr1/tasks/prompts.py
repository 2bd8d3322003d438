"""Prompt templates of Perception-R1 (reference code) and the thinking instruction.

The templates are the reference implementation's, one per task kind of the paper (a task class takes its own;
a new task may simply write its template in its class); `{question}` is the referring expression or class
name. With thinking on, the model is asked to reason in <think> and answer in <answer>, as in R1-style
training. `pr1.tiny` trains the tiny model's tokenizer on these templates.
"""

from __future__ import annotations

PROMPT_TEMPLATES: dict[str, str] = {
    "grounding": "Output the bounding box of the {question} in the image.",
    "counting": "Output all the bounding boxes of the {question}",
    "ocr": "Output the text in the image.",
    "detection": "Please output bbox coordinates and names of {question}.",
}

THINKING_SUFFIX = (
    " First think about the reasoning process in <think> </think> tags, "
    "then give the final answer in <answer> </answer> tags."
)


def with_thinking(text: str, thinking: bool) -> str:
    """A task prompt, with the thinking instruction appended when thinking is on."""
    return text + THINKING_SUFFIX if thinking else text

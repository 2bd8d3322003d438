"""Prompt templates of Perception-R1 (reference code) and the thinking/answer wrappers.

The templates are the reference implementation's; `{question}` is the referring expression or class name.
With thinking on, the model is asked to reason in <think> and answer in <answer>, as in R1-style training.
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


def build_prompt(task: str, question: str, thinking: bool) -> str:
    """The user text for one sample; raises with the valid task names on a typo."""
    if task not in PROMPT_TEMPLATES:
        raise KeyError(f"unknown task {task!r}; valid: {sorted(PROMPT_TEMPLATES)}")
    text = PROMPT_TEMPLATES[task].format(question=question)
    return text + THINKING_SUFFIX if thinking else text


def wrap_answer(answer: str, thinking: bool, reasoning: str = "") -> str:
    """The full assistant text for an answer, as the format reward expects it."""
    if thinking:
        return f"<think>{reasoning}</think><answer>{answer}</answer>"
    return answer

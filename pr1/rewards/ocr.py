"""OCR reward: one minus the normalised Levenshtein distance (rapidfuzz)."""

from __future__ import annotations

from typing import Any

from rapidfuzz.distance import Levenshtein

from pr1.parsing import Answer
from pr1.rewards.format import well_formed
from pr1.rewards.registry import register


@register("edit")
def edit_reward(answer: Answer, solution: Any, image_size: tuple[float, float]) -> dict[str, float]:
    """answer = 1 - Levenshtein(pred, gt) / max(len(pred), len(gt)) (the paper's eval normalisation).

    pred is the answer text stripped of surrounding whitespace (empty when there is no answer, e.g. text
    outside the <answer> tags); both empty scores 1. Range [0, 1].
    """
    distance = Levenshtein.normalized_distance(answer.text or "", str(solution).strip())
    return {
        "format": float(well_formed("ocr", answer)),
        "distance": float(distance),
        "answer": 1.0 - distance,
        "total": 1.0 - distance,
    }

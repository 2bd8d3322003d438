"""OCR rewards: 1 - normalised Levenshtein distance (rapidfuzz; the paper's), or word F1 (the task metric)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rapidfuzz.distance import Levenshtein

from pr1.parsing import Answer
from pr1.rewards.format import well_formed
from pr1.rewards.registry import register


def word_prf(pred: str, gt: str) -> tuple[float, float, float]:
    """Precision, recall, F1 of whitespace-separated words as multisets (a repeated word is paid once per
    occurrence in the ground truth, so repetition cannot raise recall for free). Case-sensitive; both empty
    scores 1, one empty scores 0."""
    p, g = Counter(pred.split()), Counter(gt.split())
    n_p, n_g = sum(p.values()), sum(g.values())
    if n_p == 0 or n_g == 0:
        value = float(n_p == n_g)
        return value, value, value
    common = sum((p & g).values())
    precision, recall = common / n_p, common / n_g
    f1 = 2 * precision * recall / (precision + recall) if common else 0.0
    return precision, recall, f1


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


@register("word_f1")
def word_f1_reward(answer: Answer, solution: Any, image_size: tuple[float, float]) -> dict[str, float]:
    """answer = word F1 of the stripped answer text against the truth (`word_prf`, the OCR task metric).

    A word is paid only when read whole, where the edit reward pays a wrong word for the letters it shares
    with the right one. Range [0, 1]; no answer scores 0 (both empty: 1).
    """
    precision, recall, f1 = word_prf((answer.text or "").strip(), str(solution).strip())
    return {
        "format": float(well_formed("ocr", answer)),
        "precision": precision,
        "recall": recall,
        "answer": f1,
        "total": f1,
    }

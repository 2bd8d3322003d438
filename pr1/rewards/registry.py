"""Registration of rewards: one per-sample scorer per reward, exposed with TRL's reward signature.

A scorer is `score(answer, solution, image_size, *, <options>) -> dict[str, float]` with a "total" key; the
`register` decorator wraps it into `fn(completions, **columns) -> list[float]` (the TRL signature) and keeps
the scorer for `explain`, so the reward and its logged components come from the same code.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import typing
from collections.abc import Callable, Sequence
from typing import Any

from pr1.coords import check_frame
from pr1.parsing import completion_text, split_answer
from pr1.rewards.dynamic import check_schedule

Scorer = Callable[..., dict[str, float]]
RewardFn = Callable[..., list[float]]

REGISTRY: dict[str, RewardFn] = {}
_SCORERS: dict[str, Scorer] = {}


def _options(scorer: Scorer) -> dict[str, inspect.Parameter]:
    params = inspect.signature(scorer).parameters.values()
    return {p.name: p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _image_size(size: Any) -> tuple[float, float]:
    width, height = (float(v) for v in size)
    if not (width > 0 and height > 0):
        raise ValueError(f"image_size must be a positive [width, height], got {size!r}")
    return width, height


def _score_all(
    name: str, completions: Sequence[Any], solution: Sequence[Any], image_size: Sequence[Any], columns: dict
) -> list[dict[str, float]]:
    """Score every completion; options come from `columns` (bound by build or passed as columns)."""
    scorer = _SCORERS[name]
    valid = _options(scorer)
    options = {k: v for k, v in columns.items() if k in valid}
    thinking = bool(columns.get("thinking", False))
    if not len(completions) == len(solution) == len(image_size):
        raise ValueError(
            f"{name}: {len(completions)} completions, {len(solution)} solutions, {len(image_size)} sizes"
        )
    return [
        scorer(split_answer(completion_text(c), thinking), sol, _image_size(size), **options)
        for c, sol, size in zip(completions, solution, image_size, strict=True)
    ]


def register(name: str) -> Callable[[Scorer], Scorer]:
    """Register `scorer` as reward `name` (its keyword-only parameters are the reward's options)."""

    def decorate(scorer: Scorer) -> Scorer:
        def reward(
            completions: Sequence[Any], *, solution: Sequence[Any], image_size: Sequence[Any], **columns: Any
        ) -> list[float]:
            return [c["total"] for c in _score_all(name, completions, solution, image_size, columns)]

        kw = inspect.Parameter.KEYWORD_ONLY
        reward.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter("completions", inspect.Parameter.POSITIONAL_OR_KEYWORD),
                inspect.Parameter("solution", kw),
                inspect.Parameter("image_size", kw),
                inspect.Parameter("thinking", kw, default=False, annotation=bool),
                *_options(scorer).values(),
                inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD),
            ]
        )
        reward.__name__ = reward.__qualname__ = name
        reward.__doc__ = scorer.__doc__
        reward.__module__ = scorer.__module__
        REGISTRY[name] = reward
        _SCORERS[name] = scorer
        return scorer

    return decorate


def _check_value(name: str, key: str, hint: Any, value: Any) -> None:
    """Refuse a bad option value when the reward is built, not in the middle of training."""
    if key == "frame":
        check_frame(value)
    elif key == "iou_schedule":
        try:
            check_schedule(value)
        except ValueError as err:
            raise ValueError(f"reward {name!r}: {err}") from None
    elif hint is int and not (isinstance(value, numbers.Integral) and not isinstance(value, bool)):
        raise ValueError(f"reward {name!r}: {key} must be an integer, got {value!r}")
    elif typing.get_origin(hint) is typing.Literal and value not in typing.get_args(hint):
        raise ValueError(f"reward {name!r}: {key}={value!r} is not one of {typing.get_args(hint)}")
    elif hint is bool and not isinstance(value, bool):
        raise ValueError(f"reward {name!r}: {key} must be a bool, got {value!r}")
    elif hint is float and not (isinstance(value, numbers.Real) and math.isfinite(value)):
        raise ValueError(f"reward {name!r}: {key} must be a finite number, got {value!r}")


def options_of(name: str) -> set[str]:
    """The option names reward `name` accepts: its scorer's keyword-only parameters, and `thinking` (every
    reward reads the answer through the thinking tags). A task binds run-wide options only to these."""
    if name not in REGISTRY:
        raise KeyError(f"unknown reward {name!r}; valid rewards: {sorted(REGISTRY)}")
    return {"thinking", *_options(_SCORERS[name])}


def build(name: str, **options: Any) -> RewardFn:
    """`functools.partial(REGISTRY[name], **options)`, refusing unknown rewards, options and option values."""
    if name not in REGISTRY:
        raise KeyError(f"unknown reward {name!r}; valid rewards: {sorted(REGISTRY)}")
    scorer = _SCORERS[name]
    valid = options_of(name)
    unknown = sorted(set(options) - valid)
    if unknown:
        raise TypeError(f"reward {name!r} has no option(s) {unknown}; valid options: {sorted(valid)}")
    hints = {"thinking": bool, **typing.get_type_hints(scorer)}
    for key, value in options.items():
        _check_value(name, key, hints.get(key), value)
    fn = functools.partial(REGISTRY[name], **options)
    fn.__name__ = name  # type: ignore[attr-defined]  # TRL logs rewards by __name__
    return fn


def explain(
    name: str,
    completions: Sequence[Any],
    *,
    solution: Sequence[Any],
    image_size: Sequence[Any],
    **columns: Any,
) -> list[dict[str, float]]:
    """Per-completion components of reward `name` (always with "total", the value the reward returns)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown reward {name!r}; valid rewards: {sorted(REGISTRY)}")
    return _score_all(name, completions, solution, image_size, columns)

"""Turn model completions into answers, boxes and points with bounded regexes (never eval/exec).

Model text is untrusted: every function here accepts any string and returns a value, and every regex is
bounded (fixed-width number tokens, capped spans, no nested quantifiers) so parsing stays linear in the text.
Accepted answer formats:
- Qwen2-VL native: `<|object_ref_start|>cat<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>`; a box
  without its own ref inherits the previous ref's label; `<|box_start|>(x,y)<|box_end|>` is a point.
- JSON-ish objects (Qwen2.5-VL): `{"bbox_2d": [x1,y1,x2,y2], "label": "cat"}` (also keys bbox/box/point_2d/
  point, single quotes), anywhere in the text, e.g. inside a ```json fenced list; truncated lists keep their
  complete objects.
- Plain lists: `[x1,y1,x2,y2]`, lists of them, `[x,y]` / `(x,y)` points, and `(x1,y1),(x2,y2)` boxes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

MAX_CHARS = 200_000  # longer completions have no answer (a 300-box JSON answer is ~15k characters)
MAX_ITEMS = 1_000  # items past this are dropped and the answer is not clean
END_TOKENS = ("<|im_end|>", "<|endoftext|>")  # left in the text when decoding keeps special tokens

_NUM = r"[-+]?(?:\d{1,20}(?:\.\d{0,20})?|\.\d{1,20})(?:[eE][-+]?\d{1,4})?"
_N = rf"\s*{_NUM}\s*"
_NUM_RE = re.compile(_NUM)
_NUMS_RE = re.compile(rf"{_N}(?:,{_N})*")
_NATIVE = (
    r"(?:<\|object_ref_start\|>(?P<ref>[^<>]{0,300})<\|object_ref_end\|>\s*)?"
    r"<\|box_start\|>(?P<native>[^<>]{0,300})<\|box_end\|>"
)
_OBJECT = r"\{(?P<obj>[^{}]{0,2000})\}"
_PAIR = rf"\((?P<pair>{_N},{_N}\)\s*,\s*\({_N},{_N})\)"
_GROUP = rf"[\[(](?P<group>{_N},{_N}(?:,{_N},{_N})?)[\])]"
# With prefer="box", "(x1,y1),(x2,y2)" is one box; with prefer="point", two points.
_ITEM_RE = {
    "box": re.compile(f"{_NATIVE}|{_OBJECT}|{_PAIR}|{_GROUP}"),
    "point": re.compile(f"{_NATIVE}|{_OBJECT}|{_GROUP}"),
}
_COORD_KEY_RE = re.compile(
    r"[\"'](?:bbox_2d|bbox|box|point_2d|point)[\"']\s*:\s*\[(?P<nums>[^\[\]]{0,300})\]"
)
_LABEL_RE = re.compile(
    r"[\"']label[\"']\s*:\s*(?:\"(?P<dq>(?:[^\"\\]|\\.){0,300})\"|'(?P<sq>[^'\\]{0,300})')"
)
_FENCE_RE = re.compile(r"```(?:json)?")
_SEPARATORS_RE = re.compile(r"[\s,;\[\]]*")
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


class Answer(NamedTuple):
    """The answer part of a completion. text is None when there is nothing to score."""

    text: str | None
    tags_ok: bool  # thinking on: exactly <think>…</think><answer>…</answer>; off: no such tags at all


class Item(NamedTuple):
    """One parsed box (4 coordinates) or point (2), in the answer's coordinate frame."""

    coords: tuple[float, ...]
    label: str | None


class Parsed(NamedTuple):
    items: list[Item]
    clean: bool  # the answer is only well-formed items (finite coordinates) and separators


def completion_text(completion: Any) -> str:
    """The assistant text of one completion as TRL passes it: a str, or a list of chat messages."""
    if isinstance(completion, str):
        text = completion
    elif isinstance(completion, Mapping):
        text = _content_text(completion.get("content"))
    elif isinstance(completion, Sequence):
        text = "".join(
            _content_text(m.get("content"))
            for m in completion
            if isinstance(m, Mapping) and m.get("role", "assistant") == "assistant"
        )
    else:
        text = ""
    text = text.rstrip()
    while text.endswith(END_TOKENS):
        text = text.removesuffix("<|im_end|>").removesuffix("<|endoftext|>").rstrip()
    return text


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):  # multimodal content parts: [{"type": "text", "text": ...}]
        return "".join(
            p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        )
    return ""


def _has_tag(text: str) -> bool:
    return any(tag in text for tag in _TAGS)


def split_answer(text: str, thinking: bool) -> Answer:
    """The answer: with thinking, the content of <answer> after a <think> block; else the whole text.

    A malformed thinking completion still yields the content of its last complete <answer> block (so the
    answer reward and the format reward stay separate signals), but text outside <answer> is never scored.
    """
    if len(text) > MAX_CHARS:
        return Answer(None, False)
    if not thinking:
        return Answer(text.strip(), not _has_tag(text))
    body = text.strip()
    think_end = body.find("</think>")
    if body.startswith("<think>") and think_end >= 0:
        rest = body[think_end + len("</think>") :].lstrip()
        inner = rest[len("<answer>") : -len("</answer>")]
        if (
            rest.startswith("<answer>")
            and rest.endswith("</answer>")
            and len(rest) >= len("<answer></answer>")
            and not _has_tag(body[len("<think>") : think_end])
            and not _has_tag(inner)
        ):
            return Answer(inner.strip(), True)
    end = body.rfind("</answer>")
    start = body.rfind("<answer>", 0, max(end, 0))
    if end < 0 or start < 0:
        return Answer(None, False)
    return Answer(body[start + len("<answer>") : end].strip(), False)


def _numbers(text: str) -> tuple[float, ...] | None:
    """The comma-separated numbers of text, or None if text is anything else."""
    if not _NUMS_RE.fullmatch(text):
        return None
    return tuple(float(s) for s in _NUM_RE.findall(text))


def _label(obj: str) -> str | None:
    m = _LABEL_RE.search(obj)
    if m is None:
        return None
    if m.group("sq") is not None:
        return m.group("sq")
    label = m.group("dq")
    if "\\" not in label:  # the common case: nothing to unescape
        return label
    try:
        return json.loads(f'"{label}"')
    except json.JSONDecodeError:
        return label


def parse_items(text: str | None, prefer: Literal["box", "point"] = "box") -> Parsed:
    """All boxes/points of an answer, in order, with labels where the format carries them."""
    if not text:
        return Parsed([], False)
    items: list[Item] = []
    clean = True
    leftover: list[str] = []
    pos = 0
    ref: str | None = None
    for m in _ITEM_RE[prefer].finditer(text):
        if len(items) >= MAX_ITEMS:
            clean = False
            break
        leftover.append(text[pos : m.start()])
        pos = m.end()
        g = m.groupdict()
        label: str | None = None
        if g["native"] is not None:
            if g["ref"] is not None:
                ref = g["ref"].strip()
            coords, label = _numbers(g["native"].replace("(", "").replace(")", "").strip("[]")), ref
        elif g["obj"] is not None:
            key = _COORD_KEY_RE.search(g["obj"])
            coords = _numbers(key.group("nums")) if key else None
            label = _label(g["obj"])
        else:
            coords = _numbers((g.get("pair") or g["group"]).replace("(", "").replace(")", ""))
        if coords is None or len(coords) not in (2, 4):
            clean = False
            continue
        clean = clean and all(math.isfinite(c) for c in coords)
        items.append(Item(coords, label))
    leftover.append(text[pos:] if clean else "")
    clean = (
        clean and bool(items) and _SEPARATORS_RE.fullmatch(_FENCE_RE.sub("", "".join(leftover))) is not None
    )
    return Parsed(items, clean)

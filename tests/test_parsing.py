"""Parsing of completions: formats accepted, thinking split, and robustness to arbitrary text."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from pr1.parsing import MAX_CHARS, MAX_ITEMS, Answer, completion_text, parse_items, split_answer

NATIVE = "<|object_ref_start|>the dog<|object_ref_end|><|box_start|>(10,20),(30,40)<|box_end|>"


def test_completion_text_accepts_trl_shapes():
    assert completion_text("abc") == "abc"
    assert completion_text([{"role": "assistant", "content": "abc"}]) == "abc"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "abc"}]}]) == "abc"
    assert completion_text({"role": "assistant", "content": "abc"}) == "abc"
    assert completion_text("abc<|im_end|><|endoftext|>") == "abc"
    assert completion_text(None) == completion_text(42) == completion_text([{"content": None}]) == ""


def test_split_answer_without_thinking_is_whole_text():
    assert split_answer("  [1,2,3,4] ", thinking=False) == Answer("[1,2,3,4]", True)
    assert split_answer("<answer>[1,2,3,4]</answer>", thinking=False).tags_ok is False


def test_split_answer_with_thinking():
    assert split_answer("<think>hm</think> <answer> x </answer>", True) == Answer("x", True)
    assert split_answer("<think>a<think>b</think><answer>x</answer>", True).tags_ok is False  # nested
    assert split_answer("<think>a</think><answer>x<answer>y</answer>", True) == Answer("y", False)
    assert split_answer("<answer>x</answer>", True) == Answer("x", False)  # lenient answer, bad format
    assert split_answer("<think>a</think>[1,2,3,4]", True) == Answer(None, False)  # outside the tags
    assert split_answer("<think>a</think><answer>x</answer> trailing", True) == Answer("x", False)
    assert split_answer("<think>a</think><answer>x", True) == Answer(None, False)  # truncated
    assert split_answer("x" * (MAX_CHARS + 1), False) == Answer(None, False)


def test_parse_native_box_with_label_and_inheritance():
    parsed = parse_items(NATIVE + "<|box_start|>(1,2),(3,4)<|box_end|>")
    assert parsed.clean
    assert [it.coords for it in parsed.items] == [(10, 20, 30, 40), (1, 2, 3, 4)]
    assert [it.label for it in parsed.items] == ["the dog", "the dog"]


def test_parse_plain_lists_and_points():
    assert [it.coords for it in parse_items("[[1, 2, 3, 4], [5,6,7,8]]").items] == [
        (1, 2, 3, 4),
        (5, 6, 7, 8),
    ]
    assert parse_items("[1.5,2,3e1,4]").items[0].coords == (1.5, 2, 30, 4)
    assert [it.coords for it in parse_items("(1,2),(3,4)", "box").items] == [(1, 2, 3, 4)]
    assert [it.coords for it in parse_items("(1,2),(3,4)", "point").items] == [(1, 2), (3, 4)]
    assert parse_items("<|box_start|>(5,6)<|box_end|>", "point").items[0].coords == (5, 6)


def test_parse_json_detection():
    text = (
        "```json\n[{\"bbox_2d\": [1, 2, 3, 4], \"label\": \"cat\"}, {'bbox': [5,6,7,8], 'label': 'dog'}]\n```"
    )
    parsed = parse_items(text)
    assert parsed.clean
    assert [(it.coords, it.label) for it in parsed.items] == [((1, 2, 3, 4), "cat"), ((5, 6, 7, 8), "dog")]
    assert parse_items('[{"label": "\\u00e9", "bbox_2d": [1,2,3,4]}]').items[0].label == "é"


def test_truncated_json_keeps_complete_objects():
    parsed = parse_items('[{"bbox_2d": [1,2,3,4], "label": "a"}, {"bbox_2d": [5,6,')
    assert [it.coords for it in parsed.items] == [(1, 2, 3, 4)]
    assert not parsed.clean


def test_clean_flag():
    assert not parse_items("The box is [1,2,3,4].").clean
    assert not parse_items("").clean and not parse_items(None).clean
    assert not parse_items("[1,2,3]").clean
    assert not parse_items("[1e999,2,3,4]").clean  # inf
    assert not parse_items("[" + "9" * 30 + ",1,2,3]").clean  # too many digits: not a number token
    assert not parse_items("[1,2,3,4]" * (MAX_ITEMS + 1)).clean
    assert len(parse_items("[1,2,3,4]" * (MAX_ITEMS + 1)).items) == MAX_ITEMS


_TOKEN_TEXT = (
    "<think> </think> <answer> </answer> <|box_start|> <|box_end|> <|object_ref_start|> <|object_ref_end|> "
    '[ ] ( ) { } , "bbox_2d": "label": " 1 -3.5 1e308 nan inf 999999999999 é'
)
TOKENS = st.sampled_from([*_TOKEN_TEXT.split(), " ", "\n", "\x00"])
TEXT = st.one_of(st.text(max_size=300), st.lists(TOKENS, max_size=80).map("".join))


@settings(max_examples=300, deadline=None)
@given(TEXT, st.booleans(), st.sampled_from(["box", "point"]))
def test_arbitrary_text_never_raises(text, thinking, prefer):
    answer = split_answer(completion_text(text), thinking)
    parsed = parse_items(answer.text, prefer)
    assert len(parsed.items) <= MAX_ITEMS
    for item in parsed.items:
        assert len(item.coords) in (2, 4)
        assert not parsed.clean or all(math.isfinite(c) for c in item.coords)

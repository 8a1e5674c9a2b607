"""Chat template rendering (byte for byte) and reasoning/answer splitting."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemocore.chat import ReasoningParser, apply_chat_template, split_reasoning

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4", "reasoning_content": "Add them."},
    {"role": "user", "content": "And 3+3?"},
]


def test_reasoning_on_opens_a_think_block():
    assert apply_chat_template(CONVERSATION, reasoning="on") == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n<think></think>4<|im_end|>\n"
        "<|im_start|>user\nAnd 3+3?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n"
    )


def test_reasoning_off_closes_an_empty_think_block():
    assert apply_chat_template(CONVERSATION, reasoning="off") == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n<think></think>4<|im_end|>\n"
        "<|im_start|>user\nAnd 3+3?<|im_end|>\n"
        "<|im_start|>assistant\n<think></think>"
    )


def test_history_reasoning_kept_on_request_and_no_generation_prompt():
    out = apply_chat_template(
        CONVERSATION[:3], add_generation_prompt=False, keep_history_reasoning=True
    )
    assert out == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\nAdd them.\n</think>\n4<|im_end|>\n"
    )


def test_final_assistant_turn_keeps_reasoning_when_not_prompting():
    # Training-style rendering: the last assistant turn is the target and keeps its trace.
    out = apply_chat_template(CONVERSATION[1:3], add_generation_prompt=False)
    assert out == (
        "<|im_start|>system\n<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\nAdd them.\n</think>\n4<|im_end|>\n"
    )


def test_think_flags_switch_the_mode_and_leave_the_system_prompt():
    messages = [
        {"role": "system", "content": "Be brief. /no_think"},
        {"role": "user", "content": "Hi"},
    ]
    assert apply_chat_template(messages) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n<think></think>"
    )
    messages.append({"role": "assistant", "content": "Hello."})
    messages.append({"role": "user", "content": "Explain gravity /think"})
    assert apply_chat_template(messages).endswith(
        "<|im_start|>user\nExplain gravity /think<|im_end|>\n<|im_start|>assistant\n<think>\n"
    )
    # An explicit mode wins over the flags.
    assert apply_chat_template(messages, reasoning="off").endswith("assistant\n<think></think>")


def test_tool_results_share_one_user_turn():
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": '<tool_call>{"name": "w"}</tool_call>'},
        {"role": "tool", "content": '{"t": 20}'},
        {"role": "tool", "content": '{"t": 21}'},
    ]
    assert apply_chat_template(messages, reasoning="on") == (
        "<|im_start|>system\n<|im_end|>\n"
        "<|im_start|>user\nWeather?<|im_end|>\n"
        '<|im_start|>assistant\n<think></think><tool_call>{"name": "w"}</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n"
        '{"t": 20}\n</tool_response>\n<tool_response>\n{"t": 21}\n</tool_response><|im_end|>\n'
        "<|im_start|>assistant\n<think>\n"
    )


def test_assistant_content_with_inline_think_is_split():
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "<think>\nhmm\n</think>\nA"},
    ]
    assert apply_chat_template(messages, add_generation_prompt=False).endswith(
        "<|im_start|>assistant\n<think>\nhmm\n</think>\nA<|im_end|>\n"
    )


@pytest.mark.parametrize(
    ("messages", "kwargs", "error"),
    [
        ([{"role": "robot", "content": "x"}], {}, "messages\\[0\\].role"),
        ([{"role": "user", "content": "x"}, {"role": "system", "content": "s"}], {}, "first"),
        ([{"role": "user", "content": "x"}], {"reasoning": "maybe"}, "reasoning"),
    ],
)
def test_bad_messages_raise(messages, kwargs, error):
    with pytest.raises(ValueError, match=error):
        apply_chat_template(messages, **kwargs)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            "<think>\nLet me think.\n</think>\n\nThe answer is 4.",
            ("Let me think.", "The answer is 4."),
        ),
        ("Let me think.\n</think>\nThe answer is 4.", ("Let me think.", "The answer is 4.")),
        ("The answer is 4.", ("", "The answer is 4.")),
        ("<think>\nstill thinking", ("still thinking", "")),
        ("<think></think>Direct.", ("", "Direct.")),
        ("", ("", "")),
    ],
)
def test_split_reasoning(reply, expected):
    assert split_reasoning(reply) == expected


def _stream(reply: str, cuts: list[int], opened: bool) -> tuple[str, str]:
    parser = ReasoningParser(prompt_opened_think=opened)
    reasoning, content = [], []
    points = sorted({c % (len(reply) + 1) for c in cuts} | {0, len(reply)})
    for a, b in zip(points, points[1:]):
        r, c = parser.feed(reply[a:b])
        reasoning.append(r)
        content.append(c)
    r, c = parser.finish()
    return "".join([*reasoning, r]), "".join([*content, c])


reply_strategy = st.lists(
    st.sampled_from(["<think>", "</think>", "\n", "\n\n", " ", "a", "b c", "<", "</", "think>"])
).map("".join)


@settings(max_examples=400, deadline=None)
@given(reply=reply_strategy, cuts=st.lists(st.integers(0, 200), max_size=8), opened=st.booleans())
def test_streaming_parser_agrees_with_split_whatever_the_cuts(reply, cuts, opened):
    whole = ("<think>" + reply) if opened else reply
    assert _stream(reply, cuts, opened) == split_reasoning(whole)

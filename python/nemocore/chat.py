"""Chat prompts with reasoning on/off, and splitting replies into reasoning and answer.

The format is Nemotron 3's (ChatML turns, spec ``decoding.md`` section 5):

- every conversation opens with a system turn, empty if no system message is given;
- ``user`` and ``system`` turns are ``<|im_start|>{role}\\n{content}<|im_end|>\\n``;
- ``tool`` results are wrapped in ``<tool_response>`` tags inside a ``user`` turn (consecutive
  results share one turn);
- an assistant turn is ``<|im_start|>assistant\\n<think>{reasoning}</think>{content}<|im_end|>\\n``
  where the think block is ``<think>\\n{reasoning}\\n</think>\\n`` when the reasoning is kept and
  an empty ``<think></think>`` otherwise; earlier turns' reasoning is dropped unless
  ``keep_history_reasoning`` (Nemotron 3 makes this an option, default: drop);
- the generation prompt opens the assistant turn with ``<think>\\n`` when reasoning is on, and
  with the closed, empty ``<think></think>`` when it is off, so the model starts with the answer.

The mode comes from ``reasoning="on"|"off"``; left as ``None`` it follows the last ``/think``
or ``/no_think`` flag in a system or user message (Nemotron Nano 2's switch), default on. The
flags are removed from system messages when rendered.

Verify against the shipped Jinja template before serving a checkpoint: these strings are
hand-written from the model documentation (no template is bundled here).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["ReasoningParser", "apply_chat_template", "split_reasoning"]

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
_ROLES = ("system", "user", "assistant", "tool")
_FLAG = re.compile(r"/(no_)?think\b")


def _turn(role: str, content: str) -> str:
    return f"<|im_start|>{role}\n{content}<|im_end|>\n"


def _mode(messages: Sequence[Mapping[str, str]], reasoning: str | None) -> bool:
    if reasoning is not None:
        if reasoning not in ("on", "off"):
            raise ValueError(f"reasoning: expected 'on', 'off' or None, got {reasoning!r}")
        return reasoning == "on"
    enabled = True
    for message in messages:
        if message["role"] in ("system", "user"):
            for flag in _FLAG.finditer(message["content"]):
                enabled = flag.group(1) is None
    return enabled


def _check(messages: Sequence[Mapping[str, str]]) -> None:
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in _ROLES:
            raise ValueError(f"messages[{i}].role: expected one of {_ROLES}, got {role!r}")
        if not isinstance(message.get("content", ""), str):
            raise TypeError(f"messages[{i}].content: expected str")
        if role == "system" and i != 0:
            raise ValueError(f"messages[{i}]: a system message must come first")


def _assistant(message: Mapping[str, str], keep_reasoning: bool) -> str:
    content = message.get("content", "")
    reasoning = message.get("reasoning_content")
    if reasoning is None and THINK_CLOSE in content:
        reasoning, content = split_reasoning(content)
    if keep_reasoning and reasoning:
        block = f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n"
    else:
        block = f"{THINK_OPEN}{THINK_CLOSE}"
    return _turn("assistant", block + content)


def apply_chat_template(
    messages: Sequence[Mapping[str, str]],
    add_generation_prompt: bool = True,
    reasoning: str | None = None,
    keep_history_reasoning: bool = False,
) -> str:
    """Renders ``messages`` (dicts with ``role`` and ``content``; assistant messages may carry
    ``reasoning_content``) as a Nemotron 3 prompt. See the module docstring for the format."""
    _check(messages)
    enabled = _mode(messages, reasoning)
    parts: list[str] = []
    rest = list(messages)
    system = ""
    if rest and rest[0]["role"] == "system":
        system = _FLAG.sub("", rest.pop(0).get("content", "")).strip()
    parts.append(_turn("system", system))
    last_assistant = max((i for i, m in enumerate(rest) if m["role"] == "assistant"), default=-1)
    tool_results: list[str] = []
    for i, message in enumerate(rest):
        role, content = message["role"], message.get("content", "")
        if role == "tool":
            tool_results.append(f"<tool_response>\n{content}\n</tool_response>")
            if i + 1 == len(rest) or rest[i + 1]["role"] != "tool":
                parts.append(_turn("user", "\n".join(tool_results)))
                tool_results = []
        elif role == "assistant":
            keep = keep_history_reasoning or (i == last_assistant and not add_generation_prompt)
            parts.append(_assistant(message, keep))
        else:
            parts.append(_turn(role, content))
    if add_generation_prompt:
        opening = f"{THINK_OPEN}\n" if enabled else f"{THINK_OPEN}{THINK_CLOSE}"
        parts.append(f"<|im_start|>assistant\n{opening}")
    return "".join(parts)


def split_reasoning(reply: str) -> tuple[str, str]:
    """``(reasoning, answer)`` of a generated reply.

    The reasoning is what comes before ``</think>``, less an opening ``<think>`` (which may be
    missing: some templates put it in the prompt). A reply without ``</think>`` is all answer,
    unless it opens with ``<think>`` (reasoning cut short): then it is all reasoning. Newlines
    next to the tags belong to neither part.
    """
    head, sep, tail = reply.partition(THINK_CLOSE)
    stripped = head.lstrip()
    opened = stripped.startswith(THINK_OPEN)
    if opened:
        head = stripped[len(THINK_OPEN) :]
    if not sep:
        return (head.strip("\n"), "") if opened else ("", reply)
    return head.strip("\n"), tail.lstrip("\n")


@dataclass
class ReasoningParser:
    """Streaming :func:`split_reasoning`: feed text deltas, get ``(reasoning, content)`` deltas.

    However a reply is cut into deltas, the deltas add up to :func:`split_reasoning` of the
    whole reply (tags split across deltas are held back until complete). With
    ``prompt_opened_think`` (the prompt already ended with ``<think>``) the reply is read as if
    it started with ``<think>``. A reply with no opening tag is held back until ``</think>`` or
    :meth:`finish` decides whether it was reasoning or answer.
    """

    prompt_opened_think: bool = False

    def __post_init__(self) -> None:
        self._state = "reasoning" if self.prompt_opened_think else "start"
        self._pending = ""
        self._fresh = True  # no reasoning text emitted yet

    def feed(self, delta: str) -> tuple[str, str]:
        """Consumes ``delta``; returns the new ``(reasoning, content)`` text."""
        self._pending += delta
        reasoning: list[str] = []
        content: list[str] = []
        while self._pending and self._advance(reasoning, content):
            pass
        return "".join(reasoning), "".join(content)

    def finish(self) -> tuple[str, str]:
        """Flushes what was held back at the end of the reply."""
        text, self._pending = self._pending, ""
        if self._state == "reasoning":
            return (text.strip("\n") if self._fresh else text.rstrip("\n")), ""
        if self._state == "after_close":
            return "", ""
        return "", text

    def _advance(self, reasoning: list[str], content: list[str]) -> bool:
        """One step; ``True`` if the loop should continue."""
        text = self._pending
        if self._state == "start":
            stripped = text.lstrip()
            if stripped.startswith(THINK_OPEN):
                self._pending, self._state = stripped[len(THINK_OPEN) :], "reasoning"
                return True
            if THINK_OPEN.startswith(stripped):
                return False
            self._state = "untagged"
            return True
        if self._state == "content":
            content.append(text)
            self._pending = ""
            return False
        if self._state == "after_close":
            self._pending = text.lstrip("\n")
            if self._pending:
                self._state = "content"
            return bool(self._pending)
        if self._state == "reasoning" and self._fresh:
            text = self._pending = text.lstrip("\n")
        tag = text.find(THINK_CLOSE)
        if tag >= 0:
            before = text[:tag]
            reasoning.append(
                before.strip("\n") if self._state == "untagged" else before.rstrip("\n")
            )
            self._pending, self._state = text[tag + len(THINK_CLOSE) :], "after_close"
            return True
        if self._state == "untagged":
            return False
        # Hold back a possible partial tag and trailing newlines (they may precede </think>).
        keep = _partial_suffix(text, THINK_CLOSE)
        safe = text[: len(text) - keep].rstrip("\n")
        if safe:
            reasoning.append(safe)
            self._fresh = False
        self._pending = text[len(safe) :]
        return False


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0

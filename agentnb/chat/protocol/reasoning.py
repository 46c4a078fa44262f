"""Reasoning in a reply: set aside, never parsed, never resent."""

from __future__ import annotations

import json
import re

from .replies import read_json

# Tags in the middle of a line are text (code that handles them: s.split("</think>")),
# so reasoning opens at the start of a line and a lone close stands at either end of one.
_THOUGHT = re.compile(
    r"^[ \t]*<(think|thinking|reasoning)>(.*?)</\1\s*>", re.IGNORECASE | re.DOTALL | re.MULTILINE
)
_THOUGHT_OPEN = re.compile(r"^[ \t]*<(?:think|thinking|reasoning)>", re.IGNORECASE | re.MULTILINE)
_THOUGHT_CLOSE = re.compile(
    r"^[ \t]*</(?:think|thinking|reasoning)\s*>|</(?:think|thinking|reasoning)\s*>[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
END_TOKENS = re.compile(
    r"(?:\s*(?:<\|(?:eot_id|eom_id|im_end|end|return|endoftext|end_of_text)\|>|<end_of_turn>|</s>))+\s*$"
)
# gpt-oss's "harmony" format, when a server passes it through as text
_HARMONY_HEADER = re.compile(
    r"<\|(?:start|channel)\|>(?:(?!<\|message\|>).)*<\|message\|>", re.DOTALL
)
_HARMONY_TOKEN = re.compile(r"<\|start\|>\w*|<\|\w+\|>")
_HARMONY_FINAL = re.compile(
    r"<\|channel\|>\s*final\b(?:(?!<\|message\|>).)*<\|message\|>", re.DOTALL
)
_HARMONY_CALL = re.compile(
    r"to=(?:functions\.)?(?P<name>[\w.-]+)(?:(?!<\|message\|>).)*<\|message\|>"
    r"(?P<args>.*?)(?:<\|call\|>|<\|end\|>|$)",
    re.DOTALL,
)


def split_reasoning(text: str) -> tuple[str, str]:
    """``(reasoning, answer)``: what a model thought, and what it replied."""
    answer, thought = _harmony(text)
    parts = [thought]

    def set_aside(match: re.Match[str]) -> str:
        parts.append(match[2])
        return ""

    answer = _THOUGHT.sub(set_aside, answer)
    # a chat template that opens <think> in the prompt leaves the reply only the close
    if closes := list(_THOUGHT_CLOSE.finditer(answer)):
        parts.append(answer[: closes[-1].start()])
        answer = answer[closes[-1].end() :]
    # a token limit can cut a reply before the reasoning closes: all of it is reasoning
    if opened := _THOUGHT_OPEN.search(answer):
        parts.append(answer[opened.end() :])
        answer = answer[: opened.start()]
    reasoning = "\n\n".join(p.strip() for p in parts if p.strip())
    return reasoning, END_TOKENS.sub("", answer).strip()


def _harmony(text: str) -> tuple[str, str]:
    if "<|message|>" not in text:
        return text, ""
    finals = list(_HARMONY_FINAL.finditer(text))
    if finals:
        before, after = text[: finals[-1].start()], text[finals[-1].end() :]
        return _HARMONY_TOKEN.sub("", after), _harmony_text(before)
    if call := _HARMONY_CALL.search(text):
        args = read_json(call["args"])
        arguments = args if isinstance(args, dict) else {"code": call["args"].strip()}
        answer = json.dumps({"name": call["name"], "arguments": arguments})
        return answer, _harmony_text(text[: call.start()])
    return "", _harmony_text(text)


def _harmony_text(text: str) -> str:
    return _HARMONY_TOKEN.sub("\n", _HARMONY_HEADER.sub("\n", text)).strip()

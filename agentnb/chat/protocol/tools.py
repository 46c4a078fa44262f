"""The tool-call protocol: ``run_step(why, code)`` and ``final_report(report)`` for
authors, ``review(verdict, comments)`` for reviewers.

Where an endpoint takes tools, a reply is a call, not prose to be read: the
arguments are JSON with a schema (``agentnb/prompts/tools.json``), so there is
nothing to guess. What is still checked: one call of a known tool, arguments that
are a JSON object with the required strings, a verdict that is exactly approve or
revise. Anything else is a :class:`ProtocolViolation` and gets the corrective
re-prompt, as in the text protocol.

Each call is also written out in the text protocol (:func:`as_text`): the
transcript keeps that, a replay answers with it, and the widget streams it while
the arguments arrive (:class:`ArgumentStream`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any, Literal

from ...models.base import Tool, ToolCall
from .replies import AuthorReply, ProtocolViolation, ReviewReply

__all__ = ["as_text", "author_from_calls", "review_from_calls", "tools_for"]


@cache
def _schemas() -> dict[str, list[Tool]]:
    text = (resources.files("agentnb") / "prompts" / "tools.json").read_text("utf-8")
    loaded: dict[str, list[Tool]] = json.loads(text)
    return loaded


def tools_for(kind: Literal["author", "reviewer"]) -> list[Tool]:
    """The tools offered to a role of this kind."""
    return _schemas()[kind]


def _arguments(call: ToolCall, required: Sequence[str]) -> dict[str, str]:
    try:
        value: Any = json.loads(call.arguments or "{}")
    except ValueError:
        raise ProtocolViolation(
            f"the arguments of your {call.name} call were not valid JSON; call it again "
            "with a JSON object"
        ) from None
    if not isinstance(value, dict):
        raise ProtocolViolation(f"the arguments of {call.name} must be a JSON object")
    missing = [k for k in required if not isinstance(value.get(k), str)]
    if missing:
        raise ProtocolViolation(
            f"your {call.name} call lacked {', '.join(missing)} (each a string); call it again"
        )
    return {k: value[k] for k in required}


def _one(calls: Sequence[ToolCall], names: Sequence[str]) -> ToolCall:
    known = [c for c in calls if c.name in names]
    if not known:
        said = ", ".join(sorted({c.name for c in calls})) or "no tool"
        raise ProtocolViolation(f"you called {said}; call one of {', '.join(names)}")
    if len(known) > 1:
        raise ProtocolViolation(
            f"you made {len(known)} calls; make exactly one ({' or '.join(names)}): one step "
            "at a time"
        )
    return known[0]


def author_from_calls(calls: Sequence[ToolCall], reasoning: str = "") -> AuthorReply:
    """The step or the report an author's call gives."""
    call = _one(calls, ("run_step", "final_report"))
    if call.name == "final_report":
        report = _arguments(call, ("report",))["report"].strip()
        if not report:
            raise ProtocolViolation("your final_report was empty; give the report")
        return AuthorReply(text=report, rationale=report, code="", reasoning=reasoning)
    args = _arguments(call, ("why", "code"))
    code = args["code"].strip("\n")
    if not code.strip():
        raise ProtocolViolation("your run_step had no code; give the code of the step")
    why = args["why"].strip()
    return AuthorReply(text=as_text(call), rationale=why, code=code, reasoning=reasoning)


def review_from_calls(calls: Sequence[ToolCall], reasoning: str = "") -> ReviewReply:
    """The verdict a reviewer's call gives; nothing but approve is an approval."""
    call = _one(calls, ("review",))
    args = _arguments(call, ("verdict", "comments"))
    verdict = args["verdict"].strip().lower()
    if verdict not in ("approve", "revise"):
        raise ProtocolViolation(
            f"the verdict must be approve or revise, not {args['verdict']!r}; call review again"
        )
    return ReviewReply(
        verdict="approve" if verdict == "approve" else "revise",
        comments=args["comments"].strip(),
        reasoning=reasoning,
    )


def as_text(call: ToolCall) -> str:
    """The call written in the text protocol (unreadable arguments: the raw call)."""
    try:
        args = json.loads(call.arguments or "{}")
    except ValueError:
        args = None
    if not isinstance(args, dict):
        return f"{call.name}({call.arguments})"
    if call.name == "run_step":
        why, code = str(args.get("why", "")).strip(), str(args.get("code", "")).strip("\n")
        fence = "```" if "```" not in code else "~~~~"
        return f"{why}\n\n{fence}python\n{code}\n{fence}".strip()
    if call.name == "final_report":
        return str(args.get("report", "")).strip()
    if call.name == "review":
        verdict = str(args.get("verdict", "")).strip().upper()
        comments = str(args.get("comments", "")).strip()
        return f"{verdict}\n\n{comments}".strip()
    return f"{call.name}({call.arguments})"

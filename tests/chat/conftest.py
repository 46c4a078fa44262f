"""Helpers for chat tests (the ``chat`` fixture, whole runs with the scripted model and
a real kernel, is shared by every tier: ``tests/conftest.py``)."""

from __future__ import annotations

import asyncio
import re

from agentnb.chat.approval import ApprovalRequest, CallbackApprover, Decision
from agentnb.chat.events import Event
from agentnb.chat.group import GroupChat

from ..conftest import ChatRunner as ChatRunner  # the tests' own helpers, shared
from ..conftest import FakeKernel as FakeKernel
from ..conftest import Run as Run
from ..conftest import step as step


def scripted_approver(*decisions: Decision) -> tuple[CallbackApprover, list[ApprovalRequest]]:
    """An approver that answers with ``decisions`` in order, and the list of what it was
    asked."""
    queue = list(decisions)
    seen: list[ApprovalRequest] = []

    def decide(request: ApprovalRequest) -> Decision:
        seen.append(request)
        return queue.pop(0)

    return CallbackApprover(decide), seen


def stop_when(chat: GroupChat, kind: type[Event], after: float) -> None:
    """Call ``chat.stop()`` ``after`` seconds after the first event of ``kind``."""
    armed = []

    def observe(event: Event) -> None:
        if isinstance(event, kind) and not armed:
            armed.append(asyncio.get_running_loop().call_later(after, chat.stop))

    chat.observers.append(observe)


def outside_data(text: str) -> str:
    """``text`` without its ``<data>`` blocks (a forged closing tag would end one early)."""
    return re.sub(r"<data>.*?</data>", "", text, flags=re.DOTALL)


def longest_run(text: str, phrase: str) -> int:
    """The longest stretch of ``text`` that copies ``phrase * n`` from its start."""
    best = 0
    for match in re.finditer(re.escape(phrase[:12]), text):
        i, k = match.start(), 0
        while i + k < len(text) and text[i + k] == phrase[k % len(phrase)]:
            k += 1
        best = max(best, k)
    return best

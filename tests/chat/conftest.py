"""Fixtures for chat tests: whole runs with the scripted model and a real kernel."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agentnb import ManagedKernel
from agentnb.chat import RunResult
from agentnb.events import AgentThinking, Event, ExecutionStarted
from agentnb.models.base import message_text
from agentnb.models.scripted import ScriptedModel
from agentnb.run import arun

from ..conftest import step as step  # the tests' own helper, shared

E = TypeVar("E", bound=Event)


@dataclass
class Run:
    result: RunResult
    events: list[Event]
    model: ScriptedModel
    transcript: Path

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def speakers(self) -> list[str]:
        """Who spoke, in order, with ``run`` for each execution of a step."""
        order = []
        for e in self.events:
            if isinstance(e, AgentThinking):
                order.append(e.agent)
            elif isinstance(e, ExecutionStarted) and e.step > 0:
                order.append("run")
        return order

    def prompts(self, role: str) -> list[str]:
        """The user-message text of every prompt ``role`` received."""
        return [
            "\n".join(message_text(m) for m in messages if m.role != "system")
            for who, messages in self.model.prompts
            if who == role
        ]


ChatRunner = Callable[..., Awaitable[Run]]


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


@pytest.fixture
def chat(shared_kernel: ManagedKernel, tmp_path: Path) -> ChatRunner:
    """``await chat({"analyst": [...], "critic": [...]}, **arun_options)`` → :class:`Run`."""

    async def go(
        replies: Mapping[str, Sequence[str]] | None = None,
        task: str = "Find out something about the numbers.",
        **options: Any,
    ) -> Run:
        model = options.pop("model", None) or ScriptedModel(dict(replies or {}))
        events: list[Event] = []
        also = options.pop("on_event", None)

        def observe(event: Event) -> None:
            events.append(event)
            if also is not None:
                also(event)

        transcript = (
            options.pop("transcript", None) or tmp_path / f"run-{len(events)}-{id(events)}.jsonl"
        )
        result = await arun(
            task,
            model=model,
            kernel=shared_kernel,
            transcript=transcript,
            on_event=observe,
            **options,
        )
        return Run(result, events, model, transcript)

    return go

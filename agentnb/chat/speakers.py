"""Who speaks next. The chat fixes the phases (propose, review, approve, run);
a speaker selector decides which agents speak within a phase.

- :class:`Workflow` (the default): the first author proposes; every reviewer
  reviews, in order, and all must approve.
- :class:`RoundRobin`: authors take turns proposing; reviewers take turns
  reviewing, one per proposal.
- :class:`ModelSelector`: a model picks one agent when there is a choice (its
  calls are counted as the agent ``selector``); a reply naming nobody falls back to
  the first candidate, with a notice, so selection never stalls.
- any callable ``(SelectionState) -> name | [names]`` (sync or async).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ..errors import ConfigError
from ..models.base import ChatMessage
from .context import selector_prompt
from .roles import Role, load_prompt

__all__ = [
    "Ask",
    "CallableSelector",
    "ModelSelector",
    "RoundRobin",
    "SelectionState",
    "SpeakerSelector",
    "Workflow",
    "make_selector",
]

SelectPhase = Literal["propose", "review_step", "review_final"]

Ask = Callable[[Sequence[ChatMessage]], Awaitable[str]]
"""Sends a prompt to the selector's model (counted) and returns the reply text."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectionState:
    phase: SelectPhase
    candidates: tuple[Role, ...]
    """The agents that may speak in this phase, in the order they were given."""
    task: str
    last_text: str = ""
    """The last message of the chat (the proposal under review, the latest result)."""
    step: int | None = None


class SpeakerSelector(Protocol):
    async def select(self, state: SelectionState, ask: Ask) -> Sequence[str]:
        """Names of the agents to speak in this phase, in order."""
        ...


class Workflow:
    """The first author proposes; every reviewer reviews."""

    async def select(self, state: SelectionState, ask: Ask) -> Sequence[str]:
        if state.phase == "propose":
            return [state.candidates[0].name]
        return [r.name for r in state.candidates]


@dataclass
class RoundRobin:
    """Candidates of each phase take turns."""

    _next: dict[str, int] = field(default_factory=dict)

    async def select(self, state: SelectionState, ask: Ask) -> Sequence[str]:
        kind = "propose" if state.phase == "propose" else "review"
        i = self._next.get(kind, 0) % len(state.candidates)
        self._next[kind] = i + 1
        return [state.candidates[i].name]


@dataclass
class ModelSelector:
    """A model picks the next speaker when there is more than one candidate."""

    prompt: str = field(default_factory=lambda: load_prompt("selector"))
    fallbacks: int = 0
    """How many times the model named nobody and the first candidate spoke instead."""

    async def select(self, state: SelectionState, ask: Ask) -> Sequence[str]:
        if len(state.candidates) == 1:
            return [state.candidates[0].name]
        reply = await ask(
            selector_prompt(self.prompt, state.task, state.candidates, state.last_text)
        )
        names = {r.name.lower(): r.name for r in state.candidates}
        for word in re.findall(r"[A-Za-z][A-Za-z0-9_\-]*", reply):
            if word.lower() in names:
                return [names[word.lower()]]
        self.fallbacks += 1
        return [state.candidates[0].name]


class CallableSelector:
    """Wraps ``fn(state) -> name | [names]`` (sync or async)."""

    def __init__(self, fn: Callable[[SelectionState], object]) -> None:
        self._fn = fn

    async def select(self, state: SelectionState, ask: Ask) -> Sequence[str]:
        result = self._fn(state)
        if inspect.isawaitable(result):
            result = await result
        chosen = [result] if isinstance(result, str) else list(result)  # type: ignore[call-overload]
        allowed = {r.name for r in state.candidates}
        bad = [n for n in chosen if n not in allowed]
        if not chosen or bad:
            raise ConfigError(
                f"the speaker selector returned {result!r} in phase {state.phase}; "
                f"it must name one or more of: {', '.join(sorted(allowed))}"
            )
        return chosen


def make_selector(
    spec: str | SpeakerSelector | Callable[[SelectionState], object],
) -> SpeakerSelector:
    """``"workflow"``, ``"round_robin"``, ``"model"``, a selector, or a callable."""
    if isinstance(spec, str):
        named: dict[str, Callable[[], SpeakerSelector]] = {
            "workflow": Workflow,
            "round_robin": RoundRobin,
            "model": ModelSelector,
        }
        if spec not in named:
            raise ConfigError(
                f"unknown speaker selection {spec!r}; use one of {', '.join(named)} or a function"
            )
        return named[spec]()
    if hasattr(spec, "select"):
        return spec
    if callable(spec):
        return CallableSelector(spec)
    raise ConfigError(f"a speaker selector must be a name or a function, not {spec!r}")

"""When a run ends, and why: composable stop conditions and the stop reason.

Conditions are checked before every model call and every execution, and after
every message. Combine them with ``|`` (any) and ``&`` (all)::

    MaxTurns(30) | TokenBudget(50_000) | TimeLimit(600)

The run's own endings (the final report approved, the user's stop, a loop guard,
a model or protocol failure) need no condition: they always apply. Every run ends
with exactly one :class:`StopReason`, which is shown, never swallowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .messages import AgentMessage, StepResult

__all__ = [
    "CostBudget",
    "MaxTurns",
    "Outcome",
    "RunStats",
    "StopKind",
    "StopReason",
    "TerminationCondition",
    "TextMention",
    "TimeLimit",
    "TokenBudget",
]

StopKind = Literal[
    "approved",  # the final report passed review (and the user, if asked)
    "max_turns",
    "budget",
    "time_limit",
    "text_mention",
    "user_stop",
    "loop_guard",
    "protocol",
    "model_error",
    "kernel_error",
    "error",
]

Outcome = Literal["approved", "stopped", "failed"]
"""How a run ended, for everything that shows it or acts on it (the widget's colour,
the terminal, the saved notebook, whether the ``%%agents`` cell fails)."""

_FAILED: frozenset[StopKind] = frozenset({"model_error", "kernel_error", "error", "protocol"})
"""A part failed (a model that cannot follow the reply protocol included). Limits,
guards and the user's stop end a run as designed: they are ``stopped``."""


@dataclass(frozen=True, slots=True)
class StopReason:
    """Why a run ended, in words a user can act on."""

    kind: StopKind
    message: str

    @property
    def ok(self) -> bool:
        """The run reached an approved answer."""
        return self.kind == "approved"

    @property
    def outcome(self) -> Outcome:
        """``approved``, ``failed`` when a part of the run failed, else ``stopped``
        (a limit, a loop guard, a stop word or the user ended it)."""
        if self.ok:
            return "approved"
        return "failed" if self.kind in _FAILED else "stopped"

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class RunStats:
    """What conditions look at: a snapshot of the run so far."""

    turns: int
    """Agent replies plus executions."""
    tokens: int
    """Prompt plus completion tokens over all agents (the speaker selector too)."""
    cost: float | None
    """Dollars over all agents; None while any model's price is unknown."""
    elapsed: float
    last: AgentMessage | None = None
    pending_tokens: int = 0
    """The estimated prompt of the call about to be made (0 after a call)."""


class TerminationCondition:
    """A rule that may end a run. Subclasses implement :meth:`check`."""

    def check(self, stats: RunStats) -> StopReason | None:
        raise NotImplementedError

    def __or__(self, other: TerminationCondition) -> TerminationCondition:
        return _Any((self, other))

    def __and__(self, other: TerminationCondition) -> TerminationCondition:
        return _All((self, other))


@dataclass(frozen=True)
class _Any(TerminationCondition):
    parts: tuple[TerminationCondition, ...]

    def check(self, stats: RunStats) -> StopReason | None:
        for part in self.parts:
            if reason := part.check(stats):
                return reason
        return None


@dataclass(frozen=True)
class _All(TerminationCondition):
    parts: tuple[TerminationCondition, ...]

    def check(self, stats: RunStats) -> StopReason | None:
        reasons = [part.check(stats) for part in self.parts]
        if not reasons or any(r is None for r in reasons):
            return None
        first = reasons[0]
        assert first is not None
        return StopReason(first.kind, "; and ".join(str(r) for r in reasons))


@dataclass(frozen=True)
class MaxTurns(TerminationCondition):
    """At most ``turns`` agent replies and executions."""

    turns: int

    def check(self, stats: RunStats) -> StopReason | None:
        if stats.turns >= self.turns:
            return StopReason(
                "max_turns",
                f"stopped after {stats.turns} turns (the limit is {self.turns}; raise it with "
                "--max-turns)",
            )
        return None


@dataclass(frozen=True)
class TokenBudget(TerminationCondition):
    """At most ``tokens`` tokens over all agents; a call whose prompt alone would
    cross the budget is not made."""

    tokens: int

    def check(self, stats: RunStats) -> StopReason | None:
        if stats.tokens + stats.pending_tokens >= self.tokens:
            spent = f"{stats.tokens:,} tokens used"
            if stats.pending_tokens:
                spent += f" and the next call needs about {stats.pending_tokens:,} more"
            return StopReason(
                "budget",
                f"stopped at the token budget: {spent} (budget {self.tokens:,}; raise it with "
                "--budget-tokens)",
            )
        return None


@dataclass(frozen=True)
class CostBudget(TerminationCondition):
    """At most ``dollars`` over all agents (only models with a known price count)."""

    dollars: float

    def check(self, stats: RunStats) -> StopReason | None:
        if stats.cost is not None and stats.cost >= self.dollars:
            return StopReason(
                "budget",
                f"stopped at the cost budget: ${stats.cost:.4f} spent (budget ${self.dollars:.4f})",
            )
        return None


@dataclass(frozen=True)
class TimeLimit(TerminationCondition):
    """At most ``seconds`` of wall-clock time (a running call or step is cut short)."""

    seconds: float

    def check(self, stats: RunStats) -> StopReason | None:
        if stats.elapsed >= self.seconds:
            return StopReason(
                "time_limit",
                f"stopped after {stats.elapsed:.0f} s (the limit is {self.seconds:g} s)",
            )
        return None


@dataclass(frozen=True)
class TextMention(TerminationCondition):
    """Ends the run when a message (from ``sources``, if given) contains ``text`` as a word."""

    text: str
    sources: tuple[str, ...] = ()

    def check(self, stats: RunStats) -> StopReason | None:
        last = stats.last
        if last is None or (self.sources and last.sender not in self.sources):
            return None
        body = "" if isinstance(last, StepResult) else last.text
        if re.search(rf"(?<!\w){re.escape(self.text)}(?!\w)", body):
            return StopReason("text_mention", f"{last.sender} said {self.text!r}")
        return None

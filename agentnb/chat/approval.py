"""Approvals: one interface between the chat and whoever decides what runs.

The chat asks an :class:`Approver` before a step runs (``approve="each"``) or
before a final report is accepted (``"each"`` and ``"final"``); the approver
answers with a :class:`Decision`. Implementations: :class:`AutoApprover` (a
policy, for headless runs), :class:`CallbackApprover` (any function), the terminal
prompt of the CLI and the notebook widget.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

from ..errors import ConfigError

__all__ = [
    "ApprovalMode",
    "ApprovalRequest",
    "Approver",
    "AutoApprover",
    "CallbackApprover",
    "Decision",
    "check_mode",
    "needs_approval",
]

ApprovalMode = Literal["each", "final", "never"]
"""``each``: every code step and the final report; ``final``: only the final
report; ``never``: autonomous (AutoGen's ALWAYS / TERMINATE / NEVER)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalRequest:
    """What the user is asked to decide on."""

    kind: Literal["step", "final"]
    step: int | None
    """The step number (None for the final report)."""
    text: str
    """The author's words: the step's rationale, or the report."""
    code: str = ""
    """The code that will run (empty for the final report)."""
    reviews: tuple[str, ...] = ()
    """The reviewers' comments, as ``"critic: ..."``."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to an :class:`ApprovalRequest`.

    ``approve``: run the step (accept the report). ``edit``: run ``code`` instead
    (for a report, ``code`` is the edited report). ``reject``: do not run it; the
    ``feedback`` goes to the authors. ``stop``: end the run.
    """

    action: Literal["approve", "edit", "reject", "stop"]
    code: str | None = None
    feedback: str = ""

    @classmethod
    def approve(cls) -> Decision:
        return cls("approve")

    @classmethod
    def edit(cls, code: str) -> Decision:
        return cls("edit", code=code)

    @classmethod
    def reject(cls, feedback: str = "") -> Decision:
        return cls("reject", feedback=feedback)

    @classmethod
    def stop(cls) -> Decision:
        return cls("stop")


class Approver(Protocol):
    """Decides on steps and reports. May take as long as a human needs."""

    async def decide(self, request: ApprovalRequest) -> Decision: ...


class AutoApprover:
    """Approves everything: the policy of ``approve="never"``."""

    async def decide(self, request: ApprovalRequest) -> Decision:
        return Decision.approve()


class CallbackApprover:
    """Wraps a function ``(ApprovalRequest) -> Decision`` (sync or async)."""

    def __init__(self, decide: Callable[[ApprovalRequest], Decision | Awaitable[Decision]]) -> None:
        self._decide = decide

    async def decide(self, request: ApprovalRequest) -> Decision:
        result = self._decide(request)
        if inspect.isawaitable(result):
            result = await result
        if not isinstance(result, Decision):
            raise TypeError(f"an approver must return a Decision, not {result!r}")
        return result


def check_mode(mode: str) -> ApprovalMode:
    """``mode`` as an :data:`ApprovalMode`, or a :class:`ConfigError` naming the choices."""
    choices = get_args(ApprovalMode)
    if mode not in choices:
        raise ConfigError(f"--approve must be one of {', '.join(choices)}, not {mode!r}")
    return mode  # type: ignore[return-value]


def needs_approval(mode: ApprovalMode, kind: Literal["step", "final"]) -> bool:
    """Whether ``mode`` asks the approver about a request of this kind."""
    return mode == "each" or (mode == "final" and kind == "final")

"""What a run takes and returns: the executor it runs steps on, its loop guards,
its result, and the one check of a task."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..errors import ConfigError
from ..models.base import Usage
from .messages import Execution, Step
from .termination import StopReason

__all__ = ["Executor", "Guards", "RunResult", "check_task"]


class Executor(Protocol):
    """Runs code (a :class:`~agentnb.kernel.ManagedKernel` is one)."""

    async def execute(self, code: str, *, timeout: float | None = None) -> Execution:
        """An executor that can show a running step also takes ``on_output``, called
        with the outputs so far (ManagedKernel does); the chat passes it when the
        executor's ``execute`` has that parameter."""
        ...

    async def interrupt(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Guards:
    """Loop guards: limits on going round in circles."""

    consecutive_errors: int = 3
    """Steps in a row that may fail before the run stops."""
    revisions_per_step: int = 3
    """REVISE verdicts one proposal (or the final report) may get before the run stops."""
    repeated_failures: int = 2
    """Times code that already failed may be proposed again (it is never rerun)."""
    protocol_retries: int = 1
    """Corrective re-prompts after a reply outside the protocol."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """What a run produced.

    Attributes:
        final_report: the approved report, or the last report proposed, or None.
        steps: every step that ran, in order (failed ones included).
        usage: tokens per agent (``selector`` when a model chose speakers).
        cost: dollars over all agents, None when a price is unknown.
        costs: dollars per agent, None where the price is unknown.
        stop_reason: why the run ended; ``stop_reason.ok`` means an approved answer.
        transcript_path: the JSONL transcript of every event.
        setup: the execution that loaded the data files, if any.
        notebook: the saved analysis notebook, when one was written.
    """

    run_id: str
    task: str
    final_report: str | None
    steps: tuple[Step, ...]
    usage: dict[str, Usage]
    cost: float | None
    stop_reason: StopReason
    transcript_path: Path | None
    data_summary: str = ""
    setup: Execution | None = None
    notebook: Path | None = None
    costs: dict[str, float | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.stop_reason.ok


def check_task(task: str) -> None:
    """A task must say something: an empty one is a :class:`ConfigError`."""
    if not task or not task.strip():
        raise ConfigError("the task is empty: say what the agents should find out")

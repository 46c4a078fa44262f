"""The vocabulary of agentnb: typed, immutable records passed between its parts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from ..kernel.outputs import Output, render_for_model, truncate_middle

__all__ = [
    "AgentMessage",
    "DisplayUpdate",
    "Execution",
    "ExecutionStatus",
    "Feedback",
    "FinalReport",
    "Proposal",
    "Review",
    "Step",
    "StepResult",
    "Verdict",
    "subject",
]

_CELL_REF = re.compile(r"Cell In\[\d+\]")
_UPDATE_TEXT = 2_000  # characters of an updated earlier step's outputs in a step's text

ExecutionStatus = Literal["ok", "error", "timeout", "died", "interrupted"]
"""How a step ended.

``ok`` and ``error`` are the kernel's own verdicts. ``timeout``: the step ran past its
time limit and was interrupted. ``died``: the kernel process ended (``os._exit``, a
crash, the out-of-memory killer). ``interrupted``: someone asked to stop it.
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class DisplayUpdate:
    """The outputs of an earlier execution, as a later one left them.

    A step can change what an earlier step shows: ``handle.update(...)`` of a
    display made earlier, a display id shown again, output captured into an
    ``Output`` widget shown earlier. The earlier :class:`Execution` stays as it was
    recorded; the later one carries the earlier one's outputs as they now are
    (see :func:`apply_updates`).
    """

    execution_count: int
    """The kernel's number of the earlier execution: the latest earlier execution
    with that number (a restarted kernel counts from 1 again, and its steps are
    the later ones)."""
    outputs: tuple[Output, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Execution:
    """The result of running one step of code in the managed kernel.

    Attributes:
        code: the code that was run.
        status: how it ended (see :data:`ExecutionStatus`).
        outputs: nbformat v4 output dicts, in order; streams merged, capped.
        execution_count: the kernel's counter for this step, if it got that far.
        duration: seconds from sending the code to the end of its outputs.
        restarted: the kernel was restarted after this step, so variables created
            by earlier steps are gone (pushed data is restored).
        note: what agentnb did and why, in plain words (timeouts, restarts,
            dropped output); empty when there is nothing to say.
        updates: the outputs of earlier executions that this one changed, as they
            now are (:class:`DisplayUpdate`); this execution's own outputs hold only
            what it showed itself, as in a notebook.
    """

    code: str
    status: ExecutionStatus
    outputs: tuple[Output, ...]
    execution_count: int | None
    duration: float
    restarted: bool = False
    note: str = ""
    updates: tuple[DisplayUpdate, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def error(self) -> Output | None:
        """The last ``error`` output, if there is one."""
        for out in reversed(self.outputs):
            if out.get("output_type") == "error":
                return out
        return None

    @property
    def stdout(self) -> str:
        """Everything the step wrote to stdout (after capping)."""
        return "".join(
            str(o.get("text", ""))
            for o in self.outputs
            if o.get("output_type") == "stream" and o.get("name") == "stdout"
        )

    def to_model_text(self, limit: int = 6_000) -> str:
        """A compact rendering for a language model, at most ``limit`` characters.

        The first line states the status; the note (if any) comes next, so that a
        truncated body never hides what happened to the kernel.
        """
        # Nothing that changes between identical re-runs (the kernel's counter, the
        # duration): an unchanged analysis must give an unchanged prompt, or the
        # response cache could never answer it.
        lines = [f"[step {self.status}]"]
        if self.note:
            lines.append(self.note)
        prefix = "\n".join(lines)
        room = max(limit - len(prefix) - 1, 0)
        body = render_for_model(self.outputs, room) if self.outputs else "(no output)"
        for update in self.updates:
            # the kernel's counter changes between identical re-runs: not named
            shown = render_for_model(update.outputs, min(room, _UPDATE_TEXT)) or "(no output)"
            body += f"\n[It changed what an earlier step shows, which is now:]\n{shown}"
        body = _CELL_REF.sub("In this step", body)
        return truncate_middle(f"{prefix}\n{body}", limit)


def apply_updates(earlier: Sequence[Execution], later: Execution) -> list[Execution]:
    """``earlier`` (in the order they ran) with the outputs that ``later`` changed.

    Each update goes to the latest execution of ``earlier`` with its execution
    count; updates of executions not in ``earlier`` are ignored.
    """
    result = list(earlier)
    for update in later.updates:
        for i in range(len(result) - 1, -1, -1):
            if result[i].execution_count == update.execution_count:
                result[i] = replace(result[i], outputs=update.outputs)
                break
    return result


# --- the chat: what agents say to each other (these enter model context) ---------


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    """An author's reply that proposes one step of code."""

    sender: str
    step: int
    text: str
    """The whole reply but its reasoning: markdown with the fenced code."""
    rationale: str
    """The reply without its code blocks."""
    code: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalReport:
    """An author's reply without code: the answer to the task."""

    sender: str
    text: str


Verdict = Literal["approve", "revise"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Review:
    """A reviewer's verdict on a proposed step (``step`` > 0) or the final report."""

    sender: str
    verdict: Verdict
    text: str
    """The comments after the verdict word."""
    step: int | None
    """The step reviewed, or None for the final report."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Feedback:
    """Words for the authors that no reviewer wrote: the user rejecting a step,
    or agentnb refusing to run it (a loop guard)."""

    sender: str
    text: str
    step: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepResult:
    """The executor's report: a step ran in the managed kernel."""

    sender: str
    step: int
    execution: Execution
    edited: bool = False
    """The user edited the code before it ran (``execution.code`` is what ran)."""


AgentMessage = Proposal | FinalReport | Review | Feedback | StepResult
"""Everything that can be said in the group chat."""


def subject(step: int | None, *, short: bool = False) -> str:
    """What a proposal, a review, a decision or a stop is about, in the words every
    part of agentnb uses: ``step 3``, or (``step`` None) ``the final report``, which
    ``short`` makes ``the report`` where a card's heading already says *final report*."""
    if step is not None:
        return f"step {step}"
    return "the report" if short else "the final report"


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One step that ran: what was proposed, what ran, and how it went.

    Attributes:
        number: 1, 2, … in the order the steps ran.
        author: the agent that proposed it.
        rationale: the author's words without the code.
        code: the code that ran (the user's edit, if there was one).
        proposed_code: the code as the author proposed it.
        execution: the result from the managed kernel.
        reviews: the reviewers' comments that approved it, as ``"critic: …"``.
    """

    number: int
    author: str
    rationale: str
    code: str
    proposed_code: str
    execution: Execution
    reviews: tuple[str, ...] = ()

    @property
    def status(self) -> ExecutionStatus:
        return self.execution.status

    @property
    def outputs(self) -> tuple[Output, ...]:
        return self.execution.outputs

    @property
    def edited(self) -> bool:
        return self.code != self.proposed_code

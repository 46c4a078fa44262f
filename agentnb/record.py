"""The run record: the one fold of a run's events, which every view reads.

The engine (:mod:`agentnb.chat`) tells the world what happens as a stream of
:mod:`events <agentnb.chat.events>`. A :class:`RunRecord` folds that stream into
what the run is: its steps (each version proposed, the reviews, the user's
decisions, the code that ran and how it went, whether the user edited it), the
final report and its reviews, the notices, tokens and dollars per agent, the
models, the kernel's isolation, the data, what the run is doing now and how it
ended. The notebook widget, the terminal, the saved notebook, ``%agents status``,
the cell's display and the cells inserted into the live notebook all read it, so
they cannot disagree::

    record = RunRecord()
    record.apply(event)               # live, as each event arrives
    record = RunRecord.fold(events)   # or at once (a transcript: the last run wins)

A view may still react to an event as it arrives (a streamed token is shown at
once), but what it shows of the run comes from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from .chat.approval import ApprovalRequest, Decision
from .chat.events import (
    AgentThinking,
    ApprovalDecided,
    ApprovalRequested,
    DataReady,
    Event,
    ExecutionFinished,
    ExecutionOutput,
    ExecutionStarted,
    KernelReady,
    MessagePosted,
    ModelCalled,
    Notice,
    RunFinished,
    RunStarted,
    TokenDelta,
    assert_never,
    is_event,
)
from .chat.messages import (
    AgentMessage,
    Execution,
    Feedback,
    FinalReport,
    Proposal,
    Review,
    StepResult,
    apply_updates,
    subject,
)
from .chat.termination import Outcome, StopReason
from .chat.usage import Ledger
from .models.base import Usage

__all__ = ["ReportRecord", "RunRecord", "StepRecord", "StepStatus", "subject"]

StepStatus = Literal[
    "proposed",
    "sent back",  # a reviewer asked for a revision, the user rejected it, or agentnb refused it
    "awaiting approval",
    "approved",  # by the user, about to run
    "stopped",  # the user stopped the run here
    "running",
    "ok",
    "error",
    "timeout",
    "died",
    "interrupted",
]
"""Where a step stands: before it runs, or how its run ended."""

ReportStatus = Literal["proposed", "sent back", "awaiting approval", "accepted", "stopped"]

_ENDED: dict[Outcome, str] = {"approved": "done", "stopped": "stopped", "failed": "failed"}
"""The phase, in words, once a run has ended."""


@dataclass
class StepRecord:
    """One step: every version proposed, what was said and decided of it, and its run."""

    number: int
    proposals: list[Proposal] = field(default_factory=list)
    """Every version, the latest last (a revision keeps the step's number)."""
    reviews: list[Review] = field(default_factory=list)
    """The reviews of the latest version."""
    feedback: list[Feedback] = field(default_factory=list)
    """Words no reviewer wrote: the user's rejections, agentnb refusing to run it."""
    request: ApprovalRequest | None = None
    """The latest approval request about it."""
    decisions: list[Decision] = field(default_factory=list)
    """The user's, in order."""
    code: str | None = None
    """The code that ran (the user's edit, if there was one); None until it runs."""
    execution: Execution | None = None
    result: StepResult | None = None
    """The executor's report of the run, once posted."""
    status: StepStatus = "proposed"
    live: tuple[dict[str, Any], ...] = ()
    """While it runs: its outputs so far (none once it has run: see ``execution``)."""
    elapsed: float = 0.0
    """While it runs: seconds since it started, as last reported."""

    @property
    def proposal(self) -> Proposal | None:
        return self.proposals[-1] if self.proposals else None

    @property
    def author(self) -> str | None:
        proposal = self.proposal
        return proposal.sender if proposal is not None else None

    @property
    def why(self) -> str:
        """The author's words without the code."""
        proposal = self.proposal
        return proposal.rationale if proposal is not None else ""

    @property
    def proposed_code(self) -> str | None:
        """The code as its author proposed it (as the approval request showed it, when
        no proposal was seen)."""
        if self.proposal is not None:
            return self.proposal.code
        return self.request.code if self.request is not None else None

    @property
    def edited(self) -> bool:
        """The user changed the code before it ran."""
        if self.result is not None:
            return self.result.edited
        proposed = self.proposed_code
        return self.code is not None and proposed is not None and self.code != proposed

    @property
    def ran(self) -> bool:
        """Its code went to the managed kernel (it may still be running)."""
        return self.code is not None

    @property
    def approvals(self) -> list[Review]:
        """The reviews that approved the latest version."""
        return [r for r in self.reviews if r.verdict == "approve"]


@dataclass
class ReportRecord:
    """The final report: every version proposed, and what was said and decided of it."""

    versions: list[FinalReport] = field(default_factory=list)
    reviews: list[Review] = field(default_factory=list)
    """The reviews of the latest version."""
    feedback: list[Feedback] = field(default_factory=list)
    request: ApprovalRequest | None = None
    decisions: list[Decision] = field(default_factory=list)
    status: ReportStatus = "proposed"

    @property
    def latest(self) -> FinalReport | None:
        return self.versions[-1] if self.versions else None


@dataclass(eq=False)
class RunRecord:
    """What a run is, from its events: see the module's docstring.

    Attributes:
        run_id: the run's id (from its events).
        started: the run's first event (task, models, approval mode, data names).
        kernel: the managed kernel's isolation, once it answers.
        data: the data the agents were given, and what they were told of it.
        setup_code: the code that loaded the data files (step 0), and ``setup`` its run.
        steps: every step proposed, by number.
        report: the final report, once one was proposed.
        feedback: every :class:`Feedback` posted, in order.
        notices: every :class:`Notice`, in order.
        asked: what each agent was last asked to do.
        waiting: the approval the run waits for, if it does.
        finished: the run's last event.
        abandoned: why the run ended without its last event, if it did (see :meth:`abandon`).
        phase: what the run is doing, in the words a header shows.
    """

    run_id: str = ""
    started: RunStarted | None = None
    kernel: KernelReady | None = None
    data: DataReady | None = None
    setup_code: str | None = None
    setup: Execution | None = None
    steps: dict[int, StepRecord] = field(default_factory=dict)
    report: ReportRecord | None = None
    feedback: list[Feedback] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    asked: dict[str, AgentThinking] = field(default_factory=dict)
    waiting: ApprovalRequest | None = None
    finished: RunFinished | None = None
    abandoned: str | None = None
    phase: str = "starting"
    _ledger: Ledger = field(default_factory=Ledger, repr=False)

    @classmethod
    def fold(cls, events: Iterable[Event]) -> RunRecord:
        """The record of ``events``, in order (of several runs, the last one)."""
        record = cls()
        for event in events:
            record.apply(event)
        return record

    # --- the fold ----------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Fold in the next event. A :class:`RunStarted` starts the record over."""
        if not is_event(event):
            raise TypeError(f"not an event of an agentnb run: {event!r}")
        if isinstance(event, RunStarted) and self.started is not None:
            self.__dict__.update(RunRecord().__dict__)
        if event.run_id:
            self.run_id = event.run_id
        match event:
            case RunStarted():
                self.started = event
            case KernelReady():
                self.kernel = event
            case DataReady():
                self.data = event
            case AgentThinking():
                self.asked[event.agent] = event
                self.phase = _thinking(event)
            case TokenDelta():
                pass  # the views stream it; the whole reply comes with ModelCalled
            case ModelCalled():
                self._ledger.add(event.agent, event.usage, event.cost)
            case MessagePosted():
                self._posted(event.message)
            case ApprovalRequested():
                self.waiting = event.request
                about = self._about(event.request)
                about.request, about.status = event.request, "awaiting approval"
                self.phase = "awaiting your approval"
            case ApprovalDecided():
                self.waiting = None
                about = self._about(event.request)
                about.decisions.append(event.decision)
                if isinstance(about, StepRecord):
                    about.status = _STEP_AFTER[event.decision.action]
                else:
                    about.status = _REPORT_AFTER[event.decision.action]
                self.phase = "continuing"
            case ExecutionStarted():
                if event.step == 0:
                    self.setup_code = event.code
                    self.phase = "loading the data"
                else:
                    step = self._step(event.step)
                    step.code, step.status = event.code, "running"
                    self.phase = f"running {subject(event.step)}"
            case ExecutionOutput():
                if event.step:
                    step = self._step(event.step)
                    step.live, step.elapsed = event.outputs, event.elapsed
            case ExecutionFinished():
                self._ran(event.step, event.execution)
            case Notice():
                self.notices.append(event)
            case RunFinished():
                self.finished = event
                self.waiting = None
                if event.usage:  # the engine's own count settles the one made as calls came
                    costs = {agent: event.costs.get(agent) for agent in event.usage}
                    self._ledger = Ledger(dict(event.usage), costs)
                if event.reason.ok and self.report is not None:
                    self.report.status = "accepted"
                self.phase = _ENDED[event.reason.outcome]
            case _:
                assert_never(event)

    def abandon(self, reason: str) -> None:
        """The run ended without its :class:`RunFinished` (it could not start, or
        agentnb itself failed): the record says it failed, and why. After a finished
        run this changes nothing."""
        if self.finished is None and self.abandoned is None:
            self.abandoned = reason
            self.waiting = None
            self.phase = "failed"

    def _posted(self, message: AgentMessage) -> None:
        match message:
            case Proposal():
                step = self._step(message.step)
                step.proposals.append(message)
                step.reviews, step.status = [], "proposed"
            case FinalReport():
                report = self._final()
                report.versions.append(message)
                report.reviews, report.status = [], "proposed"
            case Review():
                target = self._step(message.step) if message.step is not None else self._final()
                target.reviews.append(message)
                if message.verdict == "revise":
                    target.status = "sent back"
            case Feedback():
                self.feedback.append(message)
                about = self._step(message.step) if message.step else self.report
                if about is not None:
                    about.feedback.append(message)
                    about.status = "sent back"
            case StepResult():
                self._ran(message.step, message.execution)
                self._step(message.step).result = message
            case _:
                assert_never(message)

    def _ran(self, number: int, execution: Execution) -> None:
        if execution.updates:  # outputs of earlier steps that this one changed
            self._update_earlier(execution)
        if number == 0:
            self.setup, self.setup_code = execution, execution.code
            return
        step = self._step(number)
        step.live = ()
        if step.execution is None:
            step.execution = execution
            step.status = execution.status
        if step.code is None:
            step.code = execution.code

    def take_updates(self, later: Execution) -> list[int]:
        """What ``later``, a step of another run in the same kernel, changed of what this
        run's steps show (``h.update(...)`` of a display one of them made): applied, and
        the numbers of the steps whose outputs changed (0 for the data's setup)."""
        before = self._outputs()
        self._update_earlier(later)
        after = self._outputs()
        return [number for number, outputs in after.items() if outputs != before.get(number)]

    def _outputs(self) -> dict[int, tuple[dict[str, Any], ...]]:
        shown = {n: s.execution.outputs for n, s in self.steps.items() if s.execution is not None}
        if self.setup is not None:
            shown[0] = self.setup.outputs
        return shown

    def _update_earlier(self, later: Execution) -> None:
        ran = [s for s in self.steps.values() if s.execution is not None]
        earlier = [*([self.setup] if self.setup is not None else []), *(s.execution for s in ran)]
        now = apply_updates([e for e in earlier if e is not None], later)
        if self.setup is not None:
            self.setup = now.pop(0)
        for step, execution in zip(ran, now, strict=True):
            step.execution = execution

    def _step(self, number: int) -> StepRecord:
        if number not in self.steps:
            self.steps[number] = StepRecord(number)
        return self.steps[number]

    def _final(self) -> ReportRecord:
        if self.report is None:
            self.report = ReportRecord()
        return self.report

    def _about(self, request: ApprovalRequest) -> StepRecord | ReportRecord:
        if request.kind == "step" and request.step is not None:
            return self._step(request.step)
        return self._final()

    # --- what the views read -------------------------------------------------------------

    @property
    def task(self) -> str:
        return self.started.task if self.started is not None else ""

    @property
    def models(self) -> dict[str, str]:
        """Agent name to model name."""
        return dict(self.started.models) if self.started is not None else {}

    @property
    def data_names(self) -> tuple[str, ...]:
        """The names of the data the agents were given."""
        if self.data is not None:
            return self.data.names
        return self.started.data if self.started is not None else ()

    @property
    def ran(self) -> list[StepRecord]:
        """The steps whose code went to the kernel, in order (the last may still run)."""
        return [self.steps[n] for n in sorted(self.steps) if self.steps[n].ran]

    @property
    def usage(self) -> dict[str, Usage]:
        """Tokens per agent (the speaker selector too): counted as calls finish, and
        settled by the run's end."""
        return dict(self._ledger.usage)

    @property
    def costs(self) -> dict[str, float | None]:
        """Dollars per agent, None where the model's price is unknown."""
        return dict(self._ledger.costs)

    @property
    def tokens(self) -> int:
        return self._ledger.total.total_tokens

    @property
    def cost(self) -> float | None:
        """Dollars over all agents (the run's own total once it ended); None when any
        model's price is unknown."""
        if self.finished is not None:
            return self.finished.cost
        cost = self._ledger.cost
        return None if cost is None else float(cost)

    @property
    def reason(self) -> StopReason | None:
        return self.finished.reason if self.finished is not None else None

    @property
    def outcome(self) -> Outcome | None:
        """How the run ended (None while it goes on); see :attr:`StopReason.outcome`."""
        if self.finished is not None:
            return self.finished.reason.outcome
        return "failed" if self.abandoned is not None else None

    @property
    def ended(self) -> bool:
        return self.outcome is not None

    @property
    def final_report(self) -> str | None:
        """The report the run ended with, else the last one proposed."""
        if self.finished is not None and self.finished.final_report is not None:
            return self.finished.final_report
        latest = self.report.latest if self.report is not None else None
        return latest.text if latest is not None else None

    def provenance(self, number: int, *, author: str | None = None) -> dict[str, Any]:
        """What the code cell of step ``number`` carries in ``metadata["agentnb"]``, in
        the saved notebook and in the live one: the run, the step, who wrote the code
        (step 0, the data loading, is agentnb's) and whether the user edited it."""
        step = self.steps.get(number)
        if author is None:
            author = "agentnb" if number == 0 else (step and step.author) or "unknown"
        return {
            "run_id": self.run_id,
            "step": number,
            "author": author,
            "edited": step is not None and step.edited,
        }


_STEP_AFTER: dict[str, StepStatus] = {
    "approve": "approved",
    "edit": "approved",
    "reject": "sent back",
    "stop": "stopped",
}
_REPORT_AFTER: dict[str, ReportStatus] = {
    "approve": "accepted",
    "edit": "accepted",
    "reject": "sent back",
    "stop": "stopped",
}


def _thinking(event: AgentThinking) -> str:
    if event.phase == "review_step":
        return f"{event.agent} reviewing {subject(event.step)}"
    if event.phase == "review_final":
        return f"{event.agent} reviewing {subject(None, short=True)}"
    if event.phase == "select":
        return "choosing who speaks"
    return f"{event.agent} thinking"

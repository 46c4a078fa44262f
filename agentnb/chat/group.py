"""The group chat: authors propose steps, reviewers judge them, the user approves,
the executor runs them, until the final report is approved or a stop condition
ends the run. One async engine; every entry point (magic, CLI, ``agentnb.run``)
drives this.

The phases are fixed, so the critic always sees a step before it runs::

    propose ─► review ─► approve ─► execute ─┐
       ▲  └─ final report ─► review ─► approve ─► done
       └──────── REVISE / rejected / result ─┘

A :mod:`speaker selector <agentnb.chat.speakers>` decides who speaks within a phase.
Everything that happens is an :mod:`event <agentnb.chat.events>`, written to the
transcript first and then handed to the observers.

One module for one class, past the usual length on purpose: the loop, the turns
(prompt, model call, reading the reply) and the stopping (an abandoned call, an
interrupted step) share the run's state: the ledger, the call in flight, the halt
reason. What a run returns and takes lives in :mod:`agentnb.chat.result`.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from ..errors import AgentnbError, ConfigError, KernelError, ModelError
from ..kernel.data import summary_code
from ..models.base import (
    ChatMessage,
    ContextTooLong,
    ModelClient,
    ModelReply,
    ToolCall,
    ToolsRefused,
    Usage,
    estimate_tokens,
    message_text,
)
from .approval import (
    ApprovalMode,
    ApprovalRequest,
    Approver,
    AutoApprover,
    Decision,
    needs_approval,
)
from .context import Brief, ContextLimits, author_prompt, review_prompt
from .events import (
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
    Phase,
    RunFinished,
    RunStarted,
    TokenDelta,
)
from .messages import (
    AgentMessage,
    Execution,
    Feedback,
    FinalReport,
    Proposal,
    Review,
    Step,
    StepResult,
    apply_updates,
    subject,
)
from .protocol import (
    AuthorReply,
    ProtocolViolation,
    as_text,
    author_from_calls,
    parse_author,
    parse_review,
    review_from_calls,
    split_reasoning,
    tools_for,
)
from .result import Executor, Guards, RunResult, check_task
from .resume import Resumption
from .roles import Role, load_prompt
from .speakers import SelectionState, SelectPhase, SpeakerSelector, make_selector
from .termination import RunStats, StopReason, TerminationCondition
from .transcript import TranscriptWriter
from .usage import Ledger, PriceTable

__all__ = ["Executor", "GroupChat", "Guards", "RunResult", "check_task"]

T = TypeVar("T")


class _Stopped(Exception):
    def __init__(self, reason: StopReason) -> None:
        super().__init__(reason.message)
        self.reason = reason


@dataclass
class _Pending:
    """The proposal the authors are working on, and what was said about it."""

    text: str = ""
    feedback: list[str] = field(default_factory=list)
    revisions: int = 0

    def revise(self, text: str, feedback: str, *, count: bool = True) -> None:
        self.text, self.feedback = text, [feedback]
        self.revisions += count


def _normalise(code: str) -> str:
    return re.sub(r"\s+", " ", code).strip()


class GroupChat:
    """One run of the analysis chat.

    Args:
        roles: the participants; at least one author. Built-ins: ``ANALYST``, ``CRITIC``.
        models: a model client per role name (``selector`` for a model selector).
        executor: where steps run, usually a started ``ManagedKernel``.
        approve: ``each``, ``final`` or ``never`` (see :mod:`agentnb.chat.approval`).
        approver: asked when ``approve`` requires; default approves everything.
        selector: ``workflow``, ``round_robin``, ``model`` or a function.
        termination: extra stop conditions (``MaxTurns(30) | TokenBudget(...)``).
        guards: loop guard limits.
        data_code: code that loads the data (runs first, as step 0).
        data_names: variables in the kernel to summarise for the agents.
        step_timeout: seconds a step may run (None: the executor's own limit).
        history: what earlier runs of the session found.
        vision: send plot images to models that accept them.
        transcript: the JSONL file to append events to (None: no transcript).
        observers: functions called with every event, after the transcript.
        resume: an earlier run to continue (:mod:`agentnb.chat.resume`): its steps
            run again first, then the chat goes on.
        protocol: ``auto`` (tool calls where a model's client takes them, else
            text), ``tools`` (tool calls; a client that takes none is an error) or
            ``text``. An endpoint that refuses tools moves to text, with a notice.
    """

    def __init__(
        self,
        *,
        roles: Sequence[Role],
        models: Mapping[str, ModelClient],
        executor: Executor,
        approve: ApprovalMode = "never",
        approver: Approver | None = None,
        selector: str | SpeakerSelector | Callable[[SelectionState], object] = "workflow",
        termination: TerminationCondition | None = None,
        guards: Guards | None = None,
        limits: ContextLimits | None = None,
        data_code: str | None = None,
        data_names: Sequence[str] = (),
        step_timeout: float | None = None,
        history: str = "",
        vision: bool = False,
        prices: PriceTable | None = None,
        transcript: Path | None = None,
        run_id: str | None = None,
        observers: Sequence[Callable[[Event], None]] = (),
        watch_interval: float = 0.25,
        protocol: str = "auto",
        resume: Resumption | None = None,
    ) -> None:
        names = [r.name for r in roles]
        if len(set(names)) != len(names):
            raise ConfigError(f"role names must be unique: {names}")
        self.authors = tuple(r for r in roles if r.kind == "author")
        self.reviewers = tuple(r for r in roles if r.kind == "reviewer")
        if not self.authors:
            raise ConfigError("a chat needs at least one author role (such as the analyst)")
        missing = [n for n in names if n not in models]
        if missing:
            raise ConfigError(f"no model given for: {', '.join(missing)}")
        self.roles = {r.name: r for r in roles}
        self.models = dict(models)
        if protocol not in ("auto", "tools", "text"):
            raise ConfigError(f"--protocol must be auto, tools or text, not {protocol!r}")
        self.tools = {
            name: _takes_tools(model) and protocol != "text" for name, model in models.items()
        }
        """Whether each agent replies with tool calls (else in the text protocol)."""
        refused = [n for n in names if protocol == "tools" and not self.tools[n]]
        if refused:
            raise ConfigError(
                f"--protocol tools: the model of {', '.join(refused)} "
                f"({', '.join(self.models[n].name for n in refused)}) takes no tool calls "
                "(scripted and replayed models reply in text); use --protocol auto or text"
            )
        self.executor = executor
        self.approve = approve
        self.approver = approver or AutoApprover()
        self.selector = make_selector(selector)
        self.termination = termination
        self.guards = guards or Guards()
        self.limits = limits or ContextLimits()
        self.data_code = data_code
        self.data_names = tuple(data_names)
        self.step_timeout = step_timeout
        self.history = history
        self.vision = vision
        self.prices = prices or PriceTable.load()
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.transcript_path = transcript
        self.observers = list(observers)
        self.watch_interval = watch_interval
        self.resume = resume

        self.steps: list[Step] = []
        self.ledger = Ledger()
        self.final_report: str | None = None
        self.data_summary = ""
        self.files_note = ""
        """What the agents are told of where files may be written (a sandboxed kernel)."""
        self.setup: Execution | None = None
        self._task = ""
        self._turns = 0
        self._seq = 0
        self._last: AgentMessage | None = None
        self._started = 0.0
        self._halt_reason: StopReason | None = None
        self._inflight: asyncio.Future[Any] | None = None
        self._executing = False
        self._interrupting: asyncio.Future[None] | None = None
        self._writer: TranscriptWriter | None = None
        self._queue: asyncio.Queue[Event] | None = None
        self.result: RunResult | None = None

    # --- public ------------------------------------------------------------------

    async def run(self, task: str) -> RunResult:
        """Run the chat to its end and return the result."""
        async for _ in self.run_stream(task):
            pass
        assert self.result is not None
        return self.result

    async def run_stream(self, task: str) -> AsyncIterator[Event]:
        """Run the chat, yielding every event as it happens (``RunFinished`` last).

        Leaving the loop early stops the run.
        """
        check_task(task)
        self._queue = asyncio.Queue()
        runner = asyncio.ensure_future(self._run(task))
        finished = False
        try:
            while not finished:
                event = await self._queue.get()
                finished = isinstance(event, RunFinished)
                yield event
        finally:
            if not finished:
                self.stop()
            # the run always ends (and emits RunFinished); this raises an agentnb bug
            await runner

    def stop(self, reason: StopReason | None = None) -> None:
        """End the run: a model call or approval in progress is abandoned, a running
        step is interrupted. Safe to call from any callback on the chat's loop."""
        self._halt(reason or StopReason("user_stop", "stopped by the user"))

    # --- the run -------------------------------------------------------------------

    async def _run(self, task: str) -> None:
        self._task = task
        self._started = time.monotonic()
        if self.transcript_path is not None:
            self._writer = TranscriptWriter(self.transcript_path)
        watcher = asyncio.ensure_future(self._watch())
        reason = StopReason("error", "the run ended unexpectedly")
        try:
            self._emit(
                RunStarted(
                    task=task,
                    models={name: self.models[name].name for name in self.roles},
                    approve=self.approve,
                    data=self.data_names,
                    resumed_from=self.resume.run_id if self.resume else None,
                )
            )
            await self._prepare()
            if self.resume is not None:
                await self._replay(self.resume)
            reason = await self._converse()
        except _Stopped as stopped:
            reason = stopped.reason
        except ModelError as exc:
            reason = StopReason("model_error", str(exc))
        except KernelError as exc:
            reason = StopReason("kernel_error", str(exc))
        except AgentnbError as exc:
            reason = StopReason("error", str(exc))
        except asyncio.CancelledError:
            reason = self._halt_reason or StopReason("user_stop", "the run was cancelled")
        except Exception as exc:
            # a bug of agentnb: the run still ends, with a reason, before it is raised
            reason = StopReason("error", f"agentnb failed: {type(exc).__name__}: {exc}")
            raise
        finally:
            watcher.cancel()
            self._finish(task, reason)

    def _finish(self, task: str, reason: StopReason) -> None:
        if self._halt_reason is not None and reason.kind != "approved":
            reason = self._halt_reason
        self.result = RunResult(
            run_id=self.run_id,
            task=task,
            final_report=self.final_report,
            steps=tuple(self.steps),
            usage=dict(self.ledger.usage),
            cost=self.ledger.cost,
            stop_reason=reason,
            transcript_path=self.transcript_path,
            data_summary=self.data_summary,
            setup=self.setup,
            costs=dict(self.ledger.costs),
        )
        self._emit(
            RunFinished(
                reason=reason,
                final_report=self.final_report,
                usage=dict(self.ledger.usage),
                cost=self.ledger.cost,
                costs=dict(self.ledger.costs),
            )
        )
        if self._writer is not None:
            self._writer.close()

    async def _prepare(self) -> None:
        """Start the kernel, load the data files (step 0) and summarise the data."""
        start = getattr(self.executor, "start", None)
        if start is not None:
            # before any model call: a sandbox that cannot start costs no tokens
            await self._guarded(start())
            ready = KernelReady(
                isolation=getattr(self.executor, "isolation", ""),
                sandboxed=getattr(self.executor, "sandboxed", None),
                scratch=getattr(self.executor, "scratch", None),
            )
            self._emit(ready)
            if ready.scratch:
                # the variable, not the path: a prompt stays the same from run to run,
                # so the response cache still answers an unchanged analysis
                self.files_note = (
                    "The working folder is read-only. Write files only under the folder "
                    "in the environment variable AGENTNB_SCRATCH."
                )
        if self.data_code:
            self._emit(ExecutionStarted(step=0, code=self.data_code))
            self.setup = await self._guarded(self.executor.execute(self.data_code), execution=True)
            self._emit(ExecutionFinished(step=0, execution=self.setup))
            if not self.setup.ok:
                raise _Stopped(
                    StopReason(
                        "error",
                        "the data could not be loaded:\n" + self.setup.to_model_text(2_000),
                    )
                )
        if self.data_names:
            summary = await self._guarded(
                self.executor.execute(summary_code(list(self.data_names))), execution=True
            )
            self.data_summary = summary.stdout.strip() or summary.to_model_text(2_000)
            self._emit(DataReady(names=self.data_names, summary=self.data_summary))

    async def _converse(self) -> StopReason:
        pending = _Pending()
        failed: dict[str, int] = {}  # normalised code that failed -> its step
        repeats = 0
        errors_in_a_row = 0
        while True:
            author = await self._select_one("propose", self.authors, pending.text)
            reply = await self._author_turn(author, pending)
            if reply.is_final:
                report = await self._conclude(author, reply, pending)
                if report is None:
                    continue
                self.final_report = report
                return StopReason("approved", f"{subject(None)} was approved")

            number = len(self.steps) + 1
            self._post(
                Proposal(
                    sender=author,
                    step=number,
                    text=reply.text,
                    rationale=reply.rationale,
                    code=reply.code,
                )
            )
            earlier = failed.get(_normalise(reply.code))
            if earlier is not None:
                repeats += 1
                if repeats > self.guards.repeated_failures:
                    raise _Stopped(
                        StopReason(
                            "loop_guard",
                            f"{author} kept proposing code that already failed in "
                            f"{subject(earlier)} ({repeats} times); stopped to save tokens",
                        )
                    )
                words = (
                    f"This code is the same as {subject(earlier)}, which failed; it was not run "
                    "again. Change the approach."
                )
                self._post(Feedback(sender="agentnb", text=words, step=number))
                self._emit(Notice(level="warning", text=words, agent=author))
                pending.revise(reply.text, f"agentnb: {words}")
                continue

            approved, reviews = await self._review(
                author, number, reply.text, reply.rationale, reply.code
            )
            if not approved:
                self._check_revisions(pending, subject(number))
                pending.revise(reply.text, reviews[-1])
                continue

            code = reply.code
            if needs_approval(self.approve, "step"):
                request = ApprovalRequest(
                    kind="step",
                    step=number,
                    text=reply.rationale,
                    code=code,
                    reviews=tuple(reviews),
                )
                decision = await self._ask(request)
                if decision.action == "reject":
                    words = decision.feedback.strip() or "The user rejected this step."
                    self._post(Feedback(sender="user", text=words, step=number))
                    pending.revise(reply.text, f"user: {words}", count=False)
                    continue
                if decision.action == "edit" and decision.code and decision.code.strip():
                    code = decision.code

            execution = await self._execute(number, code)
            step = Step(
                number=number,
                author=author,
                rationale=reply.rationale,
                code=code,
                proposed_code=reply.code,
                execution=execution,
                reviews=tuple(reviews),
            )
            self.steps.append(step)
            self._post(
                StepResult(sender="executor", step=number, execution=execution, edited=step.edited)
            )
            pending = _Pending()
            if execution.ok:
                errors_in_a_row = 0
                continue
            failed[_normalise(code)] = number
            failed.setdefault(_normalise(reply.code), number)
            errors_in_a_row += 1
            if errors_in_a_row >= self.guards.consecutive_errors:
                raise _Stopped(
                    StopReason(
                        "loop_guard",
                        f"{errors_in_a_row} steps in a row failed (the limit is "
                        f"{self.guards.consecutive_errors}); the last: {execution.status}",
                    )
                )

    async def _conclude(self, author: str, reply: AuthorReply, pending: _Pending) -> str | None:
        """Review (and approve) a final report; None sends the authors back to work."""
        report = reply.text
        self._post(FinalReport(sender=author, text=report))
        approved, reviews = await self._review(author, None, report, report, "")
        if not approved:
            self._check_revisions(pending, subject(None))
            pending.revise(report, reviews[-1])
            return None
        if needs_approval(self.approve, "final"):
            decision = await self._ask(
                ApprovalRequest(kind="final", step=None, text=report, reviews=tuple(reviews))
            )
            if decision.action == "reject":
                words = decision.feedback.strip() or "The user did not accept the report."
                self._post(Feedback(sender="user", text=words))
                pending.revise(report, f"user: {words}", count=False)
                return None
            if decision.action == "edit" and decision.code and decision.code.strip():
                report = decision.code
        return report

    def _check_revisions(self, pending: _Pending, what: str) -> None:
        if pending.revisions + 1 >= self.guards.revisions_per_step:
            raise _Stopped(
                StopReason(
                    "loop_guard",
                    f"the reviewers asked for revisions of {what} {pending.revisions + 1} times "
                    f"(the limit is {self.guards.revisions_per_step})",
                )
            )

    # --- turns ---------------------------------------------------------------------

    def _brief(self) -> Brief:
        return Brief(
            task=self._task,
            data_summary=self.data_summary,
            files=self.files_note,
            history=self.history,
            steps=self.steps,
        )

    async def _author_turn(self, author: str, pending: _Pending) -> AuthorReply:
        def prompt(tools: bool) -> list[ChatMessage]:
            return author_prompt(
                self.roles[author],
                self._brief(),
                proposal=pending.text,
                feedback=pending.feedback,
                vision=self.vision and self.models[author].accepts_images,
                limits=self.limits,
                tools=tools,
            )

        step = len(self.steps) + 1
        return await self._parsed(author, prompt, "propose", step, parse_author, author_from_calls)

    async def _review(
        self, author: str, step: int | None, text: str, rationale: str, code: str
    ) -> tuple[bool, list[str]]:
        """Ask the reviewers; (approved, comments). The first REVISE ends the review."""
        if not self.reviewers:
            return True, []
        phase: SelectPhase = "review_step" if step is not None else "review_final"
        names = await self._select(phase, self.reviewers, text)
        comments: list[str] = []
        for name in names:

            def prompt(tools: bool, name: str = name) -> list[ChatMessage]:
                return review_prompt(
                    self.roles[name],
                    self._brief(),
                    author=author,
                    step=step,
                    text=rationale,
                    code=code,
                    vision=self.vision and self.models[name].accepts_images,
                    limits=self.limits,
                    tools=tools,
                )

            verdict = await self._parsed(name, prompt, phase, step, parse_review, review_from_calls)
            self._post(
                Review(sender=name, verdict=verdict.verdict, text=verdict.comments, step=step)
            )
            comments.append(f"{name}: {verdict.comments}" if verdict.comments else f"{name}: -")
            if verdict.verdict == "revise":
                return False, comments
        return True, comments

    async def _parsed(
        self,
        agent: str,
        build: Callable[[bool], list[ChatMessage]],
        phase: Phase,
        step: int | None,
        parse: Callable[[str], T],
        from_calls: Callable[[Sequence[ToolCall], str], T],
    ) -> T:
        """Call ``agent`` and read its reply (its tool call, else its text); one
        corrective re-prompt, then stop."""
        prompt = build(self.tools[agent])
        try:
            reply = await self._call(agent, prompt, phase, step)
        except ToolsRefused as refused:
            self._tools_refused(agent, refused)
            prompt = build(False)
            reply = await self._call(agent, prompt, phase, step)
        except ContextTooLong as overflow:
            if self.limits.full_steps is not None:  # compacted already: nothing left to cut
                raise
            self.limits = self.limits.compacted()
            self._emit(
                Notice(
                    level="warning",
                    text=f"{overflow} From now on the oldest steps are compacted; asking again.",
                    agent=agent,
                )
            )
            prompt = build(self.tools[agent])
            reply = await self._call(agent, prompt, phase, step)
        for attempt in range(self.guards.protocol_retries + 1):
            text = reply.text
            try:
                if reply.finish_reason == "length":
                    # the rest is unknown: a cut step would run half a program
                    raise ProtocolViolation(
                        "it was cut off at the token limit before it ended, so none of it "
                        "was used. Reply again, shorter: one small step, or a shorter report."
                    )
                if reply.tool_calls:
                    return from_calls(reply.tool_calls, split_reasoning(text)[0])
                return parse(text)
            except ProtocolViolation as problem:
                if attempt == self.guards.protocol_retries:
                    raise _Stopped(
                        StopReason(
                            "protocol",
                            f"{agent} replied outside the reply protocol "
                            f"{attempt + 1} times; the last problem: {problem}",
                        )
                    ) from None
                self._emit(
                    Notice(
                        level="warning",
                        text=(
                            f"{agent}'s reply was cut off at the token limit; asking for a "
                            "shorter one"
                            if reply.finish_reason == "length"
                            else f"{agent}'s reply did not follow the protocol; asking again"
                        ),
                        agent=agent,
                    )
                )
                correction = load_prompt("correction").format(problem=problem)
                # reasoning is never resent; a reply of reasoning only still takes its turn
                said = split_reasoning(text)[1] or "…"
                prompt = [*prompt, ChatMessage("assistant", said), ChatMessage("user", correction)]
                reply = await self._call(agent, prompt, phase, step)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call(
        self, agent: str, prompt: Sequence[ChatMessage], phase: Phase, step: int | None
    ) -> ModelReply:
        """One counted model call, cancellable by a stop."""
        model = self.models[agent]
        self._check(pending=sum(estimate_tokens(message_text(m)) for m in prompt))
        self._emit(AgentThinking(agent=agent, phase=phase, step=step))
        started = time.monotonic()

        streamed: list[str] = []
        began = False

        def delta(text: str) -> None:
            streamed.append(text)
            self._emit(TokenDelta(agent=agent, text=text))

        def notice(text: str) -> None:
            self._emit(Notice(level="warning", text=text, agent=agent))

        offer = {"tools": tools_for(self.roles[agent].kind)} if self.tools.get(agent) else {}

        async def complete() -> ModelReply:
            nonlocal began
            began = True
            return await model.complete(
                prompt, role=agent, on_delta=delta, on_notice=notice, **offer
            )

        try:
            reply = await self._guarded(complete())
        except _Stopped:
            if began:  # the server read the prompt and may have answered: it is billed
                said = "".join(streamed)
                tokens = sum(estimate_tokens(message_text(m)) for m in prompt)
                self._count(
                    agent,
                    model.name,
                    ModelReply(said, Usage(tokens, estimate_tokens(said), 1, True), model.name),
                    started,
                )
            raise
        if reply.tool_calls:  # the transcript and a replay keep the calls as text
            reasoning = split_reasoning(reply.text)[0]
            written = "\n\n".join(as_text(call) for call in reply.tool_calls)
            thought = f"<think>\n{reasoning}\n</think>\n\n" if reasoning else ""
            reply = replace(reply, text=thought + written)
        self._count(agent, model.name, reply, started)
        return reply

    def _count(self, agent: str, name: str, reply: ModelReply, started: float) -> None:
        """Put a call's tokens and cost on the ledger, and say so."""
        cost = self.prices.cost(reply.model or name, reply.usage)
        if cost is None and reply.model != name:
            cost = self.prices.cost(name, reply.usage)
        self.ledger.add(agent, reply.usage, cost)
        self._turns += 1
        self._emit(
            ModelCalled(
                agent=agent,
                model=reply.model or name,
                text=reply.text,
                usage=reply.usage,
                cost=cost,
                duration=time.monotonic() - started,
                cached=reply.cached,
            )
        )

    def _tools_refused(self, agent: str, refused: ToolsRefused) -> None:
        """Every agent on that client goes on in the text protocol, said once."""
        client = self.models[agent]
        moved = [
            name for name, model in self.models.items() if model is client and self.tools[name]
        ]
        for name in moved:
            self.tools[name] = False
        self._emit(
            Notice(
                level="info",
                text=f"{refused}; {', '.join(moved)} now reply in the text protocol",
                agent=agent,
            )
        )

    async def _select(
        self, phase: SelectPhase, candidates: tuple[Role, ...], last: str
    ) -> Sequence[str]:
        state = SelectionState(
            phase=phase,
            candidates=candidates,
            task=self._task,
            last_text=last,
            step=len(self.steps) + 1,
        )

        async def ask(prompt: Sequence[ChatMessage]) -> str:
            if "selector" not in self.models:
                raise ConfigError(
                    "the model speaker selector needs a model: give models['selector']"
                )
            return (await self._call("selector", prompt, "select", state.step)).text

        fallbacks = getattr(self.selector, "fallbacks", 0)
        names = list(await self.selector.select(state, ask))
        if getattr(self.selector, "fallbacks", 0) > fallbacks:
            self._emit(
                Notice(
                    level="warning",
                    text=f"the speaker selector named no candidate; {names[0]} speaks",
                    agent="selector",
                )
            )
        if not names:
            raise ConfigError(f"the speaker selector chose nobody in phase {phase}")
        return names

    async def _select_one(self, phase: SelectPhase, candidates: tuple[Role, ...], last: str) -> str:
        return (await self._select(phase, candidates, last))[0]

    async def _ask(self, request: ApprovalRequest) -> Decision:
        self._emit(ApprovalRequested(request=request))
        decision = await self._guarded(self.approver.decide(request))
        self._emit(ApprovalDecided(request=request, decision=decision))
        if decision.action == "stop":
            raise _Stopped(
                StopReason("user_stop", f"stopped by the user at {subject(request.step)}")
            )
        return decision

    async def _execute(self, number: int, code: str, *, replayed: bool = False) -> Execution:
        self._check()
        self._emit(ExecutionStarted(step=number, code=code, replayed=replayed))
        began = time.monotonic()

        def running(outputs: Sequence[dict[str, Any]]) -> None:
            elapsed = time.monotonic() - began
            self._emit(ExecutionOutput(step=number, outputs=tuple(outputs), elapsed=elapsed))

        live = {"on_output": running} if _shows_progress(self.executor) else {}
        execution = await self._guarded(
            self.executor.execute(code, timeout=self.step_timeout, **live), execution=True
        )
        self._turns += 1
        if execution.updates:
            self._apply_updates(execution)
        self._emit(ExecutionFinished(step=number, execution=execution, replayed=replayed))
        return execution

    def _apply_updates(self, later: Execution) -> None:
        """Earlier steps show what ``later`` changed of their outputs (display updates)."""
        earlier = [self.setup, *(step.execution for step in self.steps)]
        present = [ex for ex in earlier if ex is not None]
        updated = dict(zip(map(id, present), apply_updates(present, later), strict=True))
        if self.setup is not None:
            self.setup = updated[id(self.setup)]
        self.steps[:] = [replace(s, execution=updated[id(s.execution)]) for s in self.steps]

    async def _replay(self, resume: Resumption) -> None:
        """The earlier run's steps again: those that worked run in this kernel, the
        others are kept as they were (the analyst sees the same history)."""
        again = sum(1 for s in resume.steps if s.execution.ok)
        self._emit(
            Notice(
                level="info",
                text=f"resuming run {resume.run_id} ({resume.stopped}): running its "
                f"{again} step{'s' if again != 1 else ''} that worked again in this kernel",
            )
        )
        for old in resume.steps:
            if old.execution.ok:
                step = replace(
                    old, execution=await self._execute(old.number, old.code, replayed=True)
                )
            else:
                step = old
            self.steps.append(step)
            self._post(
                StepResult(
                    sender="executor",
                    step=step.number,
                    execution=step.execution,
                    edited=step.edited,
                )
            )

    # --- stopping ------------------------------------------------------------------

    async def _guarded(self, work: Awaitable[T], *, execution: bool = False) -> T:
        """Await ``work``; a stop cancels it (an execution is interrupted instead,
        so its partial output is kept)."""
        if self._halt_reason is not None:
            if asyncio.iscoroutine(work):
                work.close()
            raise _Stopped(self._halt_reason)
        future = asyncio.ensure_future(work)
        self._inflight, self._executing = future, execution
        try:
            await asyncio.wait({future})
        except asyncio.CancelledError:
            future.cancel()
            raise
        finally:
            self._inflight, self._executing = None, False
        if future.cancelled():
            raise _Stopped(self._halt_reason or StopReason("user_stop", "stopped by the user"))
        result = future.result()
        halted = self._halted()  # a stop may have come while we waited
        if halted is not None and not execution:
            raise _Stopped(halted)
        return result

    def _halted(self) -> StopReason | None:
        return self._halt_reason

    def _halt(self, reason: StopReason) -> None:
        if self._halt_reason is not None:
            return
        self._halt_reason = reason
        inflight = self._inflight
        if inflight is None or inflight.done():
            return
        if self._executing:
            self._interrupting = asyncio.ensure_future(self.executor.interrupt())
        else:
            inflight.cancel()

    def _stats(self, pending: int = 0) -> RunStats:
        return RunStats(
            turns=self._turns,
            tokens=self.ledger.total.total_tokens,
            cost=self.ledger.cost,
            elapsed=time.monotonic() - self._started,
            last=self._last,
            pending_tokens=pending,
        )

    def _check(self, pending: int = 0) -> None:
        if self._halt_reason is not None:
            raise _Stopped(self._halt_reason)
        if self.termination and (reason := self.termination.check(self._stats(pending))):
            raise _Stopped(reason)

    async def _watch(self) -> None:
        """Conditions that can trip while a call or a step is in flight (time)."""
        while self.termination is not None:
            await asyncio.sleep(self.watch_interval)
            if self._inflight is not None and (reason := self.termination.check(self._stats())):
                self._halt(reason)

    # --- events --------------------------------------------------------------------

    def _post(self, message: AgentMessage) -> None:
        self._last = message
        self._emit(MessagePosted(message=message))
        self._check()

    def _emit(self, event: Event) -> None:
        self._seq += 1
        event = replace(event, run_id=self.run_id, seq=self._seq, time=time.time())
        lost: OSError | None = None
        if self._writer is not None:
            try:
                self._writer.write(event)
            except OSError as exc:  # a full disk must not end the analysis
                self._writer.close()
                self._writer, lost = None, exc
        for observer in self.observers:
            observer(event)
        if self._queue is not None:
            self._queue.put_nowait(event)
        if lost is not None:
            self._emit(
                Notice(
                    level="error",
                    text=f"the transcript {self.transcript_path} can no longer be written "
                    f"({lost.strerror or lost}); the run goes on, its events are kept only "
                    "in memory (the widget, %agents save)",
                )
            )


def _takes_tools(model: ModelClient) -> bool:
    """A client offers tools only if it says so (``takes_tools``)."""
    return bool(getattr(model, "takes_tools", False))


def _shows_progress(executor: Executor) -> bool:
    """The executor's ``execute`` takes ``on_output`` (see :class:`Executor`)."""
    try:
        return "on_output" in inspect.signature(executor.execute).parameters
    except (TypeError, ValueError):
        return False

"""The chat widget: a run's events rendered live in a notebook, and the user's approvals.

:class:`ChatView` is built from stock ipywidgets only (VBox, HBox, HTML, Button,
Textarea), so it renders in JupyterLab, Notebook 7 and VS Code without a
front-end extension. It is an observer (:meth:`ChatView.handle`, for
``on_event=``) and an approver (:meth:`ChatView.decide`), and it decides nothing
itself: the chat tells it what happened, and it returns what the user clicked.

Every widget update is a comm message to the browser, so an event updates only
the card it concerns, and streamed tokens are buffered and shown at most once per
``throttle`` seconds per card. The HTML comes from :mod:`agentnb.ui.render`.

Layout: a header (the task, the phase, elapsed time, tokens and cost per agent,
Save and Stop), then one card per turn in order. A step's card gathers its whole
life: the proposal, the reviews of it, the approval buttons, the decision, and
the results of running it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import ipywidgets as widgets

from ..chat.approval import ApprovalRequest, Decision
from ..chat.events import (
    AgentThinking,
    ApprovalDecided,
    ApprovalRequested,
    DataReady,
    Event,
    ExecutionFinished,
    ExecutionStarted,
    KernelReady,
    MessagePosted,
    ModelCalled,
    Notice,
    RunFinished,
    RunStarted,
    TokenDelta,
)
from ..chat.messages import Execution, Feedback, FinalReport, Proposal, Review, StepResult
from ..chat.protocol import split_reasoning
from ..errors import AgentnbError
from ..models.base import Usage
from .render import (
    State,
    agent_classes,
    decision_html,
    end_html,
    execution_html,
    format_duration,
    head_html,
    inserted_html,
    markdown_html,
    model_meta,
    notice_html,
    proposal_html,
    reasoning_html,
    report_html,
    review_html,
    status_html,
    streaming_html,
    stylesheet,
    summary_html,
    thinking_html,
    title_html,
    usage_html,
)

__all__ = ["ChatView"]

# stop reasons that are someone's choice (the user's, a limit's) rather than a failure
_STOPPED_KINDS = frozenset({"user_stop", "max_turns", "budget", "time_limit", "text_mention"})
_TICK = 1.0
"""Seconds between updates of the elapsed time while a run is live."""


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _html(value: str, *classes: str) -> Any:
    widget = widgets.HTML(value=value)
    for css in classes:
        widget.add_class(css)
    return widget


def _button(description: str, css: str, style: str = "", tooltip: str = "") -> Any:
    button = widgets.Button(description=description, button_style=style, tooltip=tooltip)
    button.add_class(css)
    return button


class _Turn:
    """One agent's turn: its widgets, what they show, and its streamed text.

    A turn is either a card (``box`` holds ``main`` and, below it, the reviews of
    the card, its approval panel, its execution and its notes), or a review nested
    in the card it reviews (``box`` is None, ``host`` is that card).
    """

    def __init__(
        self, agent: str, action: str, *, host: _Turn | None = None, phase: str = ""
    ) -> None:
        self.agent = agent
        self.action = action
        self.phase = phase
        self.meta = ""
        self.badge = ""
        self.body = thinking_html()
        self.reasoning = ""
        """Shown folded above the body; never part of what the agents are sent."""
        self.streaming = True
        self.host = host
        self.box: Any = None
        if host is None:
            self.main = _html(self._value())
            self.box = widgets.VBox([self.main])
            for css in ("agentnb-card", "agentnb-turn", *agent_classes(agent)):
                self.box.add_class(css)
        else:
            classes = ("agentnb-review", "agentnb-turn", *agent_classes(agent))
            self.main = _html(self._value(), *classes)
        # streaming
        self.text = ""
        self.chunks: list[str] = []
        self.flushed_at = float("-inf")
        self.timer: asyncio.TimerHandle | None = None
        # a card's parts, created when first needed
        self.reviews: list[_Turn] = []
        self.parts: dict[str, Any] = {}
        self.foot: list[str] = []
        self.proposal: Proposal | None = None
        self.edited: str | None = None
        self.decided = False
        self.ran = False

    @property
    def card(self) -> _Turn:
        return self.host if self.host is not None else self

    def _value(self) -> str:
        head = head_html(self.agent, self.action, self.meta, badge=self.badge)
        return head + reasoning_html(self.reasoning, live=self.streaming) + self.body

    def update(
        self,
        *,
        action: str | None = None,
        meta: str | None = None,
        badge: str | None = None,
        body: str | None = None,
    ) -> None:
        """Change what the turn shows, in one widget update."""
        self.action = self.action if action is None else action
        self.meta = self.meta if meta is None else meta
        self.badge = self.badge if badge is None else badge
        self.body = self.body if body is None else body
        self.main.value = self._value()

    def stop_streaming(self) -> None:
        self.streaming = False
        self.chunks.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # --- a card's parts ----------------------------------------------------------------

    def _layout(self) -> None:
        order = [self.main, *(r.main for r in self.reviews)]
        order += [self.parts[n] for n in ("approval", "execution", "foot") if n in self.parts]
        self.box.children = tuple(order)

    def add_review(self, review: _Turn) -> None:
        self.reviews.append(review)
        self._layout()

    def set_part(self, name: str, widget: Any | None) -> None:
        if widget is None:
            if self.parts.pop(name, None) is not None:
                self._layout()
            return
        if self.parts.get(name) is not widget:
            self.parts[name] = widget
            self._layout()

    def show_html(self, name: str, value: str, css: str) -> None:
        """An HTML part: its value replaced, or the part created."""
        part = self.parts.get(name)
        if part is not None and isinstance(part, widgets.HTML):
            part.value = value
        else:
            self.set_part(name, _html(value, css))

    def add_foot(self, line: str) -> None:
        self.foot.append(line)
        self.show_html("foot", "".join(self.foot), "agentnb-foot")


class _ApprovalPanel:
    """The buttons of one approval request, with the editor and the feedback box
    they reveal. ``choose`` is called once, with the user's decision."""

    def __init__(self, request: ApprovalRequest, choose: Callable[[Decision], None]) -> None:
        self.request = request
        self._choose = choose
        self.chosen = False
        step = request.kind == "step"
        question = f"Run step {request.step}?" if step else "Accept this report?"
        hint = (
            "Approve it, edit the code first, or reject it with feedback for the analyst."
            if step
            else "Accept it as the answer, or send it back with feedback."
        )
        self.prompt = _html(
            f'<div class="agentnb-approval-prompt">{question}'
            f'<span class="agentnb-approval-hint">{hint}</span></div>'
        )
        if step:
            first = _button("Approve & run", "agentnb-approve", "primary", "run this step")
            first.on_click(lambda _: self.choose(Decision.approve()))
            edit = _button("Edit", "agentnb-edit", tooltip="change the code before it runs")
            edit.on_click(lambda _: self._toggle("editor"))
            others = [edit]
        else:
            first = _button("Accept", "agentnb-accept", "primary", "accept the final report")
            first.on_click(lambda _: self.choose(Decision.approve()))
            others = []
        reject = _button("Reject", "agentnb-reject", tooltip="send it back with feedback")
        reject.on_click(lambda _: self._toggle("feedback"))
        stop = _button("Stop", "agentnb-stop-run", tooltip="end the run here")
        stop.on_click(lambda _: self.choose(Decision.stop()))
        self.buttons = [first, *others, reject, stop]
        self.row = widgets.HBox(self.buttons)
        self.row.add_class("agentnb-buttons")
        self.box = widgets.VBox([self.prompt, self.row])
        self.box.add_class("agentnb-approval")
        self.open: str | None = None
        self.drawers: dict[str, tuple[Any, Any]] = {}
        """Per drawer (editor, feedback): its box and its Textarea."""

    def choose(self, decision: Decision) -> None:
        if self.chosen:
            return  # a second click before the first was taken
        self.chosen = True
        for button in self.buttons:
            button.disabled = True
        self._choose(decision)

    def _toggle(self, name: str) -> None:
        if self.chosen:
            return
        self.open = None if self.open == name else name
        children = [self.prompt, self.row]
        if self.open is not None:
            children.append(self._drawer(self.open)[0])
        self.box.children = tuple(children)

    def _drawer(self, name: str) -> tuple[Any, Any]:
        if name not in self.drawers:
            self.drawers[name] = self._editor() if name == "editor" else self._feedback()
        return self.drawers[name]

    def _editor(self) -> tuple[Any, Any]:
        code = self.request.code
        rows = min(max(code.count("\n") + 2, 4), 30)
        area = widgets.Textarea(value=code, rows=rows)
        area.add_class("agentnb-edit-code")
        run = _button("Run edited", "agentnb-run-edited", "primary", "run your version")
        run.on_click(lambda _: self._run_edited(area))
        return self._drawer_box(area, run, "agentnb-editor"), area

    def _feedback(self) -> tuple[Any, Any]:
        area = widgets.Textarea(
            value="",
            rows=3,
            placeholder="What should change? The analyst reads this before the next proposal.",
        )
        area.add_class("agentnb-feedback-text")
        send = _button("Send feedback", "agentnb-send-feedback", "warning", "reject, saying this")
        send.on_click(lambda _: self.choose(Decision.reject(area.value)))
        return self._drawer_box(area, send, "agentnb-feedback"), area

    def _drawer_box(self, area: Any, action: Any, css: str) -> Any:
        cancel = _button("Cancel", "agentnb-cancel", tooltip="close this")
        cancel.on_click(lambda _: self._toggle(self.open or ""))
        self.buttons += [action, cancel]
        row = widgets.HBox([action, cancel])
        row.add_class("agentnb-buttons")
        box = widgets.VBox([area, row])
        box.add_class(css)
        return box

    def _run_edited(self, area: Any) -> None:
        code = str(area.value)
        if not code.strip():
            area.placeholder = "The code is empty: write the step to run, or use Reject."
            return
        self.choose(Decision.edit(code))


@dataclass
class _Waiting:
    """A decision the chat is waiting for."""

    request: ApprovalRequest
    future: asyncio.Future[Decision]
    loop: asyncio.AbstractEventLoop
    card: _Turn
    panel: _ApprovalPanel


def _settle(future: asyncio.Future[Decision], decision: Decision) -> None:
    if not future.done():
        future.set_result(decision)


class ChatView:
    """The live view of one run in a notebook cell, and its approver.

    Args:
        task: what the user asked (shown in the header).
        throttle: the shortest time, in seconds, between two updates of a card
            that is streaming text. A chunk arriving sooner is buffered; a timer on
            the running event loop shows it when the time is up, and the reply's
            end (``ModelCalled``, ``MessagePosted``) always shows everything.
        clock: where time comes from (for the elapsed time and the throttle).

    Attributes:
        widget: the root widget, to display.
        phase: what the run is doing, in the words the header shows.
        on_stop: called when Stop is clicked.
        on_save: called when Save is clicked; returns the path it saved to. The
            Save button shows only once this is set.
    """

    def __init__(
        self,
        task: str,
        *,
        throttle: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.task = task
        self.throttle = throttle
        self._clock = clock
        self._started = clock()
        self._ended: float | None = None
        self.phase = "starting"
        self._state: State = "live"
        self._reason = ""
        self.on_stop: Callable[[], None] | None = None
        self._on_save: Callable[[], str] | None = None

        self._open: dict[str, _Turn] = {}
        """The turn each agent is speaking in, until its message arrives."""
        self._proposals: dict[int, _Turn] = {}
        """The latest proposal card of each step."""
        self._ran: dict[int, _Turn] = {}
        """The card whose code ran as each step."""
        self._report: _Turn | None = None
        self._data: _Turn | None = None
        self._data_names: tuple[str, ...] = ()
        self._facts: list[str] = []
        self._usage: dict[str, Usage] = {}
        self._costs: dict[str, float | None] = {}
        self._waiting: _Waiting | None = None
        self._finished: RunFinished | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._said: str = ""
        """The last words agentnb said as feedback (its notice repeats them)."""
        self._handlers: dict[type, Callable[[Any], None]] = {
            RunStarted: self._on_run_started,
            AgentThinking: self._on_thinking,
            ModelCalled: self._on_model_called,
            MessagePosted: self._on_message,
            ApprovalRequested: self._on_approval_requested,
            ApprovalDecided: self._on_approval_decided,
            ExecutionStarted: self._on_execution_started,
            ExecutionFinished: self._on_execution_finished,
            DataReady: self._on_data_ready,
            KernelReady: self._on_kernel_ready,
            Notice: self._on_notice,
            RunFinished: self._on_finished,
        }
        self._build()

    # --- the widget tree ---------------------------------------------------------------

    def _build(self) -> None:
        self._title = _html(title_html(self.task), "agentnb-title-row")
        self._status = _html(self._status_value(), "agentnb-phase")
        self._usage_line = _html(usage_html({}, {}), "agentnb-usage")
        self._save = _button("Save", "agentnb-save", tooltip="save the analysis as a notebook")
        self._save.layout.display = "none"
        self._save.on_click(self._save_clicked)
        self._stop = _button("Stop", "agentnb-stop", tooltip="stop the run")
        self._stop.on_click(self._stop_clicked)
        controls = widgets.HBox([self._save, self._stop])
        controls.add_class("agentnb-controls")
        top = widgets.HBox([self._title, controls])
        top.add_class("agentnb-top")
        bar = widgets.HBox([self._status, self._usage_line])
        bar.add_class("agentnb-bar")
        self._note: Any = None
        self._header = widgets.VBox([top, bar])
        self._header.add_class("agentnb-header")
        self._list = widgets.VBox([])
        self._list.add_class("agentnb-list")
        style = _html(f"<style>{stylesheet()}</style>", "agentnb-style")
        self.widget: widgets.VBox = widgets.VBox([style, self._header, self._list])
        self.widget.add_class("agentnb")

    def _append(self, widget: Any) -> None:
        self._list.children = (*self._list.children, widget)

    def _new_card(self, agent: str, action: str, *, phase: str = "") -> _Turn:
        turn = _Turn(agent, action, phase=phase)
        self._append(turn.box)
        return turn

    @property
    def on_save(self) -> Callable[[], str] | None:
        return self._on_save

    @on_save.setter
    def on_save(self, save: Callable[[], str] | None) -> None:
        self._on_save = save
        self._save.layout.display = None if save is not None else "none"

    # --- the header --------------------------------------------------------------------

    def _elapsed(self) -> float:
        return (self._ended if self._ended is not None else self._clock()) - self._started

    def _status_value(self) -> str:
        return status_html(self.phase, self._state, self._elapsed(), self._reason)

    def _set_phase(self, words: str, state: State = "live") -> None:
        self.phase, self._state = words, state
        self._status.value = self._status_value()

    def _show_usage(self) -> None:
        self._usage_line.value = usage_html(self._usage, self._costs)

    def _header_note(self, level: Literal["info", "error"], text: str) -> None:
        css = "agentnb-note-line agentnb-note-error" if level == "error" else "agentnb-note-line"
        value = f'<div class="{css}">{notice_html(level, text)}</div>'
        if self._note is None:
            self._note = _html(value, "agentnb-note")
            self._header.children = (*self._header.children, self._note)
        else:
            self._note.value = value

    def _start_ticker(self) -> None:
        """Update the elapsed time every second while the run is live (only where an
        event loop runs: the kernel's, or a test's)."""
        if self._ticker is not None or self._finished is not None:
            return
        loop = _running_loop()
        if loop is not None:
            self._ticker = loop.call_later(_TICK, self._tick)

    def _tick(self) -> None:
        self._ticker = None
        if self._finished is None:
            self._status.value = self._status_value()
            self._start_ticker()

    # --- the observer ------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        """Show one event of the run (events come in order, each once)."""
        try:
            if isinstance(event, TokenDelta):  # the hot path: nothing else changes
                self._on_delta(event)
                return
            handler = self._handlers.get(type(event))
            if handler is not None:
                handler(event)
        except Exception as exc:
            # a display bug must not end the analysis: say so, and carry on
            self.notify(
                "error",
                f"the widget could not show a {type(event).__name__} event "
                f"({type(exc).__name__}: {exc}); the run goes on and its transcript has it",
            )
        self._start_ticker()

    def _on_run_started(self, event: RunStarted) -> None:
        self._data_names = event.data
        facts = [f"{agent}: {model}" for agent, model in event.models.items()]
        facts.append(f"approve: {event.approve}")
        if event.data:
            facts.append(f"data: {', '.join(event.data)}")
        self._facts = facts
        self._title.value = title_html(self.task, facts)

    def _on_kernel_ready(self, event: KernelReady) -> None:
        self._facts.append(event.label)
        self._title.value = title_html(self.task, self._facts)
        self._title.tooltip = event.isolation

    def _on_thinking(self, event: AgentThinking) -> None:
        previous = self._open.pop(event.agent, None)
        if previous is not None:  # a reply that never became a message (a protocol slip)
            self._close(previous)
            previous.card.box.add_class("agentnb-superseded")
        host = None
        if event.phase == "review_step" and event.step is not None:
            host = self._proposals.get(event.step)
        elif event.phase == "review_final":
            host = self._report
        action = {
            "review_step": f"reviews step {event.step}",
            "review_final": "reviews the report",
            "select": "chooses who speaks next",
        }.get(event.phase, "")
        if host is not None:
            turn = _Turn(event.agent, action, host=host, phase=event.phase)
            host.add_review(turn)
        else:
            turn = self._new_card(event.agent, action, phase=event.phase)
        self._open[event.agent] = turn
        self._set_phase(_thinking_words(event))

    def _on_delta(self, event: TokenDelta) -> None:
        turn = self._open.get(event.agent)
        if turn is None or not turn.streaming:
            return
        turn.chunks.append(event.text)
        wait = turn.flushed_at + self.throttle - self._clock()
        if wait <= 0:
            self._flush(turn)
        elif turn.timer is None:
            loop = _running_loop()
            if loop is not None:  # without a loop, the next delta or the reply flushes
                turn.timer = loop.call_later(wait, self._flush, turn)

    def _flush(self, turn: _Turn) -> None:
        """Show the text streamed so far (one widget update)."""
        if turn.timer is not None:
            turn.timer.cancel()
            turn.timer = None
        if not turn.streaming or not turn.chunks:
            return
        turn.text += "".join(turn.chunks)
        turn.chunks.clear()
        turn.reasoning, answer = split_reasoning(turn.text)
        turn.update(body=streaming_html(answer) if answer else thinking_html())
        turn.flushed_at = self._clock()

    def _close(self, turn: _Turn) -> None:
        """A turn whose message will not come: keep what it said."""
        self._flush(turn)
        turn.stop_streaming()
        if not turn.text:
            turn.update(body='<div class="agentnb-noreply">no reply</div>')

    def _on_model_called(self, event: ModelCalled) -> None:
        self._usage[event.agent] = self._usage.get(event.agent, Usage()) + event.usage
        known = self._costs.get(event.agent, 0.0)
        self._costs[event.agent] = (
            None if known is None or event.cost is None else known + event.cost
        )
        self._show_usage()
        turn = self._open.get(event.agent)
        if turn is None:
            return
        # the reply's whole text is the authority (a retried call may have streamed twice)
        turn.stop_streaming()
        turn.text = event.text
        meta = model_meta(event.model, event.usage, event.duration, cached=event.cached)
        if turn.phase == "select":  # no message follows a speaker choice: one line says it
            self._open.pop(event.agent, None)
            turn.card.box.add_class("agentnb-compact")
            choice = " ".join(event.text.split())[:80]
            turn.update(action=f"chose {choice}", meta=meta, body="")
            return
        turn.reasoning, answer = split_reasoning(event.text)
        turn.update(meta=meta, body=markdown_html(answer))

    def _turn_for(self, sender: str) -> _Turn | None:
        turn = self._open.pop(sender, None)
        if turn is not None:
            self._flush(turn)
            turn.stop_streaming()
        return turn

    def _on_message(self, event: MessagePosted) -> None:
        message = event.message
        if isinstance(message, Proposal):
            self._on_proposal(message)
        elif isinstance(message, FinalReport):
            self._on_report(message)
        elif isinstance(message, Review):
            self._on_review(message)
        elif isinstance(message, Feedback):
            self._on_feedback(message)
        elif isinstance(message, StepResult):
            card = self._ran.get(message.step)
            if card is not None and not card.ran:
                self._show_execution(card, message.step, message.execution)

    def _on_proposal(self, proposal: Proposal) -> None:
        turn = self._turn_for(proposal.sender) or self._new_card(proposal.sender, "")
        earlier = self._proposals.get(proposal.step)
        if earlier is not None and earlier is not turn and not earlier.ran:
            earlier.box.add_class("agentnb-superseded")
        verb = "proposes" if earlier is None else "revises"
        turn.proposal = proposal
        turn.update(action=f"{verb} step {proposal.step}", body=proposal_html(proposal))
        self._proposals[proposal.step] = turn

    def _on_report(self, report: FinalReport) -> None:
        turn = self._turn_for(report.sender) or self._new_card(report.sender, "")
        if self._report is not None and self._report is not turn:
            self._report.box.add_class("agentnb-superseded")
        turn.box.add_class("agentnb-final")
        turn.update(action="final report", body=report_html(report))
        self._report = turn

    def _on_review(self, review: Review) -> None:
        turn = self._turn_for(review.sender)
        if turn is None:
            host = self._proposals.get(review.step) if review.step else self._report
            turn = _Turn(review.sender, "", host=host) if host else None
            if host is not None and turn is not None:
                host.add_review(turn)
            else:
                turn = self._new_card(review.sender, "")
        what = f"step {review.step}" if review.step is not None else "the report"
        turn.update(action=f"reviews {what}", badge=review.verdict, body=review_html(review))

    def _on_feedback(self, feedback: Feedback) -> None:
        card = self._proposals.get(feedback.step) if feedback.step else self._report
        if feedback.sender == "user":
            if card is not None and card.decided:
                return  # the decision line already shows these words
            line = notice_html("warning", f"you: {feedback.text}")
        else:
            self._said = feedback.text
            line = notice_html("warning", f"{feedback.sender}: {feedback.text}")
        if card is not None:
            card.add_foot(line)
        else:
            self._append(_html(line))

    def _on_approval_requested(self, event: ApprovalRequested) -> None:
        card = self._card_for(event.request)
        card.box.add_class("agentnb-pending")
        self._set_phase("awaiting your approval", "waiting")

    def _on_approval_decided(self, event: ApprovalDecided) -> None:
        card = self._card_for(event.request)
        card.box.remove_class("agentnb-pending")
        card.decided = True
        card.show_html(
            "approval", decision_html(event.request, event.decision), "agentnb-decision-line"
        )
        if event.request.kind == "final" and event.decision.action in ("approve", "edit"):
            card.box.add_class("agentnb-accepted")
        self._set_phase("continuing")

    def _on_execution_started(self, event: ExecutionStarted) -> None:
        if event.step == 0:
            names = ", ".join(self._data_names) or "the data"
            self._data = self._new_card("data", f"loading {names}")
            self._data.update(body="")
            self._data.show_html("execution", execution_html(0, None), "agentnb-execution")
            self._set_phase("loading the data")
            return
        card = self._proposals.get(event.step)
        if card is None:  # no proposal seen (a partial event stream): the code stands alone
            card = self._new_card("executor", f"step {event.step}")
            card.update(body="")
        proposed = card.proposal.code if card.proposal is not None else event.code
        card.edited = event.code if event.code != proposed else None
        self._ran[event.step] = card
        card.show_html(
            "execution", execution_html(event.step, None, edited=card.edited), "agentnb-execution"
        )
        self._set_phase(f"running step {event.step}")

    def _on_execution_finished(self, event: ExecutionFinished) -> None:
        if event.step == 0:
            self._data_loaded(event.execution)
            return
        card = self._ran.get(event.step)
        if card is not None:
            self._show_execution(card, event.step, event.execution)

    def _show_execution(self, card: _Turn, step: int, execution: Execution) -> None:
        card.ran = True
        card.show_html(
            "execution", execution_html(step, execution, edited=card.edited), "agentnb-execution"
        )

    def _data_loaded(self, execution: Execution) -> None:
        card = self._data or self._new_card("data", "")
        self._data = card
        names = ", ".join(self._data_names) or "the data"
        if execution.ok:  # the usual case, kept to one line
            card.box.add_class("agentnb-compact")
            card.set_part("execution", None)
            card.update(action=f"loaded {names}", meta=format_duration(execution.duration))
        else:
            card.update(action=f"could not load {names}")
            card.show_html("execution", execution_html(0, execution), "agentnb-execution")

    def _on_data_ready(self, event: DataReady) -> None:
        card = self._data
        if card is None:
            card = self._data = self._new_card("data", "")
            card.box.add_class("agentnb-compact")
        card.update(action=f"loaded {', '.join(event.names)}", body=summary_html(event.summary))

    def _on_notice(self, event: Notice) -> None:
        if event.text == self._said:
            return  # already on the card, as agentnb's feedback
        turn = self._open.get(event.agent) if event.agent else None
        line = notice_html(event.level, event.text)
        if turn is not None:
            turn.card.add_foot(line)
        else:
            self._append(_html(line))

    def _on_finished(self, event: RunFinished) -> None:
        self._finished = event
        self._ended = self._clock()
        for turn in self._open.values():
            self._close(turn)
        self._open.clear()
        self._drop_panel()
        if event.usage:
            self._usage = dict(event.usage)
            self._costs = {a: event.costs.get(a) for a in event.usage}
        self._show_usage()
        reason = event.reason
        state: State = (
            "done" if reason.ok else "stopped" if reason.kind in _STOPPED_KINDS else "failed"
        )
        self._reason = reason.message
        self._set_phase(state, state)
        self._stop.disabled = True
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self._append(_html(end_html(reason, state, len(self._ran), self._elapsed()), "agentnb-end"))

    # --- the approver ------------------------------------------------------------------

    def _card_for(self, request: ApprovalRequest) -> _Turn:
        """The card a request is about; made from the request if none was shown."""
        card = self._proposals.get(request.step or 0) if request.kind == "step" else self._report
        if card is not None:
            return card
        what = f"step {request.step}" if request.kind == "step" else "final report"
        card = self._new_card("agentnb", what)
        body = markdown_html(request.text)
        if request.kind == "step" and request.step is not None:
            card.proposal = Proposal(
                sender="agentnb",
                step=request.step,
                text=request.text,
                rationale=request.text,
                code=request.code,
            )
            body = proposal_html(card.proposal)
            self._proposals[request.step] = card
        else:
            self._report = card
        card.update(body=body)
        return card

    async def decide(self, request: ApprovalRequest) -> Decision:
        """Show the buttons on the card the request is about, and wait for a click."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Decision] = loop.create_future()
        card = self._card_for(request)
        panel = _ApprovalPanel(request, lambda decision: self._chosen(decision))
        self._waiting = _Waiting(request, future, loop, card, panel)
        card.set_part("approval", panel.box)
        card.box.add_class("agentnb-pending")
        self._set_phase("awaiting your approval", "waiting")
        try:
            return await future
        finally:
            # answered, or cancelled because the run stopped: the buttons go either way
            if self._waiting is not None and self._waiting.future is future:
                self._waiting = None
            card.box.remove_class("agentnb-pending")
            if card.parts.get("approval") is panel.box:
                card.set_part("approval", None)

    def _chosen(self, decision: Decision) -> None:
        """A button was clicked: show the decision at once, then answer the chat."""
        waiting = self._waiting
        if waiting is None:
            return
        waiting.card.decided = True
        waiting.card.show_html(
            "approval", decision_html(waiting.request, decision), "agentnb-decision-line"
        )
        # click handlers run on the kernel's main thread; the future belongs to the loop
        waiting.loop.call_soon_threadsafe(_settle, waiting.future, decision)

    def _drop_panel(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None and waiting.card.parts.get("approval") is waiting.panel.box:
            waiting.card.set_part("approval", None)
            waiting.card.box.remove_class("agentnb-pending")

    # --- the header's buttons ------------------------------------------------------------

    def _stop_clicked(self, _button: Any = None) -> None:
        waiting = self._waiting
        if waiting is None and self.on_stop is None:
            self.notify("warning", "this view is not attached to a running analysis")
            return
        self._stop.disabled = True
        if self._finished is None:
            self._set_phase("stopping")
        if waiting is not None:
            waiting.panel.choose(Decision.stop())
        if self.on_stop is not None:
            self.on_stop()

    def _save_clicked(self, _button: Any = None) -> None:
        if self._on_save is None:
            return
        try:
            path = self._on_save()
        except AgentnbError as exc:
            self._header_note("error", f"not saved: {exc}")
            return
        self._header_note("info", f"saved to {path}")

    # --- for the magic -------------------------------------------------------------------

    def notify(self, level: Literal["info", "warning", "error"], text: str) -> None:
        """A line at the end of the conversation (e.g. cells that could not be inserted)."""
        self._append(_html(notice_html(level, text)))

    def step_inserted(self, step: int, cell_id: str) -> None:
        """Mark a step's card: its code is now a cell of the notebook."""
        card = self._ran.get(step)
        if card is not None:
            card.add_foot(inserted_html(cell_id))

    def close(self, reason: str = "") -> None:
        """End the view of a run that ended without its last event (e.g. the magic
        failed before the chat started): the clock stops, the buttons go, and the
        header says ``failed`` and ``reason``. After a finished run it changes nothing."""
        for turn in self._open.values():
            turn.stop_streaming()
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self._drop_panel()
        self._stop.disabled = True
        if self._finished is None and self._ended is None:
            self._ended = self._clock()
            self._reason = reason
            self._set_phase("failed", "failed")


def _thinking_words(event: AgentThinking) -> str:
    if event.phase == "review_step":
        return f"{event.agent} reviewing step {event.step}"
    if event.phase == "review_final":
        return f"{event.agent} reviewing the report"
    if event.phase == "select":
        return "choosing who speaks"
    return f"{event.agent} thinking"

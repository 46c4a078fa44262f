"""The chat widget: a run rendered live in a notebook, and the user's approvals.

:class:`ChatView` is built from stock ipywidgets only (VBox, HBox, HTML, Button,
Textarea), so it renders in JupyterLab, Notebook 7 and VS Code without a
front-end extension. It is an observer (:meth:`ChatView.handle`, for
``on_event=``) and an approver (:meth:`ChatView.decide`), and it decides nothing
itself: the :class:`~agentnb.record.RunRecord` it renders says what happened, and
it returns what the user clicked.

Every widget update is a comm message to the browser, so an event updates only
the card it concerns, and streamed tokens are buffered and shown at most once per
``throttle`` seconds per card. The HTML comes from :mod:`agentnb.ui.render`.

Layout: a header (:mod:`~agentnb.ui.header`: the task, the phase, elapsed time,
tokens and cost per agent, Save and Stop), then one card per turn in order
(:mod:`~agentnb.ui.card`). A step's card gathers its whole life: the proposal, the
reviews of it, the approval panel (:mod:`~agentnb.ui.approval`), the decision, and
the results of running it. Once the step is a cell of the notebook, its card folds
to one line that jumps to that cell (the cell shows the code and its outputs).

When the run has ended, :meth:`ChatView.static_html` is the chat as static HTML
(:mod:`~agentnb.ui.static`), which the cell keeps for when the widget is gone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import ipywidgets as widgets

from ..chat.approval import ApprovalRequest, Decision
from ..chat.events import (
    AgentThinking,
    AnyEvent,
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
from ..chat.messages import Feedback, FinalReport, Proposal, Review, StepResult
from ..chat.protocol import split_reasoning
from ..chat.termination import Outcome, StopReason
from ..errors import AgentnbError
from ..record import RunRecord, StepRecord, subject
from .approval import ApprovalPanel, Waiting
from .card import Turn
from .elements import button, html_part, vbox
from .header import Header
from .render import (
    State,
    decision_html,
    end_html,
    execution_html,
    fold_html,
    format_duration,
    markdown_html,
    model_meta,
    notice_html,
    outputs_html,
    proposal_html,
    report_html,
    review_html,
    stylesheet,
    summary_html,
)
from .static import live_class, static_html, twin_rule

__all__ = ["ChatView"]

_STATES: dict[Outcome, State] = {"approved": "done", "stopped": "stopped", "failed": "failed"}


class ChatView:
    """The live view of one run in a notebook cell, and its approver.

    Args:
        task: what the user asked (shown in the header).
        record: the run record to show (default: a new one). :meth:`handle` folds
            each event into it; whoever folds events into it itself calls :meth:`show`.
        throttle: the shortest time, in seconds, between two updates of a card
            that is streaming text. A chunk arriving sooner is buffered; a timer on
            the running event loop shows it when the time is up, and the reply's
            end (``ModelCalled``, ``MessagePosted``) always shows everything.
        clock: where time comes from (for the elapsed time and the throttle).
        data: the names of the data the run is given: their card ("loading …") is
            shown at once, in the widget's first display, rather than once the data
            was pushed and summarised (``DataReady`` fills it in).

    Attributes:
        widget: the root widget, to display.
        record: the run record it shows.
        phase: what the run is doing, in the words the header shows.
        on_stop: called when Stop is clicked.
        on_save: called when Save is clicked; returns the path it saved to. The
            Save button shows only once this is set.
    """

    def __init__(
        self,
        task: str,
        *,
        record: RunRecord | None = None,
        throttle: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        data: Sequence[str] = (),
    ) -> None:
        self.task = task
        self.record = record if record is not None else RunRecord()
        self.throttle = throttle
        self._clock = clock
        self.on_stop: Callable[[], None] | None = None
        self._on_save: Callable[[], str] | None = None

        self._open: dict[str, Turn] = {}
        """The turn each agent is speaking in, until its message arrives."""
        self._proposals: dict[int, Turn] = {}
        """The card of each step's latest version."""
        self._ran: dict[int, Turn] = {}
        """The card whose code ran as each step."""
        self._outputs: dict[int, tuple[dict[str, Any], ...]] = {}
        """The outputs each step's card shows, to redraw it when a later step changes them."""
        self._report: Turn | None = None
        self._data: Turn | None = None
        self._waiting: Waiting | None = None

        self.header = Header(
            task,
            self.record,
            clock=clock,
            on_save=self._save_clicked,
            on_stop=self._stop_clicked,
        )
        self._list = vbox([], "agentnb-list")
        self._style = html_part(f"<style>{stylesheet()}</style>", "agentnb-style")
        # agentnb-live: the live view, as opposed to its static copy (see static_html)
        self.widget: widgets.VBox = vbox(
            [self._style, self.header.box, self._list], "agentnb", "agentnb-live"
        )
        self._retry: tuple[str, Any] | None = None
        """The last line about a model call being retried, updated by the next retry."""
        self._data_pending = False
        """The data card says "loading": the data is not loaded and summarised yet."""
        if data:
            self._loading(", ".join(data))

    def _append(self, widget: Any) -> None:
        self._list.children = (*self._list.children, widget)

    def _new_card(self, agent: str, action: str, *, phase: str = "") -> Turn:
        turn = Turn(agent, action, phase=phase, throttle=self.throttle, clock=self._clock)
        self._append(turn.box)
        return turn

    @property
    def on_save(self) -> Callable[[], str] | None:
        return self._on_save

    @on_save.setter
    def on_save(self, save: Callable[[], str] | None) -> None:
        self._on_save = save
        self.header.offer_save(save is not None)

    # --- the observer ------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        """Fold one event into the record and show it (events come in order, each once)."""
        self._show(event, fold=True)

    def show(self, event: Event) -> None:
        """Show one event that its owner already folded into :attr:`record`."""
        self._show(event, fold=False)

    @property
    def phase(self) -> str:
        """What the run is doing, in the words the header shows."""
        return self.header.phase

    def _set_phase(self, words: str, state: State = "live") -> None:
        self.header.set_phase(words, state)

    def _show(self, event: Event, *, fold: bool) -> None:
        try:
            if fold:
                self.record.apply(event)
            if is_event(event):
                self._dispatch(event)
        except Exception as exc:
            # a display bug must not end the analysis: say so, and carry on
            self.notify(
                "error",
                f"the widget could not show a {type(event).__name__} event "
                f"({type(exc).__name__}: {exc}); the run goes on and its transcript has it",
            )
        self.header.tick()

    def _dispatch(self, event: AnyEvent) -> None:
        match event:
            case TokenDelta():  # the hot path: nothing else changes
                turn = self._open.get(event.agent)
                if turn is not None:
                    turn.stream(event.text)
            case RunStarted():
                self._started(event.run_id)
                self.header.show_facts()
            case KernelReady():
                self.header.show_facts()
            case AgentThinking():
                self._on_thinking(event)
            case ModelCalled():
                self._on_model_called(event)
            case MessagePosted():
                self._on_message(event)
            case ApprovalRequested():
                self._card_for(event.request).box.add_class("agentnb-pending")
                self._set_phase(self.record.phase, "waiting")
            case ApprovalDecided():
                self._on_approval_decided(event)
            case ExecutionStarted():
                self._on_execution_started(event)
            case ExecutionOutput():
                self._on_execution_output(event)
            case ExecutionFinished():
                self._on_execution_finished(event)
            case DataReady():
                self._on_data_ready(event)
            case Notice():
                self._on_notice(event)
            case RunFinished():
                self._on_finished(event.reason)
            case _:
                assert_never(event)

    def _started(self, run_id: str) -> None:
        """The run has its id: the widget hides its run's static copy while it shows."""
        self.widget.add_class(live_class(run_id))
        self._style.value = f"<style>{stylesheet()}\n{twin_rule(run_id)}</style>"

    def _replying(self) -> list[str]:
        return [agent for agent, turn in self._open.items() if turn.streaming]

    def _on_thinking(self, event: AgentThinking) -> None:
        previous = self._open.pop(event.agent, None)
        if previous is not None:  # a reply that never became a message (a protocol slip)
            previous.close()
            previous.card.box.add_class("agentnb-superseded")
        host = None
        if event.phase == "review_step" and event.step is not None:
            host = self._proposals.get(event.step)
        elif event.phase == "review_final":
            host = self._report
        action = {
            "review_step": f"reviews {subject(event.step)}",
            "review_final": f"reviews {subject(None, short=True)}",
            "select": "chooses who speaks next",
        }.get(event.phase, "")
        if host is not None:
            turn = Turn(
                event.agent,
                action,
                host=host,
                phase=event.phase,
                throttle=self.throttle,
                clock=self._clock,
            )
            host.add_review(turn)
        else:
            turn = self._new_card(event.agent, action, phase=event.phase)
        self._open[event.agent] = turn
        self._set_phase(self.record.phase)
        self.header.show_usage(self._replying())

    def _on_model_called(self, event: ModelCalled) -> None:
        turn = self._open.get(event.agent)
        if turn is not None:
            turn.stop_streaming()
        self.header.show_usage(self._replying())
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

    def _turn_for(self, sender: str) -> Turn | None:
        turn = self._open.pop(sender, None)
        if turn is not None:
            turn.flush()
            turn.stop_streaming()
        return turn

    def _on_message(self, event: MessagePosted) -> None:
        message = event.message
        match message:
            case Proposal():
                self._on_proposal(message)
            case FinalReport():
                self._on_report(message)
            case Review():
                self._on_review(message)
            case Feedback():
                self._on_feedback(message)
            case StepResult():
                card = self._ran.get(message.step)
                if card is not None and not card.ran:
                    self._show_execution(card, self.record.steps[message.step])
                if message.execution.updates:
                    self.show_updated()
            case _:
                assert_never(message)

    def _on_proposal(self, proposal: Proposal) -> None:
        turn = self._turn_for(proposal.sender) or self._new_card(proposal.sender, "")
        earlier = self._proposals.get(proposal.step)
        if earlier is not None and earlier is not turn and not earlier.ran:
            earlier.box.add_class("agentnb-superseded")
        verb = "proposes" if earlier is None else "revises"
        turn.update(action=f"{verb} {subject(proposal.step)}", body=proposal_html(proposal))
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
            turn = Turn(review.sender, "", host=host) if host else None
            if host is not None and turn is not None:
                host.add_review(turn)
            else:
                turn = self._new_card(review.sender, "")
        turn.update(
            action=f"reviews {subject(review.step, short=True)}",
            badge=review.verdict,
            body=review_html(review),
        )

    def _on_feedback(self, feedback: Feedback) -> None:
        card = self._proposals.get(feedback.step) if feedback.step else self._report
        if feedback.sender == "user":
            if card is not None and card.decided:
                return  # the decision line already shows these words
            line = notice_html("warning", f"you: {feedback.text}")
        else:
            line = notice_html("warning", f"{feedback.sender}: {feedback.text}")
        if card is not None:
            card.add_foot(line)
        else:
            self._append(html_part(line))

    def _on_approval_decided(self, event: ApprovalDecided) -> None:
        card = self._card_for(event.request)
        card.box.remove_class("agentnb-pending")
        card.decided = True
        card.show_html(
            "approval", decision_html(event.request, event.decision), "agentnb-decision-line"
        )
        if event.request.kind == "final" and event.decision.action in ("approve", "edit"):
            card.box.add_class("agentnb-accepted")
        self._set_phase(self.record.phase)

    def _data_words(self) -> str:
        return ", ".join(self.record.data_names) or "the data"

    def _loading(self, words: str) -> Turn:
        """The data card, saying the data is being loaded (made once, then reused)."""
        if self._data is None:
            self._data = self._new_card("data", f"loading {words}")
            self._data.update(body="")
        else:
            self._data.update(action=f"loading {words}")
        self._data_pending = True
        return self._data

    def _on_execution_started(self, event: ExecutionStarted) -> None:
        if event.step == 0:
            data = self._loading(self._data_words())
            data.show_html("execution", execution_html(0, None), "agentnb-execution")
            self._set_phase(self.record.phase)
            return
        card = self._proposals.get(event.step)
        if card is None:  # no proposal seen (a partial event stream): the code stands alone
            card = self._new_card("executor", subject(event.step))
            card.update(body="")
        self._ran[event.step] = card
        step = self.record.steps[event.step]
        card.show_html("execution", _execution(step), "agentnb-execution")
        self._set_phase(self.record.phase)

    def _on_execution_output(self, event: ExecutionOutput) -> None:
        """A running step's outputs so far, and how long it has run, as a cell shows them."""
        card = self._ran.get(event.step)
        if card is None or card.ran:
            return
        card.clear_live()
        clock = (
            f'<div class="agentnb-running-clock">running · {format_duration(event.elapsed)}</div>'
        )
        card.append_live(clock + outputs_html(event.outputs))

    def _on_execution_finished(self, event: ExecutionFinished) -> None:
        if event.execution.updates:
            self.show_updated()
        if event.step == 0:
            self._data_loaded()
            return
        card = self._ran.get(event.step)
        if card is not None:
            self._show_execution(card, self.record.steps[event.step])

    def _show_execution(self, card: Turn, step: StepRecord) -> None:
        card.ran = True
        card.clear_live()
        card.show_html("execution", _execution(step), "agentnb-execution")
        if step.execution is not None:
            self._outputs[step.number] = step.execution.outputs

    def show_updated(self) -> None:
        """A step changed what earlier steps show (a display updated, an id shown
        again): their cards show their outputs as they now are, as a notebook's cells
        do. The record has already applied the change to their executions."""
        for number, card in self._ran.items():
            step = self.record.steps.get(number)
            execution = step.execution if step is not None else None
            if step is None or execution is None or not card.ran:
                continue
            # the ExecutionFinished and the StepResult of one step both carry its
            # updates: a card already showing them is not sent to the browser again
            if self._outputs.get(number) != execution.outputs:
                self._show_execution(card, step)

    def _data_loaded(self) -> None:
        execution = self.record.setup
        card = self._data or self._new_card("data", "")
        self._data = card
        if execution is None:
            return
        self._data_pending = False
        if execution.ok:  # the usual case, kept to one line
            card.box.add_class("agentnb-compact")
            card.set_part("execution", None)
            card.update(
                action=f"loaded {self._data_words()}", meta=format_duration(execution.duration)
            )
        else:
            card.update(action=f"could not load {self._data_words()}")
            card.show_html("execution", execution_html(0, execution), "agentnb-execution")

    def _data_unloaded(self) -> None:
        """The run ended before its data was loaded: the card no longer says "loading"."""
        if self._data is not None and self._data_pending:
            self._data_pending = False
            words = ", ".join(self.record.data_names) or self._data.action.removeprefix("loading ")
            self._data.update(action=f"did not load {words}")

    def _on_data_ready(self, event: DataReady) -> None:
        card = self._data
        if card is None:
            card = self._data = self._new_card("data", "")
        card.box.add_class("agentnb-compact")  # as a card of loaded data: one line
        self._data_pending = False
        card.update(action=f"loaded {', '.join(event.names)}", body=summary_html(event.summary))

    def _on_notice(self, event: Notice) -> None:
        said = next((f.text for f in reversed(self.record.feedback) if f.sender != "user"), None)
        if event.text == said:
            return  # already on the card, as agentnb's feedback
        line = notice_html(event.level, event.text)
        retried, _, _ = event.text.partition("; retrying in ")
        if retried != event.text:
            # "...; retrying in 2.0 s (retry 2 of 4)": one line per failure, updated
            if self._retry is not None and self._retry[0] == retried:
                self._retry[1].value = line
                return
            part = html_part(line, "agentnb-retry")
            self._retry = (retried, part)
            self._append(part)
            return
        self._retry = None
        turn = self._open.get(event.agent) if event.agent else None
        if turn is not None:
            turn.card.add_foot(line)
        else:
            self._append(html_part(line))

    def _on_finished(self, reason: StopReason) -> None:
        for turn in self._open.values():
            turn.close()
        self._open.clear()
        self._drop_panel()
        self.header.show_usage()
        if self._retry is not None and not reason.ok:
            # the end line says why the run failed: the retries of it go
            self._list.children = tuple(c for c in self._list.children if c is not self._retry[1])
            self._retry = None
        self.header.stop_clock()
        self._data_unloaded()
        state = _STATES[reason.outcome]
        self._set_phase(self.record.phase, state)
        end = end_html(reason, state, len(self.record.ran), self.header.elapsed)
        self._append(html_part(end, "agentnb-end"))

    # --- the approver ------------------------------------------------------------------

    def _card_for(self, request: ApprovalRequest) -> Turn:
        """The card a request is about; made from the request if none was shown."""
        card = self._proposals.get(request.step or 0) if request.kind == "step" else self._report
        if card is not None:
            return card
        what = subject(request.step) if request.kind == "step" else "final report"
        card = self._new_card("agentnb", what)
        body = markdown_html(request.text)
        if request.kind == "step" and request.step is not None:
            body = proposal_html(
                Proposal(
                    sender="agentnb",
                    step=request.step,
                    text=request.text,
                    rationale=request.text,
                    code=request.code,
                )
            )
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
        panel = ApprovalPanel(request, self._chosen)
        self._waiting = Waiting(request, future, loop, card, panel)
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
        waiting.settle(decision)

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
        self.header.stop.disabled = True
        if self.record.finished is None:
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
            self.header.note("error", f"Not saved: {exc}")
            return
        self.header.saved(path)

    # --- for the magic -------------------------------------------------------------------

    def notify(self, level: Literal["info", "warning", "error"], text: str) -> None:
        """A line at the end of the conversation (e.g. cells that could not be inserted)."""
        self._append(html_part(notice_html(level, text)))

    def step_inserted(self, step: int, cell_id: str) -> None:
        """A step's code is now a cell of the notebook: its finished card folds to one
        line that jumps to the cell (the cell shows the code and its outputs)."""
        card = self._ran.get(step)
        record = self.record.steps.get(step)
        if card is None or record is None or card.box is None:
            return
        line = fold_html(
            step,
            record.author,
            record.execution,
            edited=record.edited,
            cell_id=cell_id,
            why=record.why,
        )
        if card.folded:
            card.fold(line, None)
            return
        toggle = button("show", "agentnb-fold-toggle", tooltip="show this step here")

        def toggled(_button: Any) -> None:
            card.expand(not card.expanded)
            toggle.description = "hide" if card.expanded else "show"

        toggle.on_click(toggled)
        card.fold(line, toggle)

    def static_html(self) -> str:
        """The chat as it shows now, as static HTML (see :mod:`~agentnb.ui.static`)."""
        return static_html(self.widget, self.record.run_id)

    def close(self, reason: str = "") -> None:
        """End the view of a run that ended without its last event (e.g. the magic
        failed before the chat started): the record says it failed and why, the clock
        stops, the buttons go. After a finished run it changes nothing."""
        for turn in self._open.values():
            turn.stop_streaming()
        self._drop_panel()
        live = self.record.finished is None and not self.header.ended
        self.header.stop_clock()
        self._data_unloaded()
        if live:
            self.record.abandon(reason)
            self._set_phase(self.record.phase, "failed")


def _execution(step: StepRecord) -> str:
    """A step's run as its card shows it (the user's edit above it, if there was one)."""
    edited = step.code if step.edited else None
    return execution_html(step.number, step.execution, edited=edited)

"""The run a ``%%agents`` cell watches: its analysis, its approver, what each event does.

Each cell is one :class:`Analysis`: its task and settings, its run record (the
one fold of its events, which the widget, ``%agents status``, the cell's display
and the inserted cells' provenance all read), its widget, its events (the
transcript has them first), its run task and its writer of notebook cells.

:func:`observe` makes the run's ``on_event``: each event is kept, folded into the
record and shown by the widget, and each approved step goes to the cell writer.
:class:`Watched` is the widget as approver, which stops the run when no frontend
shows it (a headless run under nbclient or papermill, where nobody could click).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..chat.approval import ApprovalRequest, Decision
from ..chat.events import Event, ExecutionFinished, RunFinished, RunStarted
from ..chat.group import RunResult
from ..record import RunRecord, subject
from ..ui.untrusted import safe_markdown

if TYPE_CHECKING:
    from ..chat.resume import Resumption
    from ..options import Resolved
    from ..ui.widget import ChatView
    from .cells import CellWriter

__all__ = ["HEADLESS_GRACE", "Analysis", "Watched", "observe"]

HEADLESS_GRACE = 5.0
"""Seconds an approval waits for any frontend to show the widget before the run
is stopped as headless (nbclient, papermill): nobody could ever click."""


@dataclass
class Analysis:
    """One ``%%agents`` cell's run."""

    task: str
    settings: Resolved
    view: ChatView
    record: RunRecord = field(default_factory=RunRecord)
    """The run so far (the view shows this same record)."""
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    events: list[Event] = field(default_factory=list)
    handle: asyncio.Task[RunResult | None] | None = None
    result: RunResult | None = None
    writer: CellWriter | None = None
    out: Path | None = None
    data_sources: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    """The ``--data`` values pushed, kept for a saved notebook that needs them."""
    resume: Resumption | None = None
    """The earlier run this one continues (``%agents resume``)."""
    names: list[str] = field(default_factory=list)
    """The ``--data`` variables to push."""
    new: bool = False
    background: bool = False
    headless: str | None = None
    """Why the run stopped for want of a frontend (nbclient, papermill), if it did."""
    error: str | None = None
    """Why the run could not start or crashed, if it did."""
    display: Any = None
    """The cell's display handle, updated with the outcome when the run ends."""
    chat: dict[str, Any] | None = None
    """The static copy of the chat the cell got when the run ended (a display_data
    output, see :meth:`static_output`)."""
    started: float = field(default_factory=time.monotonic)
    ran_in: int | None = None
    """The kernel process its steps last ran in (``ManagedKernel.incarnation``): a
    later run's step in the same process may update their displays."""

    @property
    def running(self) -> bool:
        return self.handle is not None and not self.handle.done()

    def failure(self, *, brief: bool = False) -> str | None:
        """Why the analysis failed, when a part of it did (the model, the managed
        kernel, the data, agentnb): the cell then fails, so that Run All stops there.
        None when it ended any other way (a limit, a guard, the user's stop).

        ``brief``: for a cell whose widget shows the whole message (and what to do),
        a line that points there instead of saying it a third time."""
        if self.headless is not None:
            return self.headless
        why = self.error
        result = self.result
        if why is None and (result is None or result.stop_reason.outcome != "failed"):
            return None
        kept = ""
        kind = "agentnb"
        if why is None and result is not None:
            why, kind = result.stop_reason.message, result.stop_reason.kind
            transcript = result.transcript_path
            if transcript is not None:
                kept = f"; what ran is kept (%agents save PATH; transcript {transcript})"
        if brief:
            return f"the analysis above failed ({kind}): its last line says why and what to do"
        return f"{why}{kept}"

    def bundle(self) -> dict[str, Any]:
        """The cell's display: the live widget, and for anything that cannot show
        widgets (papermill reports, GitHub, nbviewer) the task, how it is going and
        the report so far as markdown and text. Once the run has ended and the cell
        has its static chat (:meth:`static_output`), the chat is there and this is
        only the widget with a line of text."""
        bundle: dict[str, Any] = dict(self.view.widget._repr_mimebundle_())
        finished = self.record.finished
        title = self.task.strip().splitlines()[0]
        if finished is None:
            state = f"{self.record.phase} (open the notebook in Jupyter to follow it)"
        else:
            state = f"{finished.reason.kind}: {finished.reason.message}"
        if self.chat is not None:
            # the static chat beside it says it all; this line stands in for the widget
            # where it cannot show, and the agentnb-cells extension hides it there
            line = f"agentnb: {title} ({self.record.phase})"
            bundle["text/plain"] = line
            bundle["text/html"] = f'<div class="agentnb-fallback">{escape(line)}</div>'
            bundle.pop("text/markdown", None)
            return bundle
        report = finished.final_report if finished is not None else None
        bundle["text/plain"] = "\n\n".join(
            part for part in (f"agentnb: {title}", state, report) if part
        )
        # shown in the cell the user ran, which is trusted: no raw HTML of the model's
        bundle["text/markdown"] = safe_markdown(
            "\n\n".join(part for part in (f"**agentnb**: {title}", f"*{state}*", report) if part)
        )
        return bundle

    def static_output(self) -> dict[str, Any]:
        """The chat as it ended, as a ``display_data`` output that shows without the
        widget (a kernel restarted or shut down, the notebook opened in another
        Jupyter, nbviewer, VS Code): sanitised HTML (:mod:`agentnb.ui.static`), and
        text for what shows no HTML. ``metadata.agentnb.view`` says what it is."""
        record = self.record
        title = self.task.strip().splitlines()[0]
        reason = record.reason
        state = f"{reason.kind}: {reason.message}" if reason is not None else record.phase
        if reason is None and record.abandoned:
            state = f"failed: {record.abandoned}"
        report = record.final_report
        text = "\n\n".join(part for part in (f"agentnb: {title}", state, report) if part)
        return {
            "output_type": "display_data",
            "data": {"text/html": self.view.static_html(), "text/plain": text},
            "metadata": {"agentnb": {"run_id": record.run_id, "view": "static"}},
        }

    def status(self) -> list[str]:
        """Lines of ``%agents status`` about this analysis."""
        record = self.record
        lines = [f"current: {self.task.splitlines()[0][:80]}", f"phase: {record.phase}"]
        reason = record.reason
        if reason is not None:
            lines.append(f"stop reason: {reason.kind} — {reason.message}")
            cost = record.cost
            lines.append(f"tokens: {record.tokens:,}" + (f", cost ${cost:.4f}" if cost else ""))
        steps = [s for s in record.ran if s.execution is not None]
        if steps:
            lines.append("steps: " + ", ".join(f"{s.number} {s.status}" for s in steps))
        lines.append(f"elapsed: {time.monotonic() - self.started:.0f} s")
        lines.append(
            "settings: "
            + self.settings.describe(
                "model", "approve", "max_turns", "step_timeout", "sandbox", "network"
            )
        )
        return lines


def observe(analysis: Analysis, anchor: str | None) -> Callable[[Event], None]:
    """The run's ``on_event``: keep the event, fold it into the record, show it, and
    write each approved step below the ``%%agents`` cell ``anchor`` (None: this
    frontend does not say which cell ran, so nothing is inserted): its note and its
    code, and the final report after the steps (``--notes off``: the code only)."""
    from .cells import CellWriter
    from .notebook import note_provenance, report_note, step_note

    view, record = analysis.view, analysis.record
    notes = analysis.settings.options.notes

    def on_event(event: Event) -> None:
        analysis.events.append(event)
        record.apply(event)
        view.show(event)
        if isinstance(event, RunStarted):
            if anchor is None:
                # nbclient and papermill say nothing of the cell; nobody to insert for
                view.notify(
                    "info",
                    "Steps are not inserted as cells here: this frontend does not say "
                    "which cell ran. Save the analysis (Save, or %agents save PATH) "
                    "to get them as a notebook.",
                )
                return
            analysis.writer = CellWriter(
                run_id=event.run_id,
                anchor=anchor,
                on_status=lambda text: view.notify("warning", text),
                on_inserted=view.step_inserted,
                # a page opened after the tab was closed shows the live widget again
                display=analysis.bundle,
                chat=lambda: analysis.chat,
            )
            analysis.writer.open()
        elif isinstance(event, RunFinished) and analysis.writer is not None:
            report = report_note(record) if notes else None
            if report is not None:
                analysis.writer.insert_markdown(
                    key="report", source=report, metadata=note_provenance(record, None)
                )
            analysis.writer.finish()
        elif isinstance(event, ExecutionFinished):
            execution = event.execution
            writer = analysis.writer
            if execution.updates and writer is not None:
                # the record now has the earlier steps' outputs as this step left them:
                # their cells show the same, as a notebook's cells would
                for number, earlier in record.steps.items():
                    if number != event.step and earlier.execution is not None:
                        writer.update_outputs(step=number, outputs=earlier.execution.outputs)
            # a resumed run's earlier steps are in the notebook already: never twice
            if event.step > 0 and execution.ok and not event.replayed and writer is not None:
                step = record.steps[event.step]
                if notes:
                    writer.insert_markdown(
                        key=f"{event.step}:reason",
                        source=step_note(step),
                        metadata=note_provenance(record, event.step),
                    )
                writer.insert(
                    step=event.step,
                    code=execution.code,
                    outputs=list(execution.outputs),
                    # as the saved notebook's cells, and the models (no notebook metadata here)
                    metadata={**record.provenance(event.step), "models": record.models},
                )

    return on_event


class Watched:
    """The widget as approver, which stops the run when no frontend shows it.

    A frontend that renders the widget counts its views (``_view_count``); under
    nbclient or papermill nothing ever does, and an approval would wait forever.
    ``grace``: seconds to wait for a view (default :data:`HEADLESS_GRACE`)."""

    def __init__(self, analysis: Analysis, grace: float | None = None) -> None:
        self.analysis = analysis
        self.grace = HEADLESS_GRACE if grace is None else grace
        self.shown = asyncio.Event()
        analysis.view.widget.observe(self._counted, names="_view_count")

    def _counted(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.shown.set()

    async def decide(self, request: ApprovalRequest) -> Decision:
        view = self.analysis.view
        if view.widget._view_count:
            self.shown.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.shown.wait(), self.grace)
        if not self.shown.is_set():
            what = subject(request.step)
            self.analysis.headless = (
                f"no frontend is showing this cell (a headless run under nbclient or "
                f"papermill?), so nobody can approve {what}; run headless %%agents cells "
                f"with --approve never"
            )
            view.notify("error", self.analysis.headless)
            return Decision.stop()
        return await view.decide(request)

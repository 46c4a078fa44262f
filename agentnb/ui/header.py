"""The chat widget's header: the task and facts about the run, what it is doing and
for how long, tokens and cost per agent, and the Save and Stop buttons."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path
from typing import Any, Literal

import ipywidgets as widgets

from ..record import RunRecord
from .card import running_loop
from .elements import button, hbox, html_part, vbox
from .render import State, notice_html, status_html, title_html, usage_html

__all__ = ["Header"]

_TICK = 1.0
"""Seconds between updates of the elapsed time while a run is live."""


class Header:
    """The header of the widget of one run, showing its :class:`RunRecord`.

    Args:
        task: what the user asked.
        record: the run it shows (facts, usage, why it ended).
        clock: where time comes from; the elapsed time starts now.
        on_save: called when Save is clicked (the button shows once :meth:`offer_save`).
        on_stop: called when Stop is clicked.

    Attributes:
        phase: what the run is doing, in words, and ``state`` its colour.
    """

    def __init__(
        self,
        task: str,
        record: RunRecord,
        *,
        clock: Callable[[], float],
        on_save: Callable[[Any], None],
        on_stop: Callable[[Any], None],
    ) -> None:
        self.task = task
        self.record = record
        self.phase = "starting"
        self.state: State = "live"
        self._clock = clock
        self._started = clock()
        self._ended: float | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self.title = html_part(title_html(task), "agentnb-title-row")
        self.status = html_part("", "agentnb-phase")
        self.usage = html_part(usage_html({}, {}), "agentnb-usage")
        self.save = button(
            "Save",
            "agentnb-save",
            tooltip="save the analysis as a notebook",
            layout=widgets.Layout(display="none"),  # shown once saving is offered
        )
        self.save.on_click(on_save)
        self.stop = button("Stop", "agentnb-stop", tooltip="stop the run")
        self.stop.on_click(on_stop)
        controls = hbox([self.save, self.stop], "agentnb-controls")
        top = hbox([self.title, controls], "agentnb-top")
        bar = hbox([self.status, self.usage], "agentnb-bar")
        self._note: Any = None
        self.box = vbox([top, bar], "agentnb-header")
        self._show_status()

    @property
    def elapsed(self) -> float:
        return (self._ended if self._ended is not None else self._clock()) - self._started

    def set_phase(self, words: str, state: State = "live") -> None:
        self.phase, self.state = words, state
        self._show_status()

    def _show_status(self) -> None:
        record = self.record
        reason = record.reason.message if record.reason is not None else record.abandoned
        self.status.value = status_html(self.phase, self.state, self.elapsed, reason or "")

    def show_facts(self) -> None:
        """Facts about the run below the task: models, approval mode, data, kernel."""
        record = self.record
        facts = [f"{agent}: {model}" for agent, model in record.models.items()]
        if record.started is not None:
            facts.append(f"approve: {record.started.approve}")
            if record.started.data:
                facts.append(f"data: {', '.join(record.started.data)}")
        if record.kernel is not None:
            facts.append(record.kernel.label)
            self.title.tooltip = record.kernel.isolation
        self.title.value = title_html(self.task, facts)

    def show_usage(self, replying: Sequence[str] = ()) -> None:
        """Tokens and cost per agent; ``replying``: the agents whose reply is coming."""
        self.usage.value = usage_html(self.record.usage, self.record.costs, replying)

    # --- the clock ----------------------------------------------------------------------

    def tick(self) -> None:
        """Update the elapsed time every second while the run is live (only where an
        event loop runs: the kernel's, or a test's)."""
        if self._ticker is not None or self._ended is not None:
            return
        loop = running_loop()
        if loop is not None:
            self._ticker = loop.call_later(_TICK, self._ticked)

    def _ticked(self) -> None:
        self._ticker = None
        if self._ended is None:
            self._show_status()
            self.tick()

    def stop_clock(self) -> None:
        """The run ended: the elapsed time stays as it is, and Stop goes."""
        if self._ended is None:
            self._ended = self._clock()
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self.stop.disabled = True
        self.stop.layout.display = "none"

    @property
    def ended(self) -> bool:
        return self._ended is not None

    # --- Save -------------------------------------------------------------------------

    def offer_save(self, offered: bool) -> None:
        self.save.layout.display = None if offered else "none"

    def saved(self, path: str | Path) -> None:
        """Say, under the header, where Save wrote the analysis notebook."""
        where = Path(path)
        value = (
            '<div class="agentnb-note-line agentnb-note-saved">'
            '<span class="agentnb-line-mark">✓</span>'
            f'<span>Saved the analysis as <b title="{escape(str(where))}">'
            f"{escape(where.name)}</b>, a notebook that runs again from top to bottom.</span>"
            "</div>"
        )
        self._set_note(value)

    def note(self, level: Literal["info", "error"], text: str) -> None:
        """One line under the header (what Save did), replacing the previous one."""
        css = "agentnb-note-line agentnb-note-error" if level == "error" else "agentnb-note-line"
        self._set_note(f'<div class="{css}">{notice_html(level, text)}</div>')

    def _set_note(self, value: str) -> None:
        if self._note is None:
            self._note = html_part(value, "agentnb-note")
            self.box.children = (*self.box.children, self._note)
        else:
            self._note.value = value

"""The chat widget's header: the task and facts about the run, what it is doing and
for how long, tokens and cost per agent, and the Save and Stop buttons."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import ipywidgets as widgets

from ..models.base import Usage
from .elements import button, html_part
from .render import State, notice_html, status_html, title_html, usage_html

__all__ = ["Header"]


class Header:
    """The header's widgets; :class:`~agentnb.ui.widget.ChatView` says what they show.

    Args:
        task: what the user asked.
        on_save: called when Save is clicked (the button shows once :meth:`offer_save`).
        on_stop: called when Stop is clicked.
    """

    def __init__(
        self, task: str, *, on_save: Callable[[Any], None], on_stop: Callable[[Any], None]
    ) -> None:
        self.task = task
        self.title = html_part(title_html(task), "agentnb-title-row")
        self.status = html_part("", "agentnb-phase")
        self.usage = html_part(usage_html({}, {}), "agentnb-usage")
        self.save = button("Save", "agentnb-save", tooltip="save the analysis as a notebook")
        self.save.layout.display = "none"
        self.save.on_click(on_save)
        self.stop = button("Stop", "agentnb-stop", tooltip="stop the run")
        self.stop.on_click(on_stop)
        controls = widgets.HBox([self.save, self.stop])
        controls.add_class("agentnb-controls")
        top = widgets.HBox([self.title, controls])
        top.add_class("agentnb-top")
        bar = widgets.HBox([self.status, self.usage])
        bar.add_class("agentnb-bar")
        self._note: Any = None
        self.box = widgets.VBox([top, bar])
        self.box.add_class("agentnb-header")

    def show_facts(self, facts: Sequence[str], tooltip: str | None = None) -> None:
        """Facts about the run below the task (models, approval mode, data, kernel)."""
        self.title.value = title_html(self.task, facts)
        if tooltip is not None:
            self.title.tooltip = tooltip

    def show_status(self, words: str, state: State, elapsed: float, reason: str = "") -> None:
        self.status.value = status_html(words, state, elapsed, reason)

    def show_usage(self, usage: Mapping[str, Usage], costs: Mapping[str, float | None]) -> None:
        self.usage.value = usage_html(usage, costs)

    def offer_save(self, offered: bool) -> None:
        self.save.layout.display = None if offered else "none"

    def note(self, level: Literal["info", "error"], text: str) -> None:
        """One line under the header (what Save did), replacing the previous one."""
        css = "agentnb-note-line agentnb-note-error" if level == "error" else "agentnb-note-line"
        value = f'<div class="{css}">{notice_html(level, text)}</div>'
        if self._note is None:
            self._note = html_part(value, "agentnb-note")
            self.box.children = (*self.box.children, self._note)
        else:
            self._note.value = value

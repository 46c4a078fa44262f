"""The approval panel of the chat widget: the buttons of one request, on the card it
is about, with the code editor and the feedback box they reveal.

One action at a time: while the editor or the feedback box is open, the request's
own Approve (or Accept) is disabled, so that a click meant for "Run edited" cannot
run the unedited code. The run is stopped with the header's Stop, the one Stop
of the widget.

The editor is a stock ipywidgets ``Textarea`` sized to the code; in JupyterLab and
Notebook 7 the agentnb-cells extension puts JupyterLab's code editor (CodeMirror:
Python highlighting, Tab indents) over it, and the textarea keeps its value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets

from ..chat.approval import ApprovalRequest, Decision
from ..record import subject
from .card import Turn
from .elements import button, hbox, html_part, vbox

__all__ = ["ApprovalPanel", "Waiting", "editor_rows"]


class ApprovalPanel:
    """The buttons of one approval request, with the editor and the feedback box
    they reveal. ``choose`` is called once, with the user's decision."""

    def __init__(self, request: ApprovalRequest, choose: Callable[[Decision], None]) -> None:
        self.request = request
        self._choose = choose
        self.chosen = False
        step = request.kind == "step"
        question = f"Run {subject(request.step)}?" if step else "Accept this report?"
        hint = (
            "Approve it, edit the code first, or reject it with feedback for the analyst."
            if step
            else "Accept it as the answer, or send it back with feedback."
        )
        self.prompt = html_part(
            f'<div class="agentnb-approval-prompt">{question}'
            f'<span class="agentnb-approval-hint">{hint}</span></div>'
        )
        if step:
            first = button("Approve & run", "agentnb-approve", "primary", "run this step")
            first.on_click(lambda _: self.choose(Decision.approve()))
            edit = button("Edit", "agentnb-edit", tooltip="change the code before it runs")
            edit.on_click(lambda _: self._toggle("editor"))
            others = [edit]
        else:
            first = button("Accept", "agentnb-accept", "primary", f"accept {subject(None)}")
            first.on_click(lambda _: self.choose(Decision.approve()))
            others = []
        reject = button("Reject", "agentnb-reject", tooltip="send it back with feedback")
        reject.on_click(lambda _: self._toggle("feedback"))
        self.first = first
        self._first_tooltip = first.tooltip
        self.buttons = [first, *others, reject]
        self.row = hbox(self.buttons, "agentnb-buttons")
        self.box = vbox([self.prompt, self.row], "agentnb-approval")
        self.open: str | None = None
        self.drawers: dict[str, tuple[Any, Any]] = {}
        """Per drawer (editor, feedback): its box and its Textarea."""

    def choose(self, decision: Decision) -> None:
        if self.chosen:
            return  # a second click before the first was taken
        self.chosen = True
        for widget in self.buttons:
            widget.disabled = True
        self._choose(decision)

    def _toggle(self, name: str) -> None:
        if self.chosen:
            return
        self.open = None if self.open == name else name
        children = [self.prompt, self.row]
        if self.open is not None:
            children.append(self._drawer(self.open)[0])
        self.box.children = tuple(children)
        # the drawer's own button is the action now; Approve comes back with Cancel
        self.first.disabled = self.open is not None
        self.first.tooltip = (
            "close the editor first (Cancel) to run the code as proposed"
            if self.open == "editor"
            else "close the feedback box first (Cancel)"
            if self.open is not None
            else self._first_tooltip
        )

    def _drawer(self, name: str) -> tuple[Any, Any]:
        if name not in self.drawers:
            self.drawers[name] = self._editor() if name == "editor" else self._feedback()
        return self.drawers[name]

    def _editor(self) -> tuple[Any, Any]:
        code = self.request.code
        area = widgets.Textarea(value=code, rows=editor_rows(code))
        area.add_class("agentnb-edit-code")
        run = button("Run edited", "agentnb-run-edited", "primary", "run your version")
        run.on_click(lambda _: self._run_edited(area))
        return self._drawer_box(area, run, "agentnb-editor"), area

    def _feedback(self) -> tuple[Any, Any]:
        area = widgets.Textarea(
            value="",
            rows=3,
            placeholder="What should change? The analyst reads this before the next proposal.",
        )
        area.add_class("agentnb-feedback-text")
        send = button("Send feedback", "agentnb-send-feedback", "warning", "reject, saying this")
        send.on_click(lambda _: self.choose(Decision.reject(area.value)))
        return self._drawer_box(area, send, "agentnb-feedback"), area

    def _drawer_box(self, area: Any, action: Any, css: str) -> Any:
        cancel = button("Cancel", "agentnb-cancel", tooltip="close this")
        cancel.on_click(lambda _: self._toggle(self.open or ""))
        self.buttons += [action, cancel]
        row = hbox([action, cancel], "agentnb-buttons")
        return vbox([area, row], css)

    def _run_edited(self, area: Any) -> None:
        code = str(area.value)
        if not code.strip():
            area.placeholder = "The code is empty: write the step to run, or use Reject."
            return
        self.choose(Decision.edit(code))


def editor_rows(code: str) -> int:
    """Rows of the plain editor: the code's lines and one to grow into (up to 40)."""
    return min(code.rstrip("\n").count("\n") + 2, 40)


@dataclass
class Waiting:
    """A decision the chat is waiting for: the panel shown for it, on its card."""

    request: ApprovalRequest
    future: asyncio.Future[Decision]
    loop: asyncio.AbstractEventLoop
    card: Turn
    panel: ApprovalPanel

    def settle(self, decision: Decision) -> None:
        """Answer the chat, from any thread (click handlers run on the kernel's main
        thread; the future belongs to the loop)."""
        self.loop.call_soon_threadsafe(_settle, self.future, decision)


def _settle(future: asyncio.Future[Decision], decision: Decision) -> None:
    if not future.done():
        future.set_result(decision)

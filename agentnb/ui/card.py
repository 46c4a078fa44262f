"""One agent's turn in the chat widget: a card, or a review nested in the card it reviews.

A step's card gathers its whole life, top to bottom: the proposal, the reviews of
it, the approval panel (or the decision), the run and its outputs, and small lines
(notices, feedback, "inserted as a cell below"). A :class:`Turn` holds the widgets
of that and the text streamed into it; what it shows is decided by
:class:`~agentnb.ui.widget.ChatView` from the run record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ..chat.protocol import split_reasoning
from .elements import hbox, html_part, vbox
from .render import agent_classes, head_html, reasoning_html, streaming_html, thinking_html

__all__ = ["Turn", "running_loop"]


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running here (the kernel's, or a test's), if one is."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Turn:
    """One agent's turn: its widgets, what they show, and its streamed text.

    A turn is either a card (``box`` holds ``main`` and, below it, the reviews of
    the card, its approval panel, its execution and its notes), or a review nested
    in the card it reviews (``box`` is None, ``host`` is that card).

    Streamed text is shown at most once per ``throttle`` seconds (by ``clock``): a
    chunk arriving sooner waits for a timer on the running loop, the next chunk or
    the whole reply.
    """

    def __init__(
        self,
        agent: str,
        action: str,
        *,
        host: Turn | None = None,
        phase: str = "",
        throttle: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
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
            self.main = html_part(self._value())
            self.box = vbox([self.main], "agentnb-card", "agentnb-turn", *agent_classes(agent))
        else:
            classes = ("agentnb-review", "agentnb-turn", *agent_classes(agent))
            self.main = html_part(self._value(), *classes)
        # streaming
        self.throttle = throttle
        self._clock = clock
        self.text = ""
        self.chunks: list[str] = []
        self.flushed_at = float("-inf")
        self.timer: asyncio.TimerHandle | None = None
        # a card's parts, created when first needed
        self.reviews: list[Turn] = []
        self.parts: dict[str, Any] = {}
        self.foot: list[str] = []
        self.decided = False
        """The card shows the user's decision on it."""
        self.ran = False
        """The card shows the finished run of its code."""
        self.fold_row: Any = None
        """The one line a folded card shows (see :meth:`fold`), and whether it is open."""
        self.expanded = False
        self._live: list[str] = []

    @property
    def card(self) -> Turn:
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

    # --- streaming -------------------------------------------------------------------

    def stream(self, text: str) -> None:
        """Text streamed into the turn: shown now, or when the throttle allows."""
        if not self.streaming:
            return
        self.chunks.append(text)
        wait = self.flushed_at + self.throttle - self._clock()
        if wait <= 0:
            self.flush()
        elif self.timer is None:
            loop = running_loop()
            if loop is not None:  # without a loop, the next chunk or the reply flushes
                self.timer = loop.call_later(wait, self.flush)

    def flush(self) -> None:
        """Show the text streamed so far (one widget update)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.streaming or not self.chunks:
            return
        self.text += "".join(self.chunks)
        self.chunks.clear()
        self.reasoning, answer = split_reasoning(self.text)
        self.update(body=streaming_html(answer) if answer else thinking_html())
        self.flushed_at = self._clock()

    def stop_streaming(self) -> None:
        self.streaming = False
        self.chunks.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def close(self) -> None:
        """A turn whose message will not come: keep what it said."""
        self.flush()
        self.stop_streaming()
        if not self.text:
            self.update(body='<div class="agentnb-noreply">no reply</div>')

    # --- a card's parts ----------------------------------------------------------------

    _PARTS = ("approval", "live", "execution", "foot")
    """A card's parts below its main text and reviews, in the order they show."""

    def _layout(self) -> None:
        order = [self.main, *(r.main for r in self.reviews)]
        order += [self.parts[n] for n in self._PARTS if n in self.parts]
        if self.fold_row is not None:
            order.insert(0, self.fold_row)
        self.box.children = tuple(order)

    @property
    def folded(self) -> bool:
        return self.fold_row is not None

    def fold(self, line: str, toggle: Any) -> None:
        """Show the card as one line (``line``, HTML) and ``toggle`` (a button whose
        clicks call :meth:`expand`). The rest stays in the card, hidden by the
        stylesheet (``agentnb-folded``) until it is expanded."""
        if self.fold_row is None:
            self.fold_row = hbox([html_part(line, "agentnb-fold-line"), toggle], "agentnb-fold")
            self.box.add_class("agentnb-folded")
            self._layout()
        else:
            self.fold_row.children[0].value = line

    def expand(self, expanded: bool) -> None:
        """Open (or close again) a folded card."""
        self.expanded = expanded
        if expanded:
            self.box.add_class("agentnb-expanded")
        else:
            self.box.remove_class("agentnb-expanded")

    # --- output while the step runs ------------------------------------------------

    def append_live(self, html: str) -> None:
        """Output of the step running on this card, shown as it comes: ``html`` (safe
        HTML, from :func:`~agentnb.ui.render.output_html`) is added after what is
        there, in the card's ``live`` part, between the decision and the finished
        run. The finished run (the ``execution`` part) replaces it: the view calls
        :meth:`clear_live` then. Nothing streams into it yet: it is the place for the
        managed kernel's output while a step runs."""
        self._live.append(html)
        self.show_html("live", "".join(self._live), "agentnb-running-output")

    def clear_live(self) -> None:
        self._live.clear()
        self.set_part("live", None)

    def add_review(self, review: Turn) -> None:
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
            self.set_part(name, html_part(value, css))

    def add_foot(self, line: str) -> None:
        self.foot.append(line)
        self.show_html("foot", "".join(self.foot), "agentnb-foot")

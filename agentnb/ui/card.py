"""One agent's turn in the chat widget: a card, or a review nested in the card it reviews.

A step's card gathers its whole life, top to bottom: the proposal, the reviews of
it, the approval panel (or the decision), the run and its outputs, and small lines
(notices, feedback, "inserted as a cell below"). A :class:`Turn` holds the widgets
of that and the text streamed into it; what it shows is decided by
:class:`~agentnb.ui.widget.ChatView` from the run record.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ipywidgets as widgets

from .elements import html_part
from .render import agent_classes, head_html, reasoning_html, thinking_html

__all__ = ["Turn"]


class Turn:
    """One agent's turn: its widgets, what they show, and its streamed text.

    A turn is either a card (``box`` holds ``main`` and, below it, the reviews of
    the card, its approval panel, its execution and its notes), or a review nested
    in the card it reviews (``box`` is None, ``host`` is that card).
    """

    def __init__(
        self, agent: str, action: str, *, host: Turn | None = None, phase: str = ""
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
            self.box = widgets.VBox([self.main])
            for css in ("agentnb-card", "agentnb-turn", *agent_classes(agent)):
                self.box.add_class(css)
        else:
            classes = ("agentnb-review", "agentnb-turn", *agent_classes(agent))
            self.main = html_part(self._value(), *classes)
        # streaming
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

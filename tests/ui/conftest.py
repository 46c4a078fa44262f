"""Fixtures for the chat widget: looking into a real ipywidgets tree, clicking its
buttons while a run waits, and whole scripted runs against a real kernel."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pytest

from agentnb import ManagedKernel
from agentnb.chat.group import RunResult
from agentnb.models.base import message_text
from agentnb.models.scripted import ScriptedModel
from agentnb.run import arun
from agentnb.ui.widget import ChatView

from ..conftest import step as step  # the tests' own helper, shared


def walk(widget: Any) -> Iterator[Any]:
    """The widget and everything inside it, in display order."""
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


def classes(widget: Any) -> tuple[str, ...]:
    return tuple(widget._dom_classes)


def shown(widget: Any) -> str:
    """The HTML a widget shows: the values of its HTML widgets (the stylesheet left out)."""
    return "\n".join(
        w.value
        for w in walk(widget)
        if isinstance(w, widgets.HTML) and "agentnb-style" not in classes(w)
    )


def cards(view: ChatView) -> list[Any]:
    return [w for w in walk(view.widget) if "agentnb-card" in classes(w)]


def by_class(view: ChatView, css: str) -> list[Any]:
    return [w for w in walk(view.widget) if css in classes(w)]


def find_button(view: ChatView, description: str, css: str | None = None) -> Any | None:
    """An enabled, visible button with this label (and class), if the view shows one."""
    for w in walk(view.widget):
        if (
            isinstance(w, widgets.Button)
            and w.description == description
            and not w.disabled
            and w.layout.display != "none"
            and (css is None or css in classes(w))
        ):
            return w
    return None


async def click(view: ChatView, description: str, css: str | None = None) -> None:
    """Wait (up to 30 s) until the view shows the button, then click it."""
    for _ in range(3000):
        button = find_button(view, description, css)
        if button is not None:
            button.click()
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {description!r} button appeared; the view is at {view.phase!r}")


def no_display_errors(view: ChatView) -> None:
    """The view never failed to show an event (it says so in an error line)."""
    assert "could not show" not in shown(view.widget)


@dataclass
class UiRun:
    view: ChatView
    model: ScriptedModel
    task: asyncio.Future[RunResult]

    async def result(self) -> RunResult:
        return await asyncio.wait_for(self.task, 60)

    def prompts(self, role: str) -> list[str]:
        return [
            "\n".join(message_text(m) for m in messages if m.role != "system")
            for who, messages in self.model.prompts
            if who == role
        ]


Start = Callable[..., Awaitable[UiRun]]


@pytest.fixture
def start(shared_kernel: ManagedKernel, tmp_path: Path) -> Start:
    """``await start(replies, **arun_options)``: a run in the background, shown in a
    :class:`ChatView` that is also its approver (``approve="each"`` unless given)."""

    async def go(
        replies: Mapping[str, Sequence[str]] | None = None,
        task: str = "Find out something about the numbers.",
        **options: Any,
    ) -> UiRun:
        model = options.pop("model", None) or ScriptedModel(dict(replies or {}))
        view = options.pop("view", None) or ChatView(task)
        options.setdefault("approve", "each")
        runner = asyncio.ensure_future(
            arun(
                task,
                model=model,
                kernel=shared_kernel,
                transcript=tmp_path / f"run-{id(view)}.jsonl",
                approver=view,
                on_event=view.handle,
                **options,
            )
        )
        return UiRun(view, model, runner)

    return go

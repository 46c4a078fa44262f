"""The fault-injection suite: each fault made real, then what the user sees and what is kept.

Every fault runs through a ``%%agents`` cell in a notebook's own kernel (a real
ipykernel; see ``make_cell``), so each test also proves the three promises of the
suite: the user's kernel still answers at once, the run ended (or went on) with a
reason in words, and the JSONL transcript holds every event the widget was given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentnb import Execution

from ..conftest import Cell, script, value
from ..conftest import step as step  # the tests' own helper, shared

TASK = "Which region sold most?"
REPORT = "**North** sold most: 30 against 12."


# What the notebook's kernel knows of the last analysis, as a literal. The widget's
# text is read from its HTML children, tags stripped: what a person would read.
_REPORT = """\
import html as _html, re as _re
import ipywidgets as _w
from agentnb.jupyter import magics as _m
from agentnb.chat.events import Notice as _Notice
from agentnb.chat.transcript import read_transcript as _read

def _walk(w):
    yield w
    for c in getattr(w, "children", ()):
        yield from _walk(c)

_a = _m._session.current
_r = _a.result
_path = _r.transcript_path if _r is not None else None
{
    "kind": _r.stop_reason.kind if _r is not None else None,
    "message": _r.stop_reason.message if _r is not None else (_a.error or ""),
    "steps": [(s.status, s.execution.to_model_text()) for s in _r.steps] if _r else [],
    "notices": [e.text for e in _a.events if isinstance(e, _Notice)],
    "events": [(type(e).__name__, e.seq) for e in _a.events],
    "transcript": [(type(e).__name__, e.seq) for e in _read(_path)] if _path else [],
    "transcript_path": str(_path) if _path else None,
    "phase": _a.view.phase,
    "shown": " ".join(
        _re.sub(r"<[^>]+>", " ", w.value) for w in _walk(_a.view.widget)
        if isinstance(w, _w.HTML) and "agentnb-style" not in w._dom_classes
    ),
}
"""


@dataclass
class Outcome:
    """How a ``%%agents`` cell ended, seen from the notebook."""

    cell: Execution
    kind: str | None
    """The run's stop reason kind (None: the run never started)."""
    message: str
    steps: list[tuple[str, str]]
    """Per step that ran: its status and what the analyst was told of it."""
    notices: list[str]
    events: list[tuple[str, int]]
    transcript: list[tuple[str, int]]
    transcript_path: str | None
    phase: str
    shown: str
    """The widget's text."""

    @property
    def error(self) -> str:
        """The cell's one-line error (``AgentsError: …``), or "" if the cell passed."""
        errors = [o for o in self.cell.outputs if o["output_type"] == "error"]
        if not errors:
            return ""
        (error,) = errors
        assert len(error["traceback"]) == 1, "a failed %%agents cell shows one line"
        return f"{error['ename']}: {error['evalue']}"

    @property
    def statuses(self) -> list[str]:
        return [status for status, _ in self.steps]

    def transcript_complete(self) -> bool:
        """Every event the widget got is in the transcript, in order, the last one
        saying why the run ended."""
        return (
            bool(self.transcript)
            and self.transcript == self.events
            and [seq for _, seq in self.transcript] == list(range(1, len(self.transcript) + 1))
            and self.transcript[0][0] == "RunStarted"
            and self.transcript[-1][0] == "RunFinished"
        )


class Agents:
    """``await agents(line, task)`` runs ``%%agents line`` with ``task`` in the notebook,
    checks that the notebook's kernel still answers at once, and reports the outcome."""

    def __init__(self, cell: Cell, tmp_path: Path) -> None:
        self.cell = cell
        self.tmp_path = tmp_path

    def script(self, analyst: list[str], critic: list[str] | None = None) -> str:
        """``--model scripted:PATH`` for these replies (the critic approves everything
        unless told otherwise)."""
        path = script(self.tmp_path, analyst, critic or ["APPROVE"] * (len(analyst) + 2))
        return f"--model scripted:{path}"

    async def __call__(self, line: str, task: str = TASK) -> Outcome:
        ran = await self.cell(f"%%agents {line}\n{task}")
        outcome = await self.outcome(ran)
        await self.responsive()
        return outcome

    async def outcome(self, ran: Execution) -> Outcome:
        report: dict[str, Any] = value(await self.cell(_REPORT))
        return Outcome(cell=ran, **report)

    async def responsive(self) -> None:
        """The notebook's kernel runs a cell at once, with its variables intact."""
        answer = await asyncio.wait_for(self.cell("int(sales['revenue'].sum())"), 10)
        assert value(answer) == 42


@pytest.fixture
async def agents(make_cell: Callable[..., Awaitable[Cell]], tmp_path: Path) -> Agents:
    return Agents(await make_cell(), tmp_path)


@pytest.fixture
def make_agents(
    make_cell: Callable[..., Awaitable[Cell]], tmp_path: Path
) -> Callable[..., Awaitable[Agents]]:
    """``await make_agents(**kernel_config)``: :class:`Agents` in a notebook kernel
    configured so (its environment, say)."""

    async def make(**config: object) -> Agents:
        return Agents(await make_cell(**config), tmp_path)

    return make

"""The run a ``%%agents`` cell watches, without a kernel: its events through the
cell's wiring into the record and the widget, and how the cell ends."""

from __future__ import annotations

import typing

import pytest

from agentnb.chat.events import (
    Event,
    ExecutionFinished,
    ExecutionStarted,
    RunFinished,
    RunStarted,
)
from agentnb.chat.group import RunResult
from agentnb.chat.messages import DisplayUpdate, Execution
from agentnb.chat.termination import StopKind, StopReason
from agentnb.jupyter.session import Agents, resolve_settings
from agentnb.jupyter.watch import Analysis, observe
from agentnb.record import RunRecord
from agentnb.ui.widget import ChatView


def analysis_of(events: list[Event], reason: StopReason) -> Analysis:
    """An analysis whose run sent ``events`` through the cell's wiring and returned."""
    record = RunRecord()
    analysis = Analysis(
        task="How many?",
        settings=resolve_settings(Agents(), {}),
        view=ChatView("How many?", record=record),
        record=record,
    )
    on_event = observe(analysis, anchor=None)  # no frontend said which cell ran
    for event in events:
        on_event(event)
    analysis.result = RunResult(
        run_id="run-1",
        task="How many?",
        final_report=None,
        steps=(),
        usage={},
        cost=None,
        stop_reason=reason,
        transcript_path=None,
    )
    return analysis


@pytest.mark.parametrize("kind", typing.get_args(StopKind))
def test_the_widget_and_the_cell_agree_on_how_a_run_ended(kind: StopKind) -> None:
    reason = StopReason(kind, f"ended: {kind}")
    started = RunStarted(run_id="run-1", task="How many?", models={"analyst": "m"}, approve="each")
    analysis = analysis_of([started, RunFinished(reason=reason, final_report=None)], reason)
    cell_fails = analysis.failure() is not None
    assert (analysis.view.phase == "failed") == cell_fails
    assert analysis.view.phase == analysis.record.phase
    assert (
        analysis.view.phase
        == {"approved": "done", "stopped": "stopped", "failed": "failed"}[reason.outcome]
    )
    assert f"{kind}: ended: {kind}" in analysis.bundle()["text/plain"]


def test_a_loop_guard_stop_is_stopped_in_the_widget_and_the_cell_passes() -> None:
    reason = StopReason("loop_guard", "3 steps in a row failed")
    analysis = analysis_of([RunFinished(reason=reason, final_report=None)], reason)
    assert analysis.view.phase == "stopped"
    assert analysis.failure() is None
    assert "phase: stopped" in analysis.status()


def test_where_the_widget_says_why_the_cells_error_points_there() -> None:
    why = "Cannot reach http://127.0.0.1:9/v1 (connection refused). Is the server running?"
    reason = StopReason("model_error", why)
    analysis = analysis_of([RunFinished(reason=reason, final_report=None)], reason)
    assert analysis.failure() == why  # headless (papermill): the whole of it
    brief = analysis.failure(brief=True)
    assert brief == "the analysis above failed (model_error): its last line says why and what to do"


def test_the_static_chat_of_an_ended_run_and_the_widgets_line() -> None:
    reason = StopReason("approved", "the final report was approved")
    started = RunStarted(run_id="run-1", task="How many?", models={"analyst": "m"}, approve="each")
    analysis = analysis_of([started, RunFinished(reason=reason, final_report="Six.")], reason)
    chat = analysis.static_output()
    assert chat["metadata"] == {"agentnb": {"run_id": "run-1", "view": "static"}}
    assert (
        chat["data"]["text/plain"]
        == "agentnb: How many?\n\napproved: the final report was approved\n\nSix."
    )
    assert 'class="agentnb agentnb-static agentnb-static-run-1"' in chat["data"]["text/html"]
    # before the chat is kept, the widget's display carries the report for text-only views;
    # after, one line that the chat makes redundant
    assert "Six." in analysis.bundle()["text/markdown"]
    analysis.chat = chat
    bundle = analysis.bundle()
    assert "text/markdown" not in bundle
    assert bundle["text/html"] == '<div class="agentnb-fallback">agentnb: How many? (done)</div>'


def test_a_display_a_later_step_updates_is_updated_in_the_earlier_steps_cell() -> None:
    # outside a kernel the writer keeps its cells for a page: what it keeps is what the
    # page gets, the outputs of step 1 as step 2 left them
    def shown(text: str) -> dict[str, typing.Any]:
        return {"output_type": "display_data", "metadata": {}, "data": {"text/plain": text}}

    first = Execution(
        code="h = display('0 %', display_id=True)",
        status="ok",
        outputs=(shown("'0 %'"),),
        execution_count=1,
        duration=0.1,
    )
    second = Execution(
        code="h.update('100 %')",
        status="ok",
        outputs=(),
        execution_count=2,
        duration=0.1,
        updates=(DisplayUpdate(execution_count=1, outputs=(shown("'100 %'"),)),),
    )
    record = RunRecord()
    analysis = Analysis(
        task="Progress?",
        settings=resolve_settings(Agents(), {}),
        view=ChatView("Progress?", record=record),
        record=record,
    )
    on_event = observe(analysis, anchor="agents-cell")
    on_event(RunStarted(run_id="run-1", task="Progress?", models={}, approve="never"))
    for number, execution in ((1, first), (2, second)):
        on_event(ExecutionStarted(step=number, code=execution.code))
        on_event(ExecutionFinished(step=number, execution=execution))
    writer = analysis.writer
    assert writer is not None
    assert writer._messages["run-1:1"]["cell"]["outputs"] == [shown("'100 %'")]
    assert writer._messages["run-1:2"]["cell"]["outputs"] == []

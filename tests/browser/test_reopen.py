"""Closing the browser tab while a ``%%agents`` run awaits approval, then opening the notebook
again: the run goes on in the kernel, the reopened page shows its live widget, and every approved
step lands below the ``%%agents`` cell once.

The tab is closed as a user closes it (the page goes, the server and the kernel stay), with and
without saving first; the notebook is then opened in a new page of the same browser.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .harness import Notebook
from .test_agents import (
    AFTER,
    LOAD,
    _agent_cells,
    _card,
    _pending,
    _setup,
    _source,
    _text,
    _wait_phase,
    _widget,
)

STEP_1 = 'print("rows", len(sales))'
# long enough that the tab is closed while it runs, so it finishes with no page open
STEP_2 = 'import time\n\ntime.sleep(1.5)\nprint("units", int(sales["units"].sum()))'
STEP_3 = 'print("regions", sales["region"].nunique())'

SCRIPT = {
    "analyst": [
        f"How many rows.\n\n```python\n{STEP_1}\n```",
        f"All units sold.\n\n```python\n{STEP_2}\n```",
        f"How many regions.\n\n```python\n{STEP_3}\n```",
        "Six rows, 41 units, three regions.",
    ],
    "critic": ["APPROVE.", "APPROVE.", "APPROVE.", "APPROVE."],
}

# the code cells only (--notes off): the steps are what a reopened page must not lose or double
AGENTS = (
    '%%agents --data sales --notes off --model "scripted:{replies}"\n'
    "Count the rows, units and regions."
)

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _transcript(notebook: Notebook) -> list[dict[str, Any]]:
    """The events of the one run in the server root's ``.agentnb/runs``."""
    (path,) = (notebook.root / ".agentnb" / "runs").glob("*.jsonl")
    lines = Path(path).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _recorded(events: list[dict[str, Any]], kind: str, step: int) -> bool:
    """Whether an event of this type about this step is in the transcript."""
    return any(
        e["type"] == kind and (e.get("step") or e.get("request", {}).get("step")) == step
        for e in events
    )


def _wait_closed(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` while no page is open (so no page to wait in)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def _reopen(notebook: Notebook) -> Notebook:
    """The notebook in a new tab of the same browser, as a user opens it again: same server,
    same kernel, which is still busy with the ``%%agents`` cell (so no wait for idle)."""
    page = notebook.page.context.new_page()
    page.set_default_timeout(30_000)
    notebook.console.attach(page)
    again = Notebook(page, notebook.server, notebook.console, notebook.screenshots)
    assert notebook.name
    again.name = notebook.name
    page.goto(again.url_of(notebook.name))

    def opened() -> dict[str, Any] | None:
        state = again.state()
        ok = (
            state["path"] == notebook.name
            and state["ready"]
            and state["connection"] == "connected"
            and state["cells"]
            and len(state["cells"]) == state["modelCells"]
        )
        return state if ok else None

    again._panel_id = again.wait_for(opened, f"{notebook.name} to open again", 60)["id"]
    return again


def _inserted(notebook: Notebook, count: int) -> dict[int, dict[str, Any]] | None:
    found = _agent_cells(notebook.cells())
    return found if len(found) >= count else None


def _widget_views(cell: dict[str, Any]) -> list[str]:
    return [
        o["data"][WIDGET_VIEW]["model_id"]
        for o in cell["outputs"]
        if WIDGET_VIEW in o.get("data", {})
    ]


def _close_tab(notebook: Notebook) -> None:
    # no beforeunload dialog: the tab goes as when the user confirms leaving
    notebook.page.close(run_before_unload=False)


def _finish_after_reopening(again: Notebook) -> None:
    """Approve step 3 and accept the report in the reopened page; step 3 lands there."""
    again.click_button("Approve & run", within=_pending(again, 2, "proposes step 3"))
    again.click_button("Accept", within=_pending(again, 2, "final report", "agentnb-accept"))
    _wait_phase(again, 2, "done")
    again.wait_for(lambda: _inserted(again, 3), "step 3's cell")


def _check_cells(again: Notebook, setup: str) -> None:
    cells = again.cells()
    sources = [_source(c) for c in cells]
    assert sources == [LOAD, setup, AGENTS, STEP_1, STEP_2, STEP_3, AFTER], again.describe()
    agents = _agent_cells(cells)
    keys = [c["metadata"]["agentnb"]["key"] for c in agents.values()]
    run_id = agents[3]["metadata"]["agentnb"]["run_id"]
    assert keys == [f"{run_id}:{step}" for step in (1, 2, 3)]
    assert "rows 6" in _text(agents[3])
    assert "units 41" in _text(agents[4])
    assert "regions 3" in _text(agents[5])


def _check_transcript(notebook: Notebook) -> None:
    events = _transcript(notebook)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), "events are missing"
    for step in (1, 2, 3):
        assert _recorded(events, "ExecutionFinished", step=step), step
    assert events[-1]["type"] == "RunFinished"
    assert events[-1]["reason"]["kind"] == "approved"


def _run_and_approve_step_1(notebook: Notebook, name: str) -> str:
    """Open a notebook ``name`` whose %%agents cell runs; approve step 1 and wait until
    it is inserted. Returns the setup cell's source."""
    setup = _setup(notebook, replies=SCRIPT)
    notebook.create(name, [LOAD, setup, AGENTS, AFTER])
    notebook.open(name)
    notebook.run_cell(0)
    notebook.run_cell(1)
    notebook.run_cell(2, wait=False)
    notebook.click_button("Approve & run", within=_pending(notebook, 2, "proposes step 1"))
    notebook.wait_for(lambda: _inserted(notebook, 1), "step 1's cell")
    return setup


def test_closing_the_tab_unsaved_and_reopening_goes_on(notebook: Notebook) -> None:
    setup = _run_and_approve_step_1(notebook, "reopen.ipynb")
    notebook.click_button("Approve & run", within=_pending(notebook, 2, "proposes step 2"))
    _wait_phase(notebook, 2, "running step 2")
    _close_tab(notebook)
    closed = time.time()

    # with no page open, step 2 finishes and step 3 is proposed and reviewed
    _wait_closed(
        lambda: _recorded(_transcript(notebook), "ApprovalRequested", step=3),
        "the run to go on to step 3 with no page open",
    )
    (finished,) = [
        e for e in _transcript(notebook) if e["type"] == "ExecutionFinished" and e["step"] == 2
    ]
    assert finished["time"] > closed, "step 2 finished before the tab was closed"

    again = _reopen(notebook)
    # the live widget is back in the %%agents cell, awaiting step 3
    card = _pending(again, 2, "proposes step 3")
    again.screenshot("1-reopened-pending", show=card)
    # the unsaved notebook lost step 1's cell with the tab: it comes back, and step 2, which
    # finished while no page was open, lands after it
    cells = again.wait_for(lambda: _inserted(again, 2), "steps 1 and 2 to be inserted")
    assert sorted(cells) == [3, 4], again.describe()
    assert len(_widget_views(again.cells()[2])) == 1, "no widget view in the %%agents cell"

    _finish_after_reopening(again)
    _check_cells(again, setup)
    # one folded line per step: the steps sent again on reopening do not fold twice
    marks = _widget(again, 2).locator(".agentnb-fold")
    again.wait_for(lambda: marks.count() == 3, "the three steps to fold")
    again.screenshot("2-finished", show=again.cell(5))
    saved = again.save()
    assert [_source(c) for c in saved["cells"]] == [_source(c) for c in again.cells()]
    _check_transcript(notebook)
    assert marks.count() == 3
    assert not again.console.errors


@pytest.mark.parametrize("jupyter_server", ["lab"], indirect=True)
def test_closing_the_tab_after_saving_and_reopening_goes_on(notebook: Notebook) -> None:
    setup = _run_and_approve_step_1(notebook, "saved.ipynb")
    _pending(notebook, 2, "proposes step 2")
    saved = notebook.save()
    view = _widget_views(saved["cells"][2])
    assert len(view) == 1, "the saved %%agents cell has no widget view"
    _close_tab(notebook)

    again = _reopen(notebook)
    card = _pending(again, 2, "proposes step 2")
    again.click_button("Approve & run", within=card)
    cells = again.wait_for(lambda: _inserted(again, 2), "step 2 to be inserted")
    assert sorted(cells) == [3, 4], again.describe()
    # the widget manager restored the saved view from the live kernel; it is not added again
    assert _widget_views(again.cells()[2]) == view
    step_2 = _card(again, 2, "proposes step 2").locator(".agentnb-execution")
    assert step_2.locator(".agentnb-badge-ok").count() == 1

    _finish_after_reopening(again)
    _check_cells(again, setup)
    _check_transcript(notebook)
    assert not again.console.errors

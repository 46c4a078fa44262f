"""``%%agents`` in JupyterLab and Notebook 7, with the scripted model: the chat widget's buttons,
the cells the agentnb-cells extension inserts, saving, stopping, and a follow-up cell.

The scripted model replays each agent's replies in order, whatever it is asked, so every script
below follows the decisions its test clicks (a rejected proposal is followed by the analyst's
revision; every proposal and the report are reviewed by the critic first).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from playwright.sync_api import Locator

from .harness import Notebook

LOAD = "%load_ext agentnb"

SALES = """\
import pandas as pd

sales = pd.DataFrame(
    {
        "region": ["North", "South", "North", "East", "South", "East"],
        "units": [10, 4, 7, 3, 12, 5],
        "price": [2.5, 3.0, 2.5, 4.0, 3.0, 4.0],
    }
)"""

AFTER = 'print("the cell after the analysis")'

# --- scenario 1: approve, edit, reject, plot, accept -------------------------------------------

STEP_2 = 'units = sales.groupby("region")["units"].sum()\nprint(units)'
EDITED_2 = (
    'units = sales.groupby("region")["units"].sum()\n'
    'revenue = (sales["units"] * sales["price"]).groupby(sales["region"]).sum()\n'
    'print("edited revenue", revenue.to_dict())'
)
REJECTED_3 = "units.to_frame()"
PLOT_3 = """\
import matplotlib.pyplot as plt

ax = units.plot.bar(title="Units per region")
plt.show()"""
FEEDBACK = "Plot it as a bar chart instead of a table."

FULL_SCRIPT = {
    "analyst": [
        "First, how much data there is.\n\n```python\nprint(sales.shape)\n```",
        f"Units sold per region.\n\n```python\n{STEP_2}\n```",
        f"The units as a table.\n\n```python\n{REJECTED_3}\n```",
        f"As you asked, a bar chart.\n\n```python\n{PLOT_3}\n```",
        "**North sold the most units** (17), then South (16) and East (8).",
    ],
    "critic": [
        "APPROVE. A first look at the size.",
        "APPROVE. A plain group-by.",
        "APPROVE. A table is fine.",
        "APPROVE. One bar per region, titled.",
        "APPROVE. The figures match step 2.",
    ],
}

PLOT_SCRIPT = {
    "analyst": [
        f"Units per region, as bars.\n\n```python\n{STEP_2}\n\n{PLOT_3}\n```",
        "North sold the most.",
    ],
    "critic": ["APPROVE.", "APPROVE."],
}
_TRUSTED_JS = (
    "() => window.jupyterapp.shell.currentWidget.content.widgets.map(c => c.model.trusted)"
)

# --- scenario 2: stop ---------------------------------------------------------------------------

SLEEP = 'import time\n\nprint("sleeping", flush=True)\ntime.sleep(60)'
SLEEP_SCRIPT = {
    "analyst": [f"This step takes a while.\n\n```python\n{SLEEP}\n```"],
    "critic": ["APPROVE."],
}
CHECK = "print('user kernel ok', 6 * 7)"

# --- scenario 3: a follow-up cell ---------------------------------------------------------------

FIRST_STEP = 'by_region = sales.groupby("region")["units"].sum()\nprint(by_region.to_dict())'
FIRST_SCRIPT = {
    "analyst": [
        f"Units per region.\n\n```python\n{FIRST_STEP}\n```",
        "North sold the most units (17).",
    ],
    "critic": ["APPROVE.", "APPROVE."],
}
SECOND_STEP = 'print("top region from the first analysis:", by_region.idxmax())'
SECOND_SCRIPT = {
    "analyst": [
        f"The first analysis left `by_region` in the kernel.\n\n```python\n{SECOND_STEP}\n```",
        "The top region is North.",
    ],
    "critic": ["APPROVE.", "APPROVE."],
}


def _setup(notebook: Notebook, **scripts: dict[str, list[str]]) -> str:
    """Write each script as ``<name>.json`` into the server root; the setup cell's source that
    defines ``sales`` and one variable per script holding its path."""
    lines = [SALES, ""]
    for name, script in scripts.items():
        path = notebook.root / f"{name}.json"
        path.write_text(json.dumps(script, indent=1))
        lines.append(f"{name} = {str(path)!r}")
    return "\n".join(lines)


# --- reading the widget -------------------------------------------------------------------------


def _widget(notebook: Notebook, cell: int) -> Locator:
    """The chat widget in a ``%%agents`` cell's output."""
    return notebook.cell(cell).locator(".agentnb").first


def _phase(notebook: Notebook, cell: int) -> str:
    return _widget(notebook, cell).locator(".agentnb-phase-words").inner_text()


def _wait_phase(notebook: Notebook, cell: int, words: str, timeout: float | None = None) -> None:
    notebook.wait_for(
        lambda: _phase(notebook, cell) == words,
        f"the widget of cell {cell} to say {words!r}",
        timeout,
    )


def _card(notebook: Notebook, cell: int, action: str) -> Locator:
    """The card whose head says exactly ``action`` (``proposes step 2``, ``final report``)."""
    exact = re.compile(rf"^\s*{re.escape(action)}\s*$")
    return (
        _widget(notebook, cell)
        .locator(".agentnb-card")
        .filter(has=notebook.page.locator(".agentnb-action", has_text=exact))
    )


def _pending(
    notebook: Notebook, cell: int, action: str, button: str = "agentnb-approve"
) -> Locator:
    """The card whose head says ``action``, once it awaits approval with live buttons; the
    only card that does."""
    card = _card(notebook, cell, action).and_(notebook.page.locator(".agentnb-pending"))
    live = card.locator(f"button.{button}:enabled")
    notebook.wait_visible(live, f"the approval buttons of {action!r}")
    pending = _widget(notebook, cell).locator(".agentnb-card.agentnb-pending")
    notebook.wait_for(lambda: pending.count() == 1, "one card to await approval")
    assert _phase(notebook, cell) == "awaiting your approval"
    return card


def _wait_finished(notebook: Notebook, cell: int, timeout: float | None = None) -> None:
    """The ``%%agents`` cell has an execution count and no ``[*]``."""

    def finished() -> bool:
        state = notebook.state()["cells"][cell]
        return state["execution_count"] is not None and "*" not in state["prompt"]

    notebook.wait_for(finished, f"the %%agents cell {cell} to finish", timeout)


def _agent_cells(
    cells: list[dict[str, Any]], kind: str | None = "code"
) -> dict[int, dict[str, Any]]:
    """The cells agentnb inserted, by index: its code cells (the steps), its markdown cells
    (each step's note, the report), or all of them (``kind=None``)."""
    return {
        i: c
        for i, c in enumerate(cells)
        if "agentnb" in c.get("metadata", {}) and kind in (None, c["cell_type"])
    }


def _type_code(notebook: Notebook, card: Locator, code: str) -> None:
    """Replace the code in a card's editor (JupyterLab's CodeMirror, from agentnb-cells) by
    typing, as a user does; wait until the widget's value has it."""
    editor = card.locator(".agentnb-code-editor .cm-content")
    notebook.wait_visible(editor, "the code editor")
    editor.click()
    notebook.page.keyboard.press("Control+a")
    notebook.page.keyboard.type(code)
    area = card.locator(".agentnb-edit-code textarea")
    notebook.wait_for(lambda: area.input_value() == code, "the edit to reach the widget")


def _source(cell: dict[str, Any]) -> str:
    source = cell["source"]
    return "".join(source) if isinstance(source, list) else str(source)


def _text(cell: dict[str, Any]) -> str:
    """The text of a cell's stream outputs."""
    parts = [o.get("text", "") for o in cell["outputs"] if o["output_type"] == "stream"]
    return "".join("".join(p) if isinstance(p, list) else p for p in parts)


def _image_loaded(image: Locator) -> bool:
    return bool(image.evaluate("img => img.complete && img.naturalWidth > 100"))


# --- the scenarios ------------------------------------------------------------------------------


def test_approve_edit_reject_plot_accept_then_save_and_reopen(notebook: Notebook) -> None:
    setup = _setup(notebook, replies=FULL_SCRIPT)
    agents = (
        '%%agents --data sales --model "scripted:{replies}"\n'
        "Which region sold the most units? Plot the units per region."
    )
    notebook.create("analysis.ipynb", [LOAD, setup, agents, AFTER])
    notebook.open("analysis.ipynb")
    notebook.run_cell(0)
    notebook.run_cell(1)
    notebook.run_cell(2, wait=False)

    # step 1: approve
    card = _pending(notebook, 2, "proposes step 1")
    assert "print(sales.shape)" in card.locator(".agentnb-code").first.inner_text()
    assert notebook.is_running(2)
    notebook.screenshot("1-pending-approval", show=card)
    notebook.click_button("Approve & run", within=card)

    # step 2: edit, run the edited code
    card = _pending(notebook, 2, "proposes step 2")
    step_1 = _card(notebook, 2, "proposes step 1").locator(".agentnb-execution")
    assert step_1.locator(".agentnb-badge-ok").count() == 1, step_1.inner_text()
    assert "(6, 3)" in step_1.inner_text()
    notebook.click_button("Edit", within=card)
    editor = card.locator(".agentnb-edit-code textarea")
    notebook.wait_for(lambda: editor.input_value() == STEP_2, "the editor to hold step 2's code")
    _type_code(notebook, card, EDITED_2)
    notebook.screenshot("2-edit-box", show=card)
    notebook.click_button("Run edited", within=card)

    # step 3: reject with feedback; the analyst's revision comes back as step 3
    card = _pending(notebook, 2, "proposes step 3")
    # step 2 is a cell now: its card is one line, which opens on "show"
    folded = _card(notebook, 2, "proposes step 2").and_(notebook.page.locator(".agentnb-folded"))
    line = notebook.wait_visible(folded.locator(".agentnb-fold-line"), "step 2's folded line")
    assert "edited by you" in line.inner_text()
    step_2 = folded.locator(".agentnb-execution")
    assert not step_2.is_visible()
    notebook.click_button("show", within=folded)
    notebook.wait_visible(step_2.locator(".agentnb-badge-ok"), "step 2's ok badge")
    assert "your edit, as it ran" in (step_2.text_content() or "")
    assert "edited revenue" in step_2.inner_text()
    notebook.click_button("Reject", within=card)
    notebook.fill(".agentnb-feedback-text textarea", FEEDBACK, within=card)
    notebook.screenshot("3-feedback-box", show=card)
    notebook.click_button("Send feedback", within=card)

    revised = _pending(notebook, 2, "revises step 3")
    rejected = _card(notebook, 2, "proposes step 3")
    assert rejected.locator(".agentnb-quote").inner_text() == FEEDBACK
    assert "agentnb-superseded" in (rejected.get_attribute("class") or "")
    assert rejected.locator(".agentnb-execution").count() == 0  # it never ran
    assert "units.plot.bar" in revised.locator(".agentnb-code").first.inner_text()
    notebook.screenshot("4-rejected-and-revised", show=rejected)
    notebook.click_button("Approve & run", within=revised)

    # the plot, then the final report: accept
    report = _pending(notebook, 2, "final report", button="agentnb-accept")
    step_3 = _card(notebook, 2, "revises step 3").and_(notebook.page.locator(".agentnb-folded"))
    plot = step_3.locator(".agentnb-out-img img")
    notebook.wait_visible(step_3.locator(".agentnb-fold-line"), "step 3 folded: it is a cell")
    assert not plot.is_visible()  # the plot shows in its cell, not twice
    notebook.click_button("show", within=step_3)
    notebook.wait_visible(plot, "the plot in the widget")
    notebook.wait_for(lambda: _image_loaded(plot), "the plot image to load")
    notebook.screenshot("5-plot-rendered", show=plot)
    notebook.click_button("Accept", within=report)

    _wait_finished(notebook, 2)
    _wait_phase(notebook, 2, "done")
    assert (
        "the final report was approved"
        in _widget(notebook, 2).locator(".agentnb-end-done").inner_text()
    )

    # the inserted cells: below the %%agents cell, in step order, each once
    expected = [("print(sales.shape)", False), (EDITED_2, True), (PLOT_3, False)]

    def inserted() -> dict[int, dict[str, Any]] | None:
        found = _agent_cells(notebook.cells())
        return found if len(found) == len(expected) else None

    cells = notebook.wait_for(inserted, "the three steps to be inserted as cells")
    assert sorted(cells) == [4, 6, 8], notebook.describe()
    run_id = cells[4]["metadata"]["agentnb"]["run_id"]
    # above each step its note, and the final report after them
    notes = notebook.wait_for(
        lambda: (lambda n: n if len(n) == 4 else None)(_agent_cells(notebook.cells(), "markdown")),
        "the notes and the report",
    )
    assert sorted(notes) == [3, 5, 7, 9]
    assert [_source(notes[i]).splitlines()[0] for i in (3, 5, 7, 9)] == [
        "## Step 1",
        "## Step 2",
        "## Step 3",
        "## Final report",
    ]
    assert notes[9]["metadata"]["agentnb"]["key"] == f"{run_id}:report"
    for (index, cell), (step, (code, edited)) in zip(
        sorted(cells.items()), enumerate(expected, 1), strict=True
    ):
        tags = cell["metadata"]["agentnb"]
        assert tags["key"] == f"{run_id}:{step}"
        assert (tags["run_id"], tags["step"], tags["edited"]) == (run_id, step, edited)
        assert tags["models"] == {"analyst": "scripted", "critic": "scripted"}
        assert _source(cell) == code, index
    assert "(6, 3)" in _text(cells[4])
    assert "edited revenue" in _text(cells[6])
    assert any("image/png" in o.get("data", {}) for o in cells[8]["outputs"])
    all_cells = notebook.cells()
    assert [_source(c) for c in all_cells][:3] == [LOAD, setup, agents]
    assert len(all_cells) == 11
    assert _source(all_cells[10]) == AFTER
    assert not any(REJECTED_3 in _source(c) for c in all_cells)  # the rejected proposal
    page_plot = notebook.cell(8).locator(".jp-OutputArea img")
    notebook.wait_visible(page_plot, "the plot in the inserted cell")
    # each step that became a cell folds to one line in the widget
    folded = notebook.cell(2).locator(".agentnb-card.agentnb-folded")
    notebook.wait_for(lambda: folded.count() == 3, "the three steps to fold")
    notebook.screenshot("6-finished", show=notebook.cell(2))
    notebook.screenshot("7-inserted-cells", show=notebook.cell(8))

    # the widget's Save button writes the analysis notebook into the server root
    notebook.click_button("Save", within=_widget(notebook, 2).locator(".agentnb-header"))
    note = _widget(notebook, 2).locator(".agentnb-note-saved")
    notebook.wait_visible(note, "the widget to say where it saved")
    assert "Saved the analysis as analysis-analysis.ipynb" in note.inner_text()
    path = Path(str(note.locator("b").get_attribute("title")))
    path = path if path.is_absolute() else notebook.root / path
    assert path.parent == notebook.root, path
    analysis = nbformat.read(path, as_version=4)
    nbformat.validate(analysis)
    sources = [c.source for c in analysis.cells if c.cell_type == "code"]
    assert EDITED_2 in sources
    assert PLOT_3 in sources
    assert REJECTED_3 not in sources
    assert notebook.contents(path.name)["nbformat"] == 4  # the server lists it
    notebook.screenshot("8-saved-by-the-widget", show=note)

    # Ctrl+S, then a fresh page: the cells are there, once, with their outputs
    saved = notebook.save()
    assert [_source(c) for c in saved["cells"]] == [_source(c) for c in all_cells]
    assert {i: c["metadata"]["agentnb"] for i, c in _agent_cells(saved["cells"]).items()} == {
        i: c["metadata"]["agentnb"] for i, c in cells.items()
    }
    assert any("image/png" in o.get("data", {}) for o in saved["cells"][8]["outputs"])
    notebook.reload()
    assert [_source(c) for c in notebook.cells()] == [_source(c) for c in all_cells]
    assert {i: c["metadata"]["agentnb"] for i, c in _agent_cells(notebook.cells()).items()} == {
        i: c["metadata"]["agentnb"] for i, c in cells.items()
    }
    notebook.wait_visible(notebook.cell(8).locator(".jp-OutputArea img"), "the plot after reload")
    assert "edited revenue" in notebook.output_text(6)
    notebook.screenshot("9-reopened", show=notebook.cell(4))
    assert not notebook.console.errors


@pytest.mark.parametrize("jupyter_server", ["lab"], indirect=True)
def test_reopened_notebook_trusts_no_step_and_shows_the_widget(notebook: Notebook) -> None:
    setup = _setup(notebook, plot=PLOT_SCRIPT)
    agents = (
        '%%agents --data sales --approve never --notes off --model "scripted:{plot}"\n'
        "Plot the units."
    )
    notebook.create("trusted.ipynb", [LOAD, setup, agents])
    notebook.open("trusted.ipynb")
    notebook.run_cell(0)
    notebook.run_cell(1)
    notebook.run_cell(2)
    notebook.wait_for(lambda: len(_agent_cells(notebook.cells())) == 1, "the step's cell")
    assert notebook.page.evaluate(_TRUSTED_JS)[3] is False  # inserted: never trusted
    notebook.save()
    on_disk = nbformat.read(notebook.root / "trusted.ipynb", as_version=4)
    assert not any("trusted" in c.metadata for c in on_disk.cells)
    notebook.reload()
    # the step's plot makes the notebook unsigned, so it opens with no cell trusted; the
    # extension trusts the %%agents cell again, with the kernel's own widget in it
    _wait_phase(notebook, 2, "done")  # the live widget, not the fallback
    trusted = notebook.page.evaluate(_TRUSTED_JS)
    assert (trusted[2], trusted[3]) == (True, False), f"cells trusted after reopening: {trusted}"
    notebook.wait_visible(notebook.cell(3).locator(".jp-OutputArea img"), "the step's plot")
    assert not notebook.console.errors


def test_stop_button_and_interrupt_end_a_running_step(notebook: Notebook) -> None:
    setup = _setup(notebook, sleepy=SLEEP_SCRIPT)
    stopped = '%%agents --data sales --approve never --model "scripted:{sleepy}"\nWait a while.'
    interrupted = '%%agents --approve never --model "scripted:{sleepy}"\nWait again.'
    notebook.create("stop.ipynb", [LOAD, setup, stopped, CHECK, interrupted])
    notebook.open("stop.ipynb")
    notebook.run_cell(0)
    notebook.run_cell(1)

    # the widget's Stop button while step 1 sleeps
    notebook.run_cell(2, wait=False)
    _wait_phase(notebook, 2, "running step 1")
    step = _card(notebook, 2, "proposes step 1")
    notebook.wait_visible(step.locator(".agentnb-badge-running"), "the running badge")
    notebook.screenshot("1-running", show=step)
    clicked = time.monotonic()
    notebook.click_button("Stop", within=_widget(notebook, 2).locator(".agentnb-header"))
    _wait_finished(notebook, 2, timeout=20)
    took = time.monotonic() - clicked
    assert took < 8, f"the cell took {took:.1f} s to end after Stop"
    _wait_phase(notebook, 2, "stopped")
    reason = _widget(notebook, 2).locator(".agentnb-reason").inner_text()
    assert "stopped by the user" in reason
    notebook.wait_visible(
        step.locator(".agentnb-badge-interrupted"), "the step's interrupted badge"
    )
    assert "sleeping" in step.locator(".agentnb-execution").inner_text()  # its output is kept
    cell = notebook.cells()[2]
    # the widget and the chat as it ended (hidden while the widget shows); no error
    assert [o["output_type"] for o in cell["outputs"]] == ["display_data", "display_data"]
    assert cell["outputs"][1]["metadata"]["agentnb"]["view"] == "static"
    assert not notebook.is_running(2)
    notebook.screenshot("2-stopped", show=_widget(notebook, 2))

    notebook.run_cell(3)
    assert "user kernel ok 42" in notebook.output_text(3)

    # the notebook's interrupt (■) on a running %%agents cell: one line, AgentsStopped
    notebook.run_cell(4, wait=False)
    _wait_phase(notebook, 4, "running step 1")
    notebook.interrupt_kernel()
    _wait_finished(notebook, 4, timeout=25)
    errors = [o for o in notebook.cells()[4]["outputs"] if o["output_type"] == "error"]
    assert len(errors) == 1, errors
    assert errors[0]["ename"] == "AgentsStopped"
    (line,) = errors[0]["traceback"]  # one line, no Python traceback
    assert "\n" not in line
    assert "AgentsStopped: the analysis was stopped by the interrupt" in notebook.output_text(4)
    _wait_phase(notebook, 4, "stopped")
    interrupted_step = _card(notebook, 4, "proposes step 1")
    notebook.wait_visible(interrupted_step.locator(".agentnb-badge-interrupted"), "interrupted")
    notebook.screenshot("3-interrupted", show=notebook.cell(4))
    notebook.run_cell(3)
    assert "user kernel ok 42" in notebook.output_text(3)
    assert not notebook.console.errors


def test_follow_up_cell_continues_in_the_same_kernel(notebook: Notebook) -> None:
    setup = _setup(notebook, first=FIRST_SCRIPT, second=SECOND_SCRIPT)
    first = '%%agents --data sales --approve never --model "scripted:{first}"\nUnits per region?'
    second = '%%agents --approve never --model "scripted:{second}"\nWhich region is on top?'
    notebook.create("follow-up.ipynb", [LOAD, setup, first, second, AFTER])
    notebook.open("follow-up.ipynb")
    notebook.run_cell(0)
    notebook.run_cell(1)
    notebook.run_cell(2)
    _wait_phase(notebook, 2, "done")

    def inserted(count: int) -> dict[int, dict[str, Any]] | None:
        found = _agent_cells(notebook.cells(), None)  # notes, steps and reports
        return found if len(found) == count else None

    cells = notebook.wait_for(lambda: inserted(3), "the first analysis's cells to be inserted")
    assert sorted(cells) == [3, 4, 5]
    assert _source(cells[4]) == FIRST_STEP
    assert _source(notebook.cells()[6]) == second  # the second %%agents cell moved down

    notebook.run_cell(6)
    _wait_phase(notebook, 6, "done")
    cells = notebook.wait_for(lambda: inserted(6), "the second analysis's cells to be inserted")
    # each run's cells below its own %%agents cell: its note, its step, its report
    assert sorted(cells) == [3, 4, 5, 7, 8, 9], notebook.describe()
    assert _source(cells[8]) == SECOND_STEP
    assert "top region from the first analysis: North" in _text(cells[8])
    assert cells[4]["metadata"]["agentnb"]["run_id"] != cells[8]["metadata"]["agentnb"]["run_id"]
    sources = [_source(c) for c in notebook.cells()]
    assert [sources[i] for i in (0, 1, 2, 4, 6, 8, 10)] == [
        LOAD,
        setup,
        first,
        FIRST_STEP,
        second,
        SECOND_STEP,
        AFTER,
    ]
    assert sources[5] == "## Final report\n\nNorth sold the most units (17)."
    assert sources[9] == "## Final report\n\nThe top region is North."
    step = _card(notebook, 6, "proposes step 1").locator(".agentnb-execution")
    assert step.locator(".agentnb-badge-ok").count() == 1  # folded, not gone
    notebook.screenshot("1-follow-up-done", show=notebook.cell(8))
    assert not notebook.console.errors

"""A step that updates an earlier step's display, in JupyterLab and Notebook 7: as in a notebook,
where ``h.update(...)`` in cell 2 changes what cell 1 shows, the cell step 1 was inserted as and
the widget's card of step 1 both show the update, and the saved notebook keeps it; so does a
notebook saved before the update and opened again after it."""

from __future__ import annotations

from typing import Any

import nbformat
import pytest
from playwright.sync_api import Locator

from ..conftest import step
from .harness import Notebook
from .test_agents import (
    _TRUSTED_JS,
    LOAD,
    _agent_cells,
    _card,
    _pending,
    _setup,
    _source,
    _wait_phase,
)
from .test_reopen import _close_tab, _recorded, _reopen, _transcript, _wait_closed

SHOW = "h = display('0 %', display_id=True)"
UPDATE = "h.update('100 %')"
SCRIPT = {
    "analyst": [step(SHOW, "Show the progress."), step(UPDATE, "Done: update it."), "Done."],
    "critic": ["APPROVE.", "APPROVE.", "APPROVE."],
}


def _outputs_text(cell: dict[str, Any]) -> str:
    return "".join(
        str(output.get("data", {}).get("text/plain", "")) for output in cell.get("outputs", [])
    )


def _updated_run_of_step_1(notebook: Notebook) -> Locator:
    """The run of step 1 in cell 2's widget, its card (folded to a line) shown again, once it
    shows the update."""
    card = _card(notebook, 2, "proposes step 1")
    notebook.click_button("show", within=card)
    run = card.locator(".agentnb-execution")
    notebook.wait_visible(run, "the run of step 1 in its card")
    notebook.wait_for(lambda: "100 %" in run.inner_text(), "the update in the card of step 1")
    return run


def test_a_later_steps_update_shows_in_the_earlier_steps_cell_and_card(
    notebook: Notebook,
) -> None:
    setup = _setup(notebook, progress=SCRIPT)
    agents = (
        '%%agents --data sales --approve never --notes off --model "scripted:{progress}"\n'
        "Show the progress."
    )
    notebook.create("updates.ipynb", [LOAD, setup, agents])
    notebook.open("updates.ipynb")
    notebook.run_cell(0)
    notebook.run_cell(1)
    notebook.run_cell(2)
    _wait_phase(notebook, 2, "done")

    def inserted() -> dict[int, dict[str, Any]] | None:
        found = _agent_cells(notebook.cells())
        return found if len(found) == 2 else None

    steps = notebook.wait_for(inserted, "the two steps' cells")
    assert sorted(steps) == [3, 4]
    assert _source(steps[3]) == SHOW

    # the inserted cell of step 1 shows what step 2 made of it, as the model has it
    notebook.wait_for(
        lambda: "100 %" in notebook.output_text(3), "the update in the cell of step 1"
    )
    assert "'0 %'" not in notebook.output_text(3)
    assert _outputs_text(notebook.cells()[3]) == "'100 %'"
    assert notebook.cells()[3]["outputs"][0].get("execution_count") is None
    assert notebook.page.evaluate(_TRUSTED_JS)[3] is False  # never trusted
    assert "100 %" not in notebook.output_text(4)  # step 2 shows nothing of its own
    notebook.save()  # the notebook keeps the update
    on_disk = nbformat.read(notebook.root / "updates.ipynb", as_version=4)
    assert _outputs_text(on_disk.cells[3]) == "'100 %'"

    # the widget's card of step 1, folded to its line: shown again, it has the update
    run = _updated_run_of_step_1(notebook)
    assert "'0 %'" not in run.inner_text()
    notebook.screenshot("1-updated", show=notebook.cell(2))

    assert not notebook.console.errors


SHOWS = {"analyst": [step(SHOW, "Show the progress."), "Done."], "critic": ["APPROVE."] * 2}
UPDATES = {"analyst": [step(UPDATE, "Finish the progress."), "Done."], "critic": ["APPROVE."] * 2}


def test_a_later_runs_step_updates_what_an_earlier_runs_step_shows(notebook: Notebook) -> None:
    # as cell 2 of a notebook updates cell 1's display: run 2's step, in the same managed
    # kernel, updates the display run 1's step made
    setup = _setup(notebook, shows=SHOWS, updates=UPDATES)
    flags = "--approve never --notes off"
    first = f'%%agents --data sales {flags} --model "scripted:{{shows}}"\nShow the progress.'
    second = f'%%agents {flags} --model "scripted:{{updates}}"\nFinish it.'
    notebook.create("across.ipynb", [LOAD, setup, first, second])
    notebook.open("across.ipynb")
    notebook.run_cell(0)
    notebook.run_cell(1)
    notebook.run_cell(2)
    _wait_phase(notebook, 2, "done")
    notebook.wait_for(lambda: sorted(_agent_cells(notebook.cells())) == [3], "run 1's cell")
    assert _outputs_text(notebook.cells()[3]) == "'0 %'"
    notebook.run_cell(4)
    _wait_phase(notebook, 4, "done")
    notebook.wait_for(lambda: sorted(_agent_cells(notebook.cells())) == [3, 5], "run 2's cell")
    assert _source(notebook.cells()[5]) == UPDATE

    # run 1's cell shows the update, never trusted; run 2's cell shows nothing of its own
    notebook.wait_for(lambda: "100 %" in notebook.output_text(3), "the update in run 1's cell")
    assert _outputs_text(notebook.cells()[3]) == "'100 %'"
    assert notebook.page.evaluate(_TRUSTED_JS)[3] is False
    assert "100 %" not in notebook.output_text(5)
    # run 1's widget: its card of step 1 has it too
    _updated_run_of_step_1(notebook)
    notebook.screenshot("1-updated-across-runs", show=notebook.cell(2))
    saved = notebook.save()
    assert _outputs_text(saved["cells"][3]) == "'100 %'"
    assert not notebook.console.errors


# long enough that the tab is closed while it runs, so it finishes with no page open
SLOW_UPDATE = "import time\n\ntime.sleep(1.5)\nh.update('100 %')"
SLOW_SCRIPT = {
    "analyst": [step(SHOW, "Show the progress."), step(SLOW_UPDATE, "Update it."), "Done."],
    "critic": ["APPROVE.", "APPROVE.", "APPROVE."],
}


@pytest.mark.parametrize("jupyter_server", ["lab"], indirect=True)
def test_a_notebook_saved_before_the_update_gets_it_when_opened_again(
    notebook: Notebook,
) -> None:
    setup = _setup(notebook, progress=SLOW_SCRIPT)
    agents = '%%agents --data sales --notes off --model "scripted:{progress}"\nShow the progress.'
    notebook.create("reopen-updates.ipynb", [LOAD, setup, agents])
    notebook.open("reopen-updates.ipynb")
    notebook.run_cell(0)
    notebook.run_cell(1)
    notebook.run_cell(2, wait=False)
    notebook.click_button("Approve & run", within=_pending(notebook, 2, "proposes step 1"))
    notebook.wait_for(lambda: len(_agent_cells(notebook.cells())) == 1, "step 1's cell")
    assert _outputs_text(notebook.cells()[3]) == "'0 %'"
    card = _pending(notebook, 2, "proposes step 2")
    notebook.save()  # step 1's cell as it is before step 2: 0 %
    notebook.click_button("Approve & run", within=card)
    _wait_phase(notebook, 2, "running step 2")
    _close_tab(notebook)
    _wait_closed(
        lambda: _recorded(_transcript(notebook), "ExecutionFinished", step=2),
        "step 2 to finish with no page open",
    )

    again = _reopen(notebook)
    # the saved cell of step 1 is there already (its insert is skipped): its outputs are
    # replaced by what step 2 left, and step 2 lands after it
    again.wait_for(lambda: "100 %" in again.output_text(3), "the update in step 1's cell")
    cells = again.wait_for(
        lambda: (lambda found: found if len(found) == 2 else None)(_agent_cells(again.cells())),
        "step 2's cell",
    )
    assert sorted(cells) == [3, 4]
    assert _outputs_text(cells[3]) == "'100 %'"
    assert again.page.evaluate(_TRUSTED_JS)[3] is False
    again.click_button("Accept", within=_pending(again, 2, "final report", "agentnb-accept"))
    _wait_phase(again, 2, "done")
    again.screenshot("1-reopened-updated", show=again.cell(3))
    assert not again.console.errors

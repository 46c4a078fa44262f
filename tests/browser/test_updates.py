"""A step that updates an earlier step's display, in JupyterLab and Notebook 7: as in a notebook,
where ``h.update(...)`` in cell 2 changes what cell 1 shows, the cell step 1 was inserted as and
the widget's card of step 1 both show the update, and the saved notebook keeps it."""

from __future__ import annotations

from typing import Any

import nbformat

from ..conftest import step
from .harness import Notebook
from .test_agents import _TRUSTED_JS, LOAD, _agent_cells, _card, _setup, _source, _wait_phase

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
    card = _card(notebook, 2, "proposes step 1")
    notebook.click_button("show", within=card)
    run = card.locator(".agentnb-execution")
    notebook.wait_visible(run, "the run of step 1 in its card")
    notebook.wait_for(lambda: "100 %" in run.inner_text(), "the update in the card of step 1")
    assert "'0 %'" not in run.inner_text()
    notebook.screenshot("1-updated", show=notebook.cell(2))

    assert not notebook.console.errors

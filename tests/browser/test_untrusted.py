"""A step whose outputs carry script runs nothing in the page: not when its cell is inserted,
not after the notebook is saved and reloaded, not when it is closed and opened again. The
inserted cell is never trusted, and a note on the page says what was removed."""

from __future__ import annotations

from ..conftest import step
from .harness import Notebook
from .test_agents import _TRUSTED_JS, LOAD, _agent_cells, _setup, _wait_phase
from .test_reopen import _close_tab, _reopen

HOSTILE = """\
from IPython.display import HTML, Javascript, display

display(Javascript("window.__pwned = 1"))
display(HTML('<b>hostile totals</b><img src=x onerror="window.__pwned = 2">'))"""
SCRIPT = {
    "analyst": [step(HOSTILE, "The totals, shown nicely."), "Done."],
    "critic": ["APPROVE.", "APPROVE."],
}
NOTE = "agentnb removed application/javascript from this output"
PWNED_JS = "() => window.__pwned === undefined ? null : window.__pwned"


def _check(notebook: Notebook, when: str) -> None:
    """Nothing ran, the step's cell (3) is not trusted, its note and safe HTML are shown."""
    notebook.wait_for(lambda: NOTE in notebook.output_text(3), f"the note on the page {when}")
    assert "hostile totals" in notebook.output_text(3)
    assert notebook.page.evaluate(PWNED_JS) is None, f"script ran {when}"
    trusted = notebook.page.evaluate(_TRUSTED_JS)
    assert trusted[3] is False, f"the step's cell is trusted {when}: {trusted}"


def test_a_step_that_emits_script_runs_nothing(notebook: Notebook) -> None:
    setup = _setup(notebook, hostile=SCRIPT)
    agents = (
        '%%agents --data sales --approve never --notes off --model "scripted:{hostile}"\n'
        "The totals?"
    )
    notebook.create("hostile.ipynb", [LOAD, setup, agents])
    notebook.open("hostile.ipynb")
    notebook.run_cell(0)
    notebook.run_cell(1)
    notebook.run_cell(2)
    notebook.wait_for(lambda: len(_agent_cells(notebook.cells())) == 1, "the step's cell")
    _check(notebook, "after the run")
    assert "trusted" not in notebook.cells()[3]["metadata"]
    notebook.screenshot("1-inserted", show=notebook.cell(3))

    notebook.save()
    notebook.reload()
    _wait_phase(notebook, 2, "done")  # the %%agents cell still shows its widget
    _check(notebook, "after saving and reloading")

    _close_tab(notebook)
    again = _reopen(notebook)
    _wait_phase(again, 2, "done")
    _check(again, "after closing and opening the notebook again")
    again.screenshot("2-reopened", show=again.cell(3))
    assert not again.console.errors

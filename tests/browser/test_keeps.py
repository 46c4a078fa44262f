"""The notebook keeps the analysis, in JupyterLab and Notebook 7.

A run inserts each step's reason above its code and the final report after the steps; the
inserted cells look like agentnb's (a mark with the step, the author, the user's edit and the
run; no execution count of the managed kernel's); a finished step folds to one line in the
widget that jumps to its cell; the Edit drawer is a code editor; and when the run ends, the
``%%agents`` cell keeps a static copy of the chat, which shows once the widget is gone: the
kernel shut down and the notebook opened again, the kernel restarted under the page, a trusted
notebook whose widget model is missing, and the HTML that nbconvert (nbviewer) makes of it.
"""

from __future__ import annotations

import re
import time
from typing import Any

import nbformat
import pytest
from playwright.sync_api import Locator

from .harness import Notebook
from .test_agents import LOAD, _agent_cells, _pending, _setup, _source, _wait_phase, _widget

STEP_1 = 'units = sales.groupby("region")["units"].sum()\nunits'
# what the user types into the editor, key by key (Tab: an indent; "add": "d d" would delete a
# cell if the keys reached the notebook)
EDITED_1 = STEP_1 + "\n# add the regions up\nfor region in units.index:\n    print(region)"
STEP_2 = "print(units.max())\nunits.idxmax()"
REPORT = "**North** sold the most units (17)."
SCRIPT = {
    "analyst": [
        f"Units per region.\n\n```python\n{STEP_1}\n```",
        f"The top region.\n\n```python\n{STEP_2}\n```",
        REPORT,
    ],
    "critic": [
        "APPROVE. A plain group-by.",
        "APPROVE. idxmax is right.",
        "APPROVE. It matches step 2.",
    ],
}
ANSWER = {"analyst": ["Six rows: no code needed."], "critic": ["APPROVE. Plain."]}
TASK = "Which region sold the most units?"
AGENTS = f'%%agents --data sales --model "scripted:{{replies}}"\n{TASK}'

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

# a cell's mark: shown by the extension's stylesheet from the cell's data-agentnb-mark
_MARKS_JS = """() => window.jupyterapp.shell.currentWidget.content.widgets.map(cell => {
  const shown = getComputedStyle(cell.node, '::after').content;
  const mark = cell.node.getAttribute('data-agentnb-mark');
  return mark && shown === JSON.stringify(mark) ? mark : null;
})"""
_PROMPTS_JS = """() => window.jupyterapp.shell.currentWidget.content.widgets.map(cell =>
  [...cell.node.querySelectorAll('.jp-OutputPrompt')].map(p => p.textContent.trim()).join('|'))"""
_EDITOR_JS = """(host) => {
  const keyword = [...host.querySelectorAll('.cm-line span')].find(s => s.textContent === 'for');
  const line = keyword ? keyword.closest('.cm-line') : null;
  return {
    focused: host.contains(document.activeElement),
    keyword: keyword ? getComputedStyle(keyword).color : null,
    text: line ? getComputedStyle(line).color : null,
    height: host.getBoundingClientRect().height,
    lines: host.querySelectorAll('.cm-line').length,
  };
}"""


def _shown(locator: Locator) -> bool:
    return locator.count() > 0 and locator.first.is_visible()


def _visible_stops(notebook: Notebook, cell: int) -> int:
    stops = notebook.cell(cell).locator("button.widget-button", has_text=re.compile(r"^\s*Stop"))
    return sum(stops.nth(i).is_visible() for i in range(stops.count()))


def _edit_step_1(notebook: Notebook) -> None:
    """Open the editor of step 1, type the edit as a user does, run it."""
    card = _pending(notebook, 2, "proposes step 1")
    assert _visible_stops(notebook, 2) == 1, "one Stop, the header's"
    approve = card.locator("button.agentnb-approve")
    notebook.click_button("Edit", within=card)
    host = notebook.wait_visible(card.locator(".agentnb-code-editor .cm-editor"), "the editor")
    assert not card.locator(".agentnb-edit-code textarea").is_visible()  # CodeMirror over it
    notebook.wait_for(approve.is_disabled, "Approve & run to be disabled while editing")
    before = len(notebook.cells())
    notebook.wait_for(
        lambda: bool(host.evaluate(_EDITOR_JS)["focused"]), "the editor to have the focus"
    )
    keyboard = notebook.page.keyboard
    keyboard.press("Control+End")
    keyboard.press("Enter")
    keyboard.type("# add the regions up")
    keyboard.press("Enter")
    keyboard.type("for region in units.index:")
    keyboard.press("Enter")  # the editor indents the block
    keyboard.press("Backspace")  # back to the margin ...
    keyboard.press("Tab")  # ... and Tab indents again: it does not move the focus
    keyboard.type("print(region)")
    area = card.locator(".agentnb-edit-code textarea")
    notebook.wait_for(lambda: area.input_value() == EDITED_1, "the edit to reach the textarea")
    looks = host.evaluate(_EDITOR_JS)
    assert looks["focused"], "Tab moved the focus out of the editor"
    assert looks["keyword"] != looks["text"], "no highlighting: 'for' looks like plain text"
    assert looks["lines"] == 5
    assert looks["height"] < 5 * 40, f"not sized to its five lines: {looks}"
    assert len(notebook.cells()) == before, "keys typed in the editor reached the notebook"
    notebook.screenshot("1-editor", show=card)
    notebook.click_button("Run edited", within=card)


def _insertions(notebook: Notebook, count: int) -> dict[int, dict[str, Any]] | None:
    found = _agent_cells(notebook.cells(), None)  # notes, steps and the report
    return found if len(found) == count else None


def _check_inserted(notebook: Notebook, cells: dict[int, dict[str, Any]]) -> None:
    """Below the %%agents cell: the note and the code of each step, then the report."""
    assert sorted(cells) == [3, 4, 5, 6, 7], notebook.describe()
    kinds = [(cells[i]["cell_type"], cells[i]["metadata"]["agentnb"].get("kind")) for i in cells]
    assert kinds == [
        ("markdown", "reason"),
        ("code", None),
        ("markdown", "reason"),
        ("code", None),
        ("markdown", "report"),
    ]
    run_id = cells[4]["metadata"]["agentnb"]["run_id"]
    keys = [cells[i]["metadata"]["agentnb"]["key"] for i in cells]
    assert keys == [f"{run_id}:{k}" for k in ("1:reason", "1", "2:reason", "2", "report")]
    assert _source(cells[3]).startswith("## Step 1\n\nUnits per region.")
    assert "The user edited this code" in _source(cells[3])
    assert "> **critic** approved: A plain group-by." in _source(cells[3])
    assert _source(cells[4]) == EDITED_1
    assert _source(cells[6]) == STEP_2
    assert _source(cells[7]) == f"## Final report\n\n{REPORT}"
    # no execution counts: not the cells', not their results' (the managed kernel's [2])
    for index in (4, 6):
        assert cells[index]["execution_count"] is None
        for output in cells[index]["outputs"]:
            assert output.get("execution_count") is None, output
    (result,) = [o for o in cells[6]["outputs"] if o["output_type"] == "execute_result"]
    assert result["data"]["text/plain"] == "'North'"


def _check_marks(notebook: Notebook, run_id: str) -> None:
    run = run_id[:6]

    def marked() -> list[str | None] | None:
        marks: list[str | None] = notebook.page.evaluate(_MARKS_JS)
        return marks if all(marks[3:8]) else None

    marks = notebook.wait_for(marked, "the marks on the inserted cells")
    assert marks[:3] == [None, None, None]
    assert marks[3:8] == [
        f"agentnb · step 1 · why · run {run}",
        f"agentnb · step 1 · analyst · edited by you · run {run}",
        f"agentnb · step 2 · why · run {run}",
        f"agentnb · step 2 · analyst · run {run}",
        f"agentnb · final report · run {run}",
    ]
    prompts = notebook.page.evaluate(_PROMPTS_JS)
    assert not re.search(r"\d", prompts[4] + prompts[6]), f"borrowed counts: {prompts}"
    cells = notebook.state()["cells"]
    assert cells[4]["prompt"] == "[ ]:"


def test_the_notebook_keeps_the_analysis_when_the_kernel_is_gone(notebook: Notebook) -> None:
    setup = _setup(notebook, replies=SCRIPT)
    notebook.create("keeps.ipynb", [LOAD, setup, AGENTS])
    notebook.open("keeps.ipynb")
    notebook.run_cell(0)
    notebook.run_cell(1)
    notebook.run_cell(2, wait=False)
    _edit_step_1(notebook)
    notebook.click_button("Approve & run", within=_pending(notebook, 2, "proposes step 2"))
    report = _pending(notebook, 2, "final report", button="agentnb-accept")
    notebook.click_button("Accept", within=report)
    _wait_phase(notebook, 2, "done")
    assert _visible_stops(notebook, 2) == 0, "a dead Stop after the end"

    cells = notebook.wait_for(lambda: _insertions(notebook, 5), "the five inserted cells")
    _check_inserted(notebook, cells)
    run_id = cells[4]["metadata"]["agentnb"]["run_id"]
    _check_marks(notebook, run_id)

    # each step that became a cell is one line in the widget, which jumps to the cell
    widget = _widget(notebook, 2)
    folded = widget.locator(".agentnb-card.agentnb-folded")
    notebook.wait_for(lambda: folded.count() == 2, "the two steps to fold")
    step_2 = folded.nth(1)
    assert not _shown(step_2.locator(".agentnb-code"))  # its code is in the cell, not here
    assert "step 2" in step_2.locator(".agentnb-fold-line").inner_text()
    notebook.screenshot("2-folded", show=widget)
    step_2.locator(".agentnb-jump").click()
    notebook.wait_for(lambda: notebook.state()["cells"][6]["active"], "step 2's cell selected")
    mode = "() => window.jupyterapp.shell.currentWidget.content.mode"
    notebook.wait_for(lambda: notebook.page.evaluate(mode) == "command", "command mode")
    # while the widget lives, the static copy of the chat beside it is hidden
    assert notebook.cell(2).locator(".agentnb-static").count() == 1
    assert _copies(notebook, 2) == ["widget"]
    notebook.screenshot("3-inserted-cells", show=notebook.cell(5))

    saved = notebook.save()
    assert saved["cells"][4]["metadata"]["agentnb"]["edited"] is True
    notebook.server.shutdown_kernels()  # the kernel is gone, and the widget's model with it
    notebook.reload()  # the notebook opened again, on a fresh kernel without agentnb

    chat = notebook.cell(2).locator(".agentnb-static")
    notebook.wait_visible(chat, "the static chat")
    assert _copies(notebook, 2) == ["static"]
    shown = notebook.output_shown(2)
    assert REPORT.replace("**", "") in shown  # the answer
    assert "It matches step 2." in shown  # its review
    assert "you accepted the report" in shown  # the user's decision
    assert "the final report was approved" in shown
    assert "Error displaying widget" not in shown
    assert f"agentnb: {TASK} (done)" not in shown  # the widget's stand-in line is hidden
    # a folded step opens on a click: its review and the user's edit
    step_1 = chat.locator("details.agentnb-fold-static").first
    assert "edited by you" in step_1.locator("summary").inner_text()
    step_1.locator("summary").click()
    notebook.wait_for(lambda: "A plain group-by." in notebook.output_shown(2), "step 1 to open")
    assert "you edited step 1" in notebook.output_shown(2)
    _check_marks(notebook, run_id)  # from the metadata: the marks survive save and reload
    assert _shown(notebook.cell(7).locator(".jp-RenderedMarkdown strong", has_text="North"))
    notebook.screenshot("4-reopened-without-the-kernel", show=notebook.cell(2))
    _check_marks(notebook, run_id)  # from the metadata: the marks survive save and reload
    assert _shown(notebook.cell(7).locator(".jp-RenderedMarkdown strong", has_text="North"))
    notebook.screenshot("4-reopened-without-the-kernel", show=notebook.cell(2))
    assert not notebook.console.errors


def _copies(notebook: Notebook, cell: int) -> list[str]:
    """Which copies of the chat the cell shows: the live widget, the static one."""
    shown = []
    if _shown(notebook.cell(cell).locator(".agentnb-live")):
        shown.append("widget")
    if _shown(notebook.cell(cell).locator(".agentnb-static")):
        shown.append("static")
    return shown


@pytest.mark.parametrize("jupyter_server", ["lab"], indirect=True)
def test_a_restarted_kernel_and_a_trusted_notebook_keep_the_chat(notebook: Notebook) -> None:
    # no step ran, so no untrusted cell was inserted: the notebook is signed when saved and
    # opens trusted, and JupyterLab tries the widget first, whose model the kernel lost
    setup = _setup(notebook, replies=ANSWER)
    agents = '%%agents --approve never --model "scripted:{replies}"\nHow many rows?'
    notebook.create("restart.ipynb", [LOAD, setup, agents])
    notebook.open("restart.ipynb")
    notebook.run_cell(0)
    notebook.run_cell(1)
    notebook.run_cell(2)
    _wait_phase(notebook, 2, "done")
    notebook.wait_for(lambda: _insertions(notebook, 1), "the report's cell")
    assert _copies(notebook, 2) == ["widget"]
    notebook.server.api("POST", f"/api/kernels/{notebook.kernel_id()}/restart")
    notebook.wait_for(lambda: notebook.state()["kernel"] == "idle", "the restarted kernel")
    # the page keeps the widget's last view (its model is no longer the kernel's)
    assert _copies(notebook, 2) == ["widget"]
    assert "Six rows: no code needed." in notebook.output_shown(2)
    notebook.save()
    notebook.reload()
    trusted = notebook.page.evaluate(
        "() => window.jupyterapp.shell.currentWidget.content.widgets[2].model.trusted"
    )
    assert trusted, "the notebook was expected to open trusted"
    notebook.wait_for(lambda: _copies(notebook, 2) == ["static"], "the static chat alone")
    shown = notebook.output_shown(2)
    assert "Six rows: no code needed." in shown
    assert "reviews the report" in shown
    assert "model not found" not in shown
    assert "Loading widget" not in shown
    notebook.screenshot("1-trusted-reopened", show=notebook.cell(2))
    # the widget manager's own console.error about the missing model is JupyterLab's
    errors = [e for e in notebook.console.errors if "widget model not found" not in e]
    assert errors == []


@pytest.mark.parametrize("jupyter_server", ["lab"], indirect=True)
def test_nbconvert_and_saving_show_the_chat(notebook: Notebook) -> None:
    from nbconvert import HTMLExporter

    setup = _setup(notebook, replies=ANSWER)
    agents = '%%agents --approve never --model "scripted:{replies}"\nHow many rows?'
    notebook.create("export.ipynb", [LOAD, setup, agents])
    notebook.open("export.ipynb")
    notebook.run_cell(0)
    notebook.run_cell(1)
    notebook.run_cell(2)
    _wait_phase(notebook, 2, "done")
    # Save: a short name beside the notebook, said in words one reads
    header = _widget(notebook, 2).locator(".agentnb-header")
    notebook.click_button("Save", within=header)
    note = _widget(notebook, 2).locator(".agentnb-note-saved")
    notebook.wait_visible(note, "the line that says where Save wrote")
    assert "Saved the analysis as export-analysis.ipynb" in note.inner_text()
    size = float(note.evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))
    assert size >= 13, f"the confirmation is {size}px"
    assert (notebook.root / "export-analysis.ipynb").is_file()
    notebook.screenshot("1-saved", show=header)
    # what nbviewer shows: nbconvert's HTML of the saved notebook
    notebook.save()
    html, _ = HTMLExporter().from_notebook_node(
        nbformat.read(notebook.root / "export.ipynb", as_version=4)
    )
    page = notebook.page.context.new_page()
    page.set_content(html)
    text = page.locator("body").inner_text()
    assert "Six rows: no code needed." in text
    assert "reviews the report" in text
    assert "model not found" not in text
    page.screenshot(path=str(notebook.screenshots / "2-nbconvert.png"))
    page.close()


@pytest.mark.parametrize("jupyter_server", ["lab"], indirect=True)
def test_a_failed_run_says_why_once_in_lines_that_fit(notebook: Notebook) -> None:
    from ..processes import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    agents = f"%%agents --approve never --model gpt-x --base-url {url}\nWhich region?"
    notebook.create("failed.ipynb", [LOAD, agents])
    notebook.open("failed.ipynb")
    notebook.run_cell(0)
    started = time.monotonic()
    notebook.run_cell(1, timeout=30)
    took = time.monotonic() - started
    assert took < 8, f"a refused connection to this machine took {took:.1f} s to fail"
    _wait_phase(notebook, 1, "failed")
    widget = _widget(notebook, 1)
    reason = widget.locator(".agentnb-header .agentnb-reason")
    assert reason.inner_text() == f"Cannot reach {url} (connection refused)."
    fits = reason.evaluate(
        "e => e.scrollWidth <= e.clientWidth + 1 && e.getBoundingClientRect().right"
        " <= e.closest('.agentnb-header').getBoundingClientRect().right"
    )
    assert fits, "the header's reason is clipped"
    shown = notebook.output_shown(1)
    assert shown.count("Is the server running?") == 1, shown  # the end of the chat, once
    assert "Check the base URL given (--base-url)." in shown
    assert "OPENAI_BASE_URL" not in shown  # --base-url was given
    assert "retrying" not in shown
    # the cell's error is one line that points to the widget, which says the rest
    assert "AgentsError: the analysis above failed (model_error): its last line says why" in shown
    assert shown.count("Cannot reach") == 2  # what failed in the header, and the whole story
    assert _visible_stops(notebook, 1) == 0
    notebook.screenshot("1-failed", show=widget)
    assert not notebook.console.errors

"""The harness itself, in JupyterLab and Notebook 7: widgets, key presses, save, reload."""

from __future__ import annotations

import os
import sys
import time

import pytest
from playwright.sync_api import expect

from .harness import SAVE_REFUSALS, Notebook, agentnb_extension, tail

BUTTON_CELL = """\
from pathlib import Path

import ipywidgets as widgets

button = widgets.Button(description="Click me")


def on_click(clicked):
    clicked.description = "Clicked"
    Path("clicked.txt").write_text("clicked from the browser")


button.on_click(on_click)
button"""

PRINT_CELL = """\
import sys

print("second cell ran in", sys.prefix)"""

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_button_click_save_and_reload(notebook: Notebook) -> None:
    notebook.create("smoke.ipynb", [BUTTON_CELL, PRINT_CELL])
    notebook.open("smoke.ipynb")

    notebook.run_cell(0)
    notebook.run_cell(1)
    assert f"second cell ran in {sys.prefix}" in notebook.output_text(1)  # this venv's kernel

    button = notebook.click_button("Click me", within=0)
    expect(button).to_have_count(0)  # its label is no longer "Click me"
    expect(notebook.cell(0).locator("button.widget-button")).to_have_text("Clicked")
    clicked = notebook.root / "clicked.txt"
    notebook.wait_for(clicked.exists, "the click handler to write clicked.txt")
    assert clicked.read_text() == "clicked from the browser"
    notebook.screenshot("clicked")

    saved = notebook.save()
    assert [cell["source"] for cell in saved["cells"]] == [BUTTON_CELL, PRINT_CELL]
    assert WIDGET_VIEW in saved["cells"][0]["outputs"][0]["data"]
    assert "second cell ran in" in saved["cells"][1]["outputs"][0]["text"]
    assert saved["metadata"]["kernelspec"]["name"] == "python3"

    notebook.reload()
    assert [cell["source"] for cell in notebook.cells()] == [BUTTON_CELL, PRINT_CELL]
    assert notebook.contents() == saved
    # The widget is alive in the same kernel: the fresh page renders its current state.
    expect(notebook.cell(0).locator("button.widget-button")).to_have_text("Clicked")
    assert "second cell ran in" in notebook.output_text(1)
    notebook.screenshot("reloaded")
    assert not notebook.console.errors


AWAIT_CELL = """\
import asyncio

import ipywidgets as widgets
from IPython.display import display

approved = asyncio.Event()
approve = widgets.Button(description="Approve")
approve.on_click(lambda _: approved.set())
display(approve)
await approved.wait()
print("approved")"""


def test_await_cell_runs_until_the_click(notebook: Notebook) -> None:
    """A cell awaiting an Event that a button sets keeps running, and blocks the cells queued
    after it, until the click; then it completes. (ipykernel >= 7.4)"""
    notebook.create("await.ipynb", [AWAIT_CELL, 'print("next cell")'])
    notebook.open("await.ipynb")

    notebook.run_cell(0, wait=False)
    notebook.run_cell(1, wait=False)  # queued behind the waiting cell
    expect(notebook.cell(0).locator("button.widget-button")).to_have_text("Approve")
    notebook.page.wait_for_timeout(1500)
    assert notebook.is_running(0), notebook.describe()
    assert notebook.is_running(1), notebook.describe()
    assert "approved" not in notebook.output_text(0)
    # Not asserted: the kernel status the page shows. Comm messages handled while the cell
    # waits end with an "idle" status, so it reads idle although the cell is still running.
    notebook.screenshot("waiting")

    clicked_at = time.monotonic()
    notebook.click_button("Approve", within=0)
    notebook.wait_idle()
    took = time.monotonic() - clicked_at
    assert "approved" in notebook.output_text(0)
    assert "next cell" in notebook.output_text(1)
    first, second = (cell["execution_count"] for cell in notebook.cells())
    assert second == first + 1
    assert took < 10, f"the cell took {took:.1f} s to finish after the click"
    notebook.screenshot("approved")
    assert not notebook.console.errors


TEXT_CELL = """\
import ipywidgets as widgets

name = widgets.Text(description="Name")
name"""


def test_fill_a_text_widget_and_interrupt_a_cell(notebook: Notebook) -> None:
    notebook.create(
        "inputs.ipynb",
        [TEXT_CELL, 'print("name is", name.value)', "import time\n\ntime.sleep(60)"],
    )
    notebook.open("inputs.ipynb")
    notebook.run_cell(0)
    notebook.fill(".widget-text input", "agentnb", within=0)
    notebook.run_cell(1)
    assert "name is agentnb" in notebook.output_text(1)

    notebook.run_cell(2, wait=False)
    notebook.page.wait_for_timeout(500)
    assert notebook.is_running(2)
    notebook.interrupt_kernel()
    notebook.wait_idle(timeout=15)
    assert "KeyboardInterrupt" in notebook.output_text(2)
    assert not notebook.console.errors


def test_the_page_loads_the_agentnb_extension_built_from_this_checkout(notebook: Notebook) -> None:
    built = agentnb_extension()
    assert built is not None, "agentnb is not imported from a source tree"
    (entry,) = [p.name for p in (built / "static").glob("remoteEntry.*.js")]
    notebook.create("empty.ipynb", ["1 + 1"])
    notebook.open("empty.ipynb")
    extensions = notebook.page.evaluate(
        "() => JSON.parse(document.getElementById('jupyter-config-data').textContent)"
        ".federated_extensions"
    )
    (ours,) = [e for e in extensions if e["name"] == "agentnb-cells"]
    assert ours["load"] == f"static/{entry}"


@pytest.mark.parametrize("jupyter_server", ["lab"], indirect=True)
def test_a_save_refused_twice_fails_with_what_is_on_disk(notebook: Notebook) -> None:
    path = notebook.create("refused.ipynb", ["1 + 1"])
    notebook.open("refused.ipynb")
    notebook.run_cell(0)
    # a folder where the notebook was, older than the page's copy: each save is refused
    path.unlink()
    path.mkdir()
    os.utime(path, (0, 0))
    refusals = len(SAVE_REFUSALS)
    with pytest.raises(AssertionError, match="refused twice") as failed:
        notebook.save()
    assert "refused.ipynb (dir)" in str(failed.value)
    assert len(SAVE_REFUSALS) == refusals + 1  # the first, pressed again
    assert "Save Error" in SAVE_REFUSALS.pop()


def test_a_failure_shows_the_servers_log_with_a_polls_lines_folded() -> None:
    poll = [
        f"[W 13:32:{i:02d}.380 ServerApp] 404 GET /api/contents/a.ipynb?content=1"
        for i in range(50)
    ]
    log = "\n".join(["[I 13:32:00.001 ServerApp] Saving file at /a.ipynb", *poll, "last"])
    folded = tail(log, limit=500)
    assert folded.splitlines() == [
        "[I 13:32:00.001 ServerApp] Saving file at /a.ipynb",
        poll[0],
        "  (and 49 more like it)",
        "last",
    ]

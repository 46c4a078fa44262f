"""Outputs of model-written code are untrusted: a hostile analyst's step that displays
script, event handlers, a scripted SVG and a remote image leaves none of it in the
notebooks agentnb writes (``%agents save``, ``--out``, ``agentnb replay``), no cell of
them is trusted and none is signed, and a note says what was removed.

The run is real: a ``%%agents`` cell in a notebook's own kernel, the hostile step run
in the managed kernel, the replay by the ``agentnb`` command in a process of its own.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from pathlib import Path
from typing import Any

import nbformat
from nbformat.sign import NotebookNotary

from ..conftest import Cell, script, step, text, value

HOSTILE = """\
from IPython.display import HTML, SVG, Javascript, display

display(Javascript("window.__pwned = 1"))
display(HTML('<b>totals</b><script>window.__pwned = 2</script>'
             '<img src=x onerror="window.__pwned = 3">'))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg"><script>window.__pwned = 4</script>'
            '<rect width="9" height="9" onload="window.__pwned = 5"/></svg>'))
display(HTML('<img src="http://attacker.example/beacon.png?leak=1">'))
print("step ran")"""

# what a notebook may show of untrusted code's outputs (agentnb.ui.untrusted)
ALLOWED = {
    "text/plain",
    "text/html",
    "text/latex",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/svg+xml",
    "application/json",
}
FORBIDDEN = ("__pwned", "<script", "onerror", "onload", "attacker.example", "javascript:")


def check_untrusted(path: Path) -> None:
    """The notebook at ``path`` runs nothing when opened: no cell trusted, not signed,
    no script in any output, and the note that says what was removed."""
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert "signature" not in notebook.metadata
    assert not any("trusted" in c.metadata for c in notebook.cells), path
    # as Jupyter judges it: untrusted rich outputs, so the notebook opens untrusted and
    # is not signed when saved as it is
    assert NotebookNotary(db_file=":memory:").check_cells(copy.deepcopy(notebook)) is False

    (hostile,) = [c for c in notebook.cells if c.cell_type == "code" and "__pwned" in c.source]
    outputs: list[dict[str, Any]] = hostile.outputs
    mimes = {mime for o in outputs for mime in o.get("data", {})}
    assert mimes <= ALLOWED, mimes - ALLOWED
    shown = json.dumps([o for c in notebook.cells for o in c.get("outputs", [])]).lower()
    for bad in FORBIDDEN:
        assert bad not in shown, (bad, path)
    streams = "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")
    assert "step ran" in streams
    assert "agentnb removed application/javascript from this output" in streams
    assert "agentnb removed image/svg+xml" in streams
    assert "script and remote content from model-written code are never run or loaded" in streams
    # what was safe to show is still there
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert html == ["<b>totals</b>"], html
    # the model's own words (rationale, report) become text, its code stays as written
    prose = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    assert "&lt;img src=x onerror" in prose
    assert "<img" not in prose
    assert "\\![beacon](http://attacker.example/b.png)" in prose
    assert "`north < south`" in prose


async def test_saved_and_replayed_notebooks_carry_no_script_and_no_trust(
    cell: Cell, tmp_path: Path
) -> None:
    replies = script(
        tmp_path,
        [
            step(HOSTILE, 'Totals, shown nicely. <img src=x onerror="window.__pwned = 6">'),
            "North sold most: `north < south` is False. ![beacon](http://attacker.example/b.png)",
        ],
        ["APPROVE", "APPROVE"],
    )
    out = tmp_path / "out.ipynb"
    ran = await cell(
        f'%%agents --data sales --approve never --model "scripted:{replies}" --out {out}\n'
        "Which region sold most?"
    )
    assert ran.status == "ok", ran.to_model_text()
    statuses, where = value(
        await cell(
            "from agentnb.jupyter import magics\n"
            "r = magics._session.current.result\n"
            "[s.status for s in r.steps], str(r.transcript_path)"
        )
    )
    assert statuses == ["ok"]
    transcript = tmp_path / where  # relative to the notebook's directory, or absolute
    check_untrusted(out)

    saved = await cell(f"%agents save {tmp_path / 'saved.ipynb'}")
    assert "saved" in text(saved), text(saved)
    check_untrusted(tmp_path / "saved.ipynb")

    replayed = tmp_path / "replayed.ipynb"
    replay = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "agentnb", "replay", str(transcript), "--out", str(replayed)),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, errors = await asyncio.wait_for(replay.communicate(), 120)
    assert replay.returncode == 0, errors.decode()
    check_untrusted(replayed)

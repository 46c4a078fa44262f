"""The analysis notebook: built from a run's events or its transcript, valid nbformat,
saved atomically, and re-runnable from a fresh kernel with nbclient."""

from __future__ import annotations

import copy
import errno
import os
import re
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest

import agentnb
from agentnb.chat.approval import ApprovalRequest, CallbackApprover, Decision
from agentnb.chat.events import ExecutionFinished, RunStarted
from agentnb.chat.group import Guards
from agentnb.errors import ConfigError
from agentnb.jupyter.notebook import build_notebook, notebook_from_transcript, save_notebook
from agentnb.models.scripted import ScriptedModel

from ..conftest import ChatRunner, Run, rerun, step

TASK = "Which region brings in the most revenue?"
CSV = "region,units,unit_price\nnorth,3,2.5\nsouth,5,1.5\nnorth,2,2.5\n"
SCRIPT = {
    "analyst": [
        step(
            "nb_sales['revenue'] = nb_sales['units'] * nb_sales['price']",
            "Revenue per row: units times price.",
        ),
        step(
            "nb_sales['revenue'] = nb_sales['units'] * nb_sales['unit_price']\n"
            "print(len(nb_sales), 'rows')\n"
            "nb_sales.groupby('region', as_index=False)['revenue'].sum()",
            "The price column is called unit_price.",
        ),
        step(
            "import matplotlib.pyplot as plt\n\n"
            "nb_sales.groupby('region')['revenue'].sum().plot.bar()\n"
            "plt.show()",
            "A bar chart of revenue by region.",
        ),
        "## Answer\n\nNorth brings in the most revenue: 12.5 against 7.5.",
    ],
    "critic": [
        "APPROVE",
        "APPROVE, unit_price is the right column.",
        "APPROVE",
        "APPROVE, it matches the table.",
    ],
}


@pytest.fixture
async def analysis(chat: ChatRunner, tmp_path: Path) -> Run:
    """A run on a CSV file: a step that fails, its fix, a plot, an approved report."""
    csv = tmp_path / "nb_sales.csv"
    csv.write_text(CSV)
    run = await chat(SCRIPT, task=TASK, data=[str(csv)], approve="never")
    assert run.result.ok, run.result.stop_reason
    assert [s.status for s in run.result.steps] == ["error", "ok", "ok"]
    return run


def code_cells(nb: nbformat.NotebookNode) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code"]


def output_kinds(cell: Any) -> list[tuple[str, ...]]:
    """Each output's type with its stream name or its set of mime types."""
    kinds: list[tuple[str, ...]] = []
    for out in cell.outputs:
        kind: tuple[str, ...] = (out.output_type, out.get("name", ""), *sorted(out.get("data", {})))
        if kinds and kind[0] == "stream" and kinds[-1] == kind:
            continue  # consecutive writes to one stream are one output
        kinds.append(kind)
    return kinds


# --- layout -------------------------------------------------------------------------


async def test_the_cells_tell_the_analysis_in_order(analysis: Run) -> None:
    nb = build_notebook(analysis.events)
    layout = [(c.cell_type, c.source.splitlines()[0] if c.source else "") for c in nb.cells]
    assert layout == [
        ("markdown", f"# {TASK}"),
        ("markdown", "## Data"),
        ("code", "import pandas as pd"),
        ("markdown", layout[3][1]),  # the failed step, one line
        ("markdown", "## Step 2"),
        ("code", "nb_sales['revenue'] = nb_sales['units'] * nb_sales['unit_price']"),
        ("markdown", "## Step 3"),
        ("code", "import matplotlib.pyplot as plt"),
        ("markdown", "## Final report"),
    ]
    title, data, setup, failed, why2, code2, why3, code3, report = nb.cells
    assert "analyst (scripted)" in title.source
    assert "`nb_sales` (DataFrame, 3 rows x 3 columns)" in data.source
    assert "nb_sales = pd.read_csv(" in setup.source
    assert setup.source == analysis.of(ExecutionFinished)[0].execution.code
    # the failure: one line with the error, no traceback, and no broken code cell
    assert len(failed.source.splitlines()) == 1
    assert "Step 1 (analyst) failed with `KeyError: 'price'`" in failed.source
    assert "went on with step 2" in failed.source
    assert not any("['price']" in c.source for c in code_cells(nb))
    assert not any(o.output_type == "error" for c in code_cells(nb) for o in c.outputs)
    # the rationale without the code, the code that ran, its real outputs
    # each step's note above its code: why, and who approved it (as the live notebook has it)
    assert why2.source == (
        "## Step 2\n\nThe price column is called unit_price.\n\n"
        "> **critic** approved: unit_price is the right column."
    )
    run_id = analysis.result.run_id
    assert why2.metadata["agentnb"] == {"run_id": run_id, "step": 2, "kind": "reason"}
    assert report.metadata["agentnb"] == {"run_id": run_id, "kind": "report"}
    assert code2.source == analysis.result.steps[1].code
    assert output_kinds(code2) == [
        ("stream", "stdout"),
        ("execute_result", "", "text/html", "text/plain"),
    ]
    assert code2.outputs[0].text == "3 rows\n"
    assert "A bar chart" in why3.source
    assert why3.source.endswith("> **critic** approved.")
    assert any("image/png" in o.get("data", {}) for o in code3.outputs)
    assert report.source == "## Final report\n\n" + SCRIPT["analyst"][-1]
    # numbered as if freshly run, execute results included
    assert [c.execution_count for c in code_cells(nb)] == [1, 2, 3]
    assert code2.outputs[1].execution_count == 2


async def test_events_and_transcript_give_the_same_valid_notebook(analysis: Run) -> None:
    live = build_notebook(analysis.events)
    nbformat.validate(live)
    assert notebook_from_transcript(analysis.transcript) == live
    assert build_notebook(analysis.events) == live  # deterministic, cell ids included


async def test_provenance_is_in_the_metadata(analysis: Run) -> None:
    nb = build_notebook(analysis.events)
    result = analysis.result
    assert [c.metadata["agentnb"] for c in code_cells(nb)] == [
        {"run_id": result.run_id, "step": step, "author": author, "edited": False}
        for step, author in ((0, "agentnb"), (2, "analyst"), (3, "analyst"))
    ]
    meta = nb.metadata
    assert meta.kernelspec.name == "python3"
    assert meta.language_info.name == "python"
    assert meta.agentnb == {
        "version": agentnb.__version__,
        "run_id": result.run_id,
        "task": TASK,
        "data": ["nb_sales"],
        "models": analysis.of(RunStarted)[0].models,
        "usage": {
            agent: {
                "prompt_tokens": u.prompt_tokens,
                "completion_tokens": u.completion_tokens,
                "calls": u.calls,
                "estimated": u.estimated,
            }
            for agent, u in result.usage.items()
        },
        "cost": result.cost,
        "stop_reason": {"kind": "approved", "message": result.stop_reason.message},
    }
    assert set(meta.agentnb["usage"]) == {"analyst", "critic"}
    assert meta.agentnb["usage"]["analyst"]["calls"] == 4


async def test_a_run_still_going_gives_the_notebook_so_far(analysis: Run) -> None:
    events = analysis.events
    cut = next(i for i, e in enumerate(events) if isinstance(e, ExecutionFinished) and e.step == 2)
    nb = build_notebook(events[: cut + 1])
    nbformat.validate(nb)
    assert [c.metadata["agentnb"]["step"] for c in code_cells(nb)] == [0, 2]
    assert "had not finished" in nb.cells[-1].source
    assert nb.metadata.agentnb["stop_reason"] is None
    assert nb.metadata.agentnb["usage"]["analyst"]["calls"] == 2


# --- other runs ------------------------------------------------------------------------


async def test_a_report_that_was_not_approved_says_so_and_why(chat: ChatRunner) -> None:
    run = await chat(
        {"analyst": [step("print(6 * 7)"), "It is 42."], "critic": ["APPROVE", "REVISE: why?"]},
        guards=Guards(revisions_per_step=1),
    )
    assert run.result.stop_reason.kind == "loop_guard"
    nb = build_notebook(run.events)
    report, closing = nb.cells[-2:]
    assert report.source.startswith("## Final report (not approved)")
    assert report.source.endswith("It is 42.")
    assert "`loop_guard`" in closing.source
    assert run.result.stop_reason.message in closing.source
    assert nb.metadata.agentnb["stop_reason"]["kind"] == "loop_guard"


async def test_code_the_user_edited_is_the_code_in_the_notebook(chat: ChatRunner) -> None:
    def decide(request: ApprovalRequest) -> Decision:
        return Decision.edit("print('edited')") if request.kind == "step" else Decision.approve()

    run = await chat(
        {"analyst": [step("print('proposed')", "Say hello."), "Done."], "critic": ["APPROVE"] * 2},
        approve="each",
        approver=CallbackApprover(decide),
    )
    assert run.result.ok
    nb = build_notebook(run.events)
    (cell,) = code_cells(nb)
    assert cell.source == "print('edited')"
    assert cell.outputs[0].text == "edited\n"
    assert cell.metadata.agentnb["edited"] is True
    assert "The user edited this code" in nb.cells[nb.cells.index(cell) - 1].source


async def test_pushed_data_needs_a_source_to_run_again(chat: ChatRunner, tmp_path: Path) -> None:
    run = await chat(
        {"analyst": [step("print(nb_scores['score'].sum())"), "The sum is 6."], "critic": []},
        data={"nb_scores": pd.DataFrame({"score": [1, 2, 3]})},
        roles=[agentnb.ANALYST],
    )
    assert run.result.ok, run.result.stop_reason
    bare = build_notebook(run.events)
    assert [c.metadata.agentnb["step"] for c in code_cells(bare)] == [1]
    note = bare.cells[1].source
    assert note.startswith("## Data")
    assert "`nb_scores` (DataFrame, 3 rows x 1 columns)" in note
    assert "data_sources=" in note

    nb = build_notebook(
        run.events, data_sources={"nb_scores": "pd.DataFrame({'score': [1, 2, 3]})"}
    )
    source = code_cells(nb)[0]
    assert source.source == "import pandas as pd\n\nnb_scores = pd.DataFrame({'score': [1, 2, 3]})"
    assert source.metadata.agentnb == {
        "run_id": run.result.run_id,
        "step": 0,
        "author": "user",
        "edited": False,
    }
    again = await rerun(save_notebook(nb, tmp_path / "scores.ipynb"))
    assert code_cells(again)[-1].outputs[0].text == "6\n"

    with pytest.raises(ConfigError, match=r"data_sources\['nb_scores'\] is not valid Python"):
        build_notebook(run.events, data_sources={"nb_scores": "pd.DataFrame((("})


# --- saving ----------------------------------------------------------------------------


async def test_save_writes_a_valid_notebook(analysis: Run, tmp_path: Path) -> None:
    nb = build_notebook(analysis.events)
    path = save_notebook(nb, tmp_path / "out" / "analysis.ipynb")
    assert path == tmp_path / "out" / "analysis.ipynb"
    assert nbformat.read(path, as_version=4) == nb
    assert sorted(p.name for p in path.parent.iterdir()) == ["analysis.ipynb"]


@pytest.mark.parametrize("failing", ["replace", "fsync"])
async def test_a_failed_save_leaves_the_old_file_whole(
    analysis: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    path = folder / "analysis.ipynb"
    path.write_text("the old notebook")

    def broken(*_: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, failing, broken)
    with pytest.raises(ConfigError, match=r"cannot write the notebook .*analysis\.ipynb: No space"):
        save_notebook(build_notebook(analysis.events), path)
    monkeypatch.undo()
    assert path.read_text() == "the old notebook"
    assert [p.name for p in folder.iterdir()] == ["analysis.ipynb"]  # no temporary file


async def test_an_unwritable_path_is_a_config_error(analysis: Run, tmp_path: Path) -> None:
    nb = build_notebook(analysis.events)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=re.escape(f"Not a directory: {blocker}")):
        save_notebook(nb, blocker / "analysis.ipynb")
    with pytest.raises(ConfigError, match="Is a directory"):
        save_notebook(nb, tmp_path)

    broken = copy.deepcopy(nb)
    broken.cells[0]["cell_type"] = "poem"
    target = tmp_path / "invalid.ipynb"
    with pytest.raises(ConfigError, match="not valid nbformat"):
        save_notebook(broken, target)
    assert not target.exists()


# --- Restart & Run All -------------------------------------------------------------------


async def test_the_saved_notebook_runs_again_in_a_fresh_kernel(
    analysis: Run, tmp_path: Path
) -> None:
    saved = build_notebook(analysis.events)
    path = save_notebook(saved, tmp_path / "analysis.ipynb")
    again = await rerun(path)  # raises CellExecutionError on any error
    assert len(code_cells(again)) == len(code_cells(saved)) == 3
    for before, after in zip(code_cells(saved), code_cells(again), strict=True):
        assert output_kinds(after) == output_kinds(before), before.source
    assert code_cells(again)[1].outputs[0].text == "3 rows\n"
    assert output_kinds(code_cells(again)[2])[-1][0] == "display_data"
    assert "image/png" in output_kinds(code_cells(again)[2])[-1]


async def test_out_writes_the_notebook_and_a_bad_path_fails_before_any_call(
    chat: ChatRunner, tmp_path: Path
) -> None:
    target = tmp_path / "analysis.ipynb"
    run = await chat(
        {"analyst": [step("print('out test')"), "Printed."], "critic": ["APPROVE"] * 2},
        out=target,
    )
    assert run.result.notebook == target
    saved = nbformat.read(target, as_version=4)
    assert any("print('out test')" in c.source for c in saved.cells if c.cell_type == "code")

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    model = ScriptedModel({"analyst": ["never asked"]})
    for bad in (tmp_path / "notes.txt", blocker / "x.ipynb"):
        with pytest.raises(ConfigError, match="--out"):
            await chat(model=model, out=bad)
    assert model.prompts == []

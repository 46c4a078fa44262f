"""``%load_ext agentnb`` in a real ipykernel, as a notebook's own kernel runs it.

The user's kernel is a real ipykernel process; its cells load the extension and
run ``%%agents`` cells exactly as a frontend would send them (so the input
transformer, the async cell and the nested managed kernel are all real). Without
a frontend nobody renders the widget, which is also how nbclient and papermill
run a notebook.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from agentnb.models.server import ScriptedServer

from ..conftest import Cell, outcome, rerun, script, step, text, usage_error, value

STEP = (
    "Totals per region.\n\n"
    '```python\ntotals = sales.groupby("region")["revenue"].sum()\ntotals\n```'
)
REPORT = "**North** sold most: 30 against 12."
SHOW = "h = display('0 %', display_id=True)"
UPDATE = "h.update('100 %')"


async def test_an_autonomous_cell_runs_to_its_end_before_the_next_cell(
    cell: Cell, tmp_path: Path
) -> None:
    replies = script(tmp_path, [STEP, REPORT], ["APPROVE", "APPROVE"])
    ran = await cell(
        f"%%agents --data sales --approve never --model scripted:{replies}\nWhich region sold most?"
    )
    assert ran.status == "ok", ran.to_model_text()
    # the chat widget, then the chat as it ended, and nothing printed besides
    widget, chat = ran.outputs
    assert "application/vnd.jupyter.widget-view+json" in widget["data"]
    assert widget["data"]["text/plain"] == "agentnb: Which region sold most? (done)"
    assert widget["data"]["text/html"] == (
        '<div class="agentnb-fallback">agentnb: Which region sold most? (done)</div>'
    )
    assert "text/markdown" not in widget["data"]  # the chat below has the report
    # where the widget cannot render (its kernel gone, papermill reports, nbviewer, VS Code
    # without it): the whole chat as sanitised HTML, and the outcome and report as text
    assert chat["output_type"] == "display_data"
    run_id = value(await cell("r = %agents result\nr.run_id"))
    assert chat["metadata"] == {"agentnb": {"run_id": run_id, "view": "static"}}
    html = chat["data"]["text/html"]
    assert html.startswith(f'<div class="agentnb agentnb-static agentnb-static-{run_id}">')
    assert "<strong>North</strong> sold most: 30 against 12." in html  # the report
    assert "reviews step 1" in html  # the critic's review
    assert "the final report was approved" in html
    assert "<script" not in html.lower()
    plain = chat["data"]["text/plain"]
    assert plain.startswith("agentnb: Which region sold most?\n\napproved: ")
    assert plain.endswith(REPORT)
    # the cell stayed running: the next cell sees the finished run
    result = value(
        await cell(
            "r = %agents result\n(r.stop_reason.kind, r.final_report, [s.status for s in r.steps])"
        )
    )
    assert result == ("approved", REPORT, ["ok"])
    status = await cell("%agents status")
    assert "phase: done" in text(status)
    assert "stop reason: approved" in text(status)


async def test_a_failed_run_leaves_its_chat_in_the_cell_too(cell: Cell, tmp_path: Path) -> None:
    ran = await cell(
        "%%agents --approve never --model gpt-x --base-url http://127.0.0.1:9/v1 --retries 0\n"
        "Which region?"
    )
    assert ran.status == "error"
    widget, chat, error = ran.outputs
    assert "application/vnd.jupyter.widget-view+json" in widget["data"]
    assert chat["metadata"]["agentnb"]["view"] == "static"
    assert "connection refused" in chat["data"]["text/html"]
    assert "agentnb-end-failed" in chat["data"]["text/html"]
    assert error["ename"] == "AgentsError"  # headless: no widget shows, so the whole message
    assert "connection refused" in error["evalue"]


async def test_the_first_agents_cell_finds_its_modules_imported(cell: Cell) -> None:
    # %load_ext agentnb imports the widget and the model client in the background, while
    # the user writes the first %%agents cell: its widget shows at once
    warmed = await cell(
        "import sys\n"
        "from agentnb.jupyter import magics\n"
        "magics.warmed.wait(60), [m for m in magics.WARM_MODULES if m not in sys.modules]"
    )
    assert value(warmed) == (True, [])


async def test_a_follow_up_cell_continues_in_the_same_kernel_and_knows_the_past(
    cell: Cell, tmp_path: Path
) -> None:
    with ScriptedServer(
        [
            STEP,
            "APPROVE",
            REPORT,
            "APPROVE",
            "Share of the total.\n\n```python\n(totals / totals.sum()).round(2)\n```",
            "APPROVE",
            "North has 0.71 of the revenue.",
            "APPROVE",
        ]
    ) as server:
        flags = f"--approve never --model scripted --base-url {server.base_url}"
        first = await cell(f"%%agents --data sales {flags}\nWhich region sold most?")
        assert first.status == "ok", first.to_model_text()
        second = await cell(f"%%agents {flags}\nWhat share of the revenue is that?")
        assert second.status == "ok", second.to_model_text()
        # the follow-up's analyst was told what the first analysis found ...
        follow_up = json.dumps(server.requests[4]["messages"])
        assert "Which region sold most?" in follow_up
        assert "North** sold most" in follow_up
    # ... and its step used `totals`, which the first analysis left in the kernel
    steps = value(
        await cell(
            "r = %agents result\n"
            "[(s.status, s.outputs[0]['data']['text/plain'].split()[:5]) for s in r.steps]"
        )
    )
    assert steps == [("ok", ["region", "North", "0.71", "South", "0.29"])]
    # --new starts over: a fresh kernel where `totals` does not exist
    with ScriptedServer(
        ["Check.\n\n```python\n'totals' in dir()\n```", "APPROVE", "No totals.", "APPROVE"]
    ) as server:
        fresh = await cell(
            f"%%agents --new --approve never --model scripted --base-url {server.base_url}\n"
            "Is anything left?"
        )
        assert fresh.status == "ok", fresh.to_model_text()
        assert "Earlier in this session" not in json.dumps(server.requests[0]["messages"])
    left = value(await cell("r = %agents result\nr.steps[0].outputs[0]['data']['text/plain']"))
    assert left == "False"


@pytest.mark.parametrize(
    ("line", "body", "message"),
    [
        ("--max-turns many", "Q?", "--max-turns: expected a whole number, not 'many'"),
        ("--approve sometimes", "Q?", "invalid choice: 'sometimes'"),
        ("--frobnicate", "Q?", "unrecognized arguments: --frobnicate"),
        (
            "--data sale",
            "Q?",
            "--data sale: no variable of that name in your namespace (did you mean sales?)",
        ),
        ("--data sales", "   ", "the cell has no task"),
        ('--model "unclosed', "Q?", "check the quotes"),
        ("--out report.txt", "Q?", "must end in .ipynb"),
    ],
)
async def test_bad_flags_give_one_line_and_start_nothing(
    cell: Cell, line: str, body: str, message: str
) -> None:
    ran = await cell(f"%%agents {line}\n{body}")
    assert (
        usage_error(ran) == message if message.startswith("--data") else message in usage_error(ran)
    )
    assert not [o for o in ran.outputs if o["output_type"] == "display_data"]  # no widget
    # nothing started: no analysis has a result
    assert usage_error(await cell("%agents result")) == (
        "no analysis in this session yet: a %%agents cell runs one"
    )


async def test_a_missing_key_is_a_usage_error(cell: Cell) -> None:
    ran = await cell("%%agents --model gpt-4o-mini --approve never\nWhich region sold most?")
    assert "set the OPENAI_API_KEY environment variable" in usage_error(ran)
    assert not [o for o in ran.outputs if o["output_type"] == "display_data"]
    ran = await cell("%%agents --approve never\nWhich region sold most?")
    assert "no model given: pass --model NAME" in usage_error(ran)


async def test_headless_approval_fails_fast_with_a_clear_message(
    cell: Cell, tmp_path: Path
) -> None:
    replies = script(tmp_path, [STEP, REPORT], ["APPROVE", "APPROVE"])
    await cell("from agentnb.jupyter import watch\nwatch.HEADLESS_GRACE = 0.5")
    ran = await cell(f"%%agents --data sales --model scripted:{replies}\nWhich region sold most?")
    assert ran.status == "error"
    error = next(o for o in ran.outputs if o["output_type"] == "error")
    assert error["ename"] == "AgentsError"
    assert "nobody can approve step 1" in error["evalue"]
    assert "--approve never" in error["evalue"]
    assert len(error["traceback"]) == 1  # one line, not a traceback


async def test_configuration_then_flags(cell: Cell, tmp_path: Path) -> None:
    replies = script(tmp_path, [STEP, REPORT], ["APPROVE", "APPROVE"])
    ran = await cell(
        f"%config Agents.model = 'scripted:{replies}'\n"
        "%config Agents.approve = 'never'\n"
        "%config Agents.max_turns = 7\n"
        "import os\nos.environ['AGENTNB_MAX_TURNS'] = '3'\nos.environ['AGENTNB_STEP_TIMEOUT'] = '9'"
    )
    assert ran.status == "ok", ran.to_model_text()
    ran = await cell("%%agents --data sales --step-timeout 11\nWhich region sold most?")
    assert ran.status == "ok", ran.to_model_text()
    status = text(await cell("%agents status"))
    assert "approve='never' (%config Agents.approve)" in status
    assert "max_turns=7 (%config Agents.max_turns)" in status
    assert "step_timeout=11.0 (flag)" in status


async def test_a_later_runs_step_updates_what_an_earlier_runs_step_shows(
    cell: Cell, tmp_path: Path
) -> None:
    shows = script(tmp_path, [step(SHOW), REPORT], ["APPROVE", "APPROVE"], name="shows.json")
    updates = script(tmp_path, [step(UPDATE), REPORT], ["APPROVE", "APPROVE"], name="up.json")
    for replies in (shows, updates):
        ran = await cell(f"%%agents --data sales --approve never --model scripted:{replies}\nQ?")
        assert ran.status == "ok", ran.to_model_text()
    # the saved analysis has run 1's step as run 2 left it, as a notebook's cell would
    assert "saved" in text(await cell("%agents save both.ipynb"))
    notebook = json.loads((tmp_path / "both.ipynb").read_text())
    (shown,) = [c for c in notebook["cells"] if "".join(c["source"]) == SHOW]
    assert ["".join(o["data"]["text/plain"]) for o in shown["outputs"]] == ["'100 %'"]
    (updated,) = [c for c in notebook["cells"] if "".join(c["source"]) == UPDATE]
    assert updated["outputs"] == []


async def test_pull_save_reset_and_unload(cell: Cell, tmp_path: Path) -> None:
    replies = script(tmp_path, [STEP, REPORT], ["APPROVE", "APPROVE"])
    ran = await cell(f"%%agents --data sales --approve never --model scripted:{replies}\nQ?")
    assert ran.status == "ok", ran.to_model_text()
    pulled = await cell("%agents pull totals\ntotals.to_dict()")
    assert value(pulled) == {"North": 30, "South": 12}
    saved = await cell("%agents save analysis.ipynb")
    assert "saved" in text(saved)
    notebook = json.loads((tmp_path / "analysis.ipynb").read_text())
    code = [c["source"] for c in notebook["cells"] if c["cell_type"] == "code"]
    # the user's own loading code recreates `sales`, then the step
    assert "".join(code[0]) == (
        "import pandas as pd\n"
        "sales = pd.DataFrame({'region': ['North', 'South', 'North'], 'revenue': [10, 12, 20]})"
    )
    assert "totals = sales.groupby" in "".join(code[1])
    assert "nothing_here" in usage_error(await cell("%agents pull nothing_here"))
    assert "not a subcommand" in usage_error(await cell("%agents frob"))

    pid = value(await cell("from agentnb.jupyter import magics\nmagics._session.kernel.pid"))
    assert isinstance(pid, int)
    await cell("%agents reset")
    assert value(await cell("len(magics._session.analyses)")) == 0
    again = await cell("%load_ext agentnb")  # loading twice is harmless
    assert again.status == "ok"
    await cell("%unload_ext agentnb")
    gone = await cell("%%agents --approve never\nQ?")
    assert gone.status == "error"  # the cell is plain Python again: not valid syntax
    assert value(await cell("magics._session is None")) is True


async def test_a_saved_analysis_runs_again_from_another_folder(cell: Cell, tmp_path: Path) -> None:
    await cell("import numpy as np\nimport pandas as pd\nrng = np.random.default_rng(1)")
    await cell("frame = pd.DataFrame({'x': rng.normal(size=4)})")
    await cell("changed = pd.DataFrame({'y': [1, 2]})\nchanged['z'] = changed.y * 2")
    show = "print(round(float(frame.x.sum()), 6), int(changed.z.sum()))"
    replies = script(tmp_path, [f"Sum.\n\n```python\n{show}\n```", REPORT], ["APPROVE"] * 2)
    ran = await cell(
        f"%%agents --data frame,changed --approve never --model scripted:{replies}\nSum them."
    )
    assert ran.status == "ok", ran.to_model_text()
    saved = await cell("%agents save reports/analysis.ipynb")
    assert "saved" in text(saved), text(saved)
    target = tmp_path / "reports" / "analysis.ipynb"
    # `frame` is rebuilt by the session's own code, rng included; `changed`, changed in
    # place by a later line, is saved beside the notebook and read from there
    assert (tmp_path / "reports" / "analysis_data" / "changed.parquet").is_file()
    assert not (tmp_path / "reports" / "analysis_data" / "frame.parquet").exists()
    again = await rerun(target)
    outputs = [o for c in again.cells if c.cell_type == "code" for o in c.outputs]
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    expected = value(await cell("(round(float(frame.x.sum()), 6), int(changed.z.sum()))"))
    assert printed.split() == [str(expected[0]), str(expected[1])]


SLOW = "Wait.\n\n```python\nimport time\ntime.sleep(60)\n```"


async def test_an_interrupt_stops_the_run_and_the_managed_kernel(
    cell: Cell, tmp_path: Path
) -> None:
    replies = script(tmp_path, [SLOW, REPORT], ["APPROVE", "APPROVE"])
    running = asyncio.ensure_future(
        cell(f"%%agents --data sales --approve never --model scripted:{replies}\nWait a while.")
    )
    await asyncio.sleep(4)  # the step is sleeping in the managed kernel by now
    assert not running.done()
    await cell.kernel.interrupt()
    ran = await asyncio.wait_for(running, 30)
    assert ran.status == "interrupted"  # as the notebook kernel's client saw it
    (error,) = [o for o in ran.outputs if o["output_type"] == "error"]
    assert error["ename"] == "AgentsStopped"
    assert len(error["traceback"]) == 1
    assert await outcome(cell) == ("user_stop", ["interrupted"])


async def test_background_returns_at_once_and_stop_ends_the_run(cell: Cell, tmp_path: Path) -> None:
    replies = script(tmp_path, [SLOW, REPORT], ["APPROVE", "APPROVE"])
    started = await cell(
        f"%%agents --background --data sales --approve never --model scripted:{replies}\nWait."
    )
    assert started.status == "ok", started.to_model_text()
    await asyncio.sleep(3)
    assert "phase: running step 1" in text(await cell("%agents status"))
    assert "still running" in usage_error(await cell("%agents result"))
    assert "stopped" in text(await cell("%agents stop"))
    assert await outcome(cell) == ("user_stop", ["interrupted"])
    assert "no analysis is running" in text(await cell("%agents stop"))


async def test_resume_continues_a_run_that_ended_without_an_answer(
    cell: Cell, tmp_path: Path
) -> None:
    first = script(tmp_path, [STEP, REPORT], ["APPROVE", "APPROVE"], name="first.json")
    ran = await cell(
        f"%%agents --data sales --approve never --max-turns 3 --model scripted:{first}\nQ?"
    )
    assert ran.status == "ok", ran.to_model_text()  # a limit ends a run; the cell passes
    assert "stop reason: max_turns" in text(await cell("%agents status"))
    later = script(tmp_path, [REPORT], ["APPROVE"], name="later.json")
    await cell(f"%config Agents.model = 'scripted:{later}'\n%config Agents.approve = 'never'")
    resumed = await cell("%agents resume")
    assert resumed.status == "ok", resumed.to_model_text()
    status = text(await cell("%agents status"))
    assert "stop reason: approved" in status
    assert "steps: 1 ok" in status
    # the step ran again in the fresh kernel: its variable is there
    pulled = await cell("%agents pull totals\ntotals.to_dict()")
    assert value(pulled) == {"North": 30, "South": 12}
    assert "no transcript of run nope" in usage_error(await cell("%agents resume nope"))

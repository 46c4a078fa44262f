"""Resuming a run from its transcript: the steps that worked run again in a fresh
managed kernel, then the chat goes on where it stopped."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from agentnb import ConfigError, aresume, arun
from agentnb.chat.events import Event, ExecutionFinished, RunStarted
from agentnb.chat.transcript import read_transcript
from agentnb.models.scripted import ScriptedModel

from ..conftest import FAST, script, step

TASK = "Add up the squares of 1 to 4."
SQUARES = step("squares = [n * n for n in range(1, 5)]\nprint(squares)", "The squares first.")
TOTAL = step("print(sum(squares))", "Then their sum.")
REPORT = "The sum of the squares is **30**."


async def test_a_stopped_run_goes_on_with_its_steps_run_again(tmp_path: Path) -> None:
    stop = asyncio.Event()
    events: list[Event] = []

    def stop_after_step_1(event: Event) -> None:
        events.append(event)
        if isinstance(event, ExecutionFinished) and event.step == 1:
            stop.set()

    first = await arun(
        TASK,
        model=ScriptedModel({"analyst": [SQUARES, TOTAL], "critic": ["APPROVE"] * 3}),
        kernel_config=FAST,
        transcript=tmp_path / "first.jsonl",
        on_event=stop_after_step_1,
        stop=stop,
    )
    assert first.stop_reason.kind == "user_stop"
    assert [s.number for s in first.steps] == [1]

    later: list[Event] = []
    resumed = await aresume(
        tmp_path / "first.jsonl",
        model=ScriptedModel({"analyst": [TOTAL, REPORT], "critic": ["APPROVE", "APPROVE"]}),
        kernel_config=FAST,
        transcript=tmp_path / "resumed.jsonl",
        on_event=later.append,
    )
    assert resumed.ok, resumed.stop_reason
    # step 1 ran again in the new kernel, so step 2 found its variable
    assert [(s.number, s.status) for s in resumed.steps] == [(1, "ok"), (2, "ok")]
    assert resumed.steps[1].execution.stdout == "30\n"
    (started,) = [e for e in later if isinstance(e, RunStarted)]
    assert started.resumed_from == first.run_id
    replayed = [e.step for e in later if isinstance(e, ExecutionFinished) and e.replayed]
    assert replayed == [1]
    assert resumed.final_report == REPORT


async def test_an_approved_run_has_nothing_to_resume(tmp_path: Path) -> None:
    done = await arun(
        TASK,
        model=ScriptedModel({"analyst": [REPORT], "critic": ["APPROVE"]}),
        kernel_config=FAST,
        transcript=tmp_path / "t.jsonl",
    )
    assert done.ok
    with pytest.raises(ConfigError, match="already ended with an approved answer"):
        await aresume(tmp_path / "t.jsonl", model="scripted:none.json")


async def test_data_from_a_notebook_must_be_given_again(tmp_path: Path) -> None:
    stop = asyncio.Event()
    stopped = await arun(
        TASK,
        data={"numbers": [1, 2, 3, 4]},
        model=ScriptedModel({"analyst": [SQUARES], "critic": ["APPROVE"]}),
        kernel_config=FAST,
        transcript=tmp_path / "t.jsonl",
        on_event=lambda e: stop.set() if isinstance(e, ExecutionFinished) and e.step else None,
        stop=stop,
    )
    assert stopped.stop_reason.kind == "user_stop"
    with pytest.raises(ConfigError, match=r"given numbers from a notebook's variables"):
        await aresume(tmp_path / "t.jsonl", model="scripted:none.json")


def test_a_run_killed_mid_step_is_resumed_from_the_command_line(tmp_path: Path) -> None:
    """The agentnb process dies with the run half done (a crash, a closed laptop):
    ``agentnb resume`` runs step 1 again in a fresh kernel and finishes the analysis."""
    (tmp_path / "numbers.csv").write_text("n\n1\n2\n3\n4\n")
    slow = step("import time\nprint('working', flush=True)\ntime.sleep(60)", "A long step.")
    first = script(tmp_path, [SQUARES, slow], ["APPROVE", "APPROVE"], name="first.json")
    env = {**os.environ, "AGENTNB_SANDBOX": os.environ.get("AGENTNB_SANDBOX", "on")}
    transcript = tmp_path / "run.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "agentnb", "run", TASK, "--data", "numbers.csv", "--approve",
         "never", "--model", f"scripted:{first}", "--transcript", str(transcript)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if transcript.exists() and any(
            isinstance(e, ExecutionFinished) and e.step == 1 for e in read_transcript(transcript)
        ):
            break
        time.sleep(0.2)
    time.sleep(1.0)  # step 2 is running
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)

    later = script(tmp_path, [TOTAL, REPORT], ["APPROVE", "APPROVE"], name="later.json")
    resumed = subprocess.run(
        [sys.executable, "-m", "agentnb", "resume", str(transcript), "--model",
         f"scripted:{later}", "--approve", "never", "--out", "resumed.ipynb"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "The sum of the squares is **30**." in resumed.stdout
    assert "resuming run" in resumed.stderr
    notebook = nbformat.read(tmp_path / "resumed.ipynb", as_version=4)
    code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    assert "squares = [n * n" in code
    assert "print(sum(squares))" in code
    assert "time.sleep(60)" not in code  # the step that was cut off never finished

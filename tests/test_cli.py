"""``agentnb run``: the command line, driven in-process and as a real subprocess.

Every run uses scripted replies (no network) and a real managed kernel.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import nbformat
import pytest
import yaml
from rich.console import Console

import agentnb.models
from agentnb.chat.approval import ApprovalRequest, Decision
from agentnb.chat.events import ExecutionFinished, ExecutionStarted, KernelReady, MessagePosted
from agentnb.chat.messages import Execution, Feedback
from agentnb.chat.transcript import read_transcript
from agentnb.cli import main
from agentnb.kernel.outputs import strip_ansi
from agentnb.models.scripted import ScriptedModel
from agentnb.ui.terminal import TerminalApprover, TerminalView

from .conftest import rerun
from .processes import interruptible

TASK = "What is the total amount?"
AGENTNB_RUN = [sys.executable, "-m", "agentnb", "run"]


def step(words: str, code: str) -> str:
    return f"{words}\n```python\n{code}\n```\n"


TOTAL = step("Sum the amounts.", 'print("total", sales["amount"].sum())')
REPORT = "The total amount is **60**."


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch directory with ``sales.csv``; wide, plain consoles; no editor."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sales.csv").write_text("region,amount\nnorth,10\nsouth,20\neast,30\n")
    monkeypatch.setenv("COLUMNS", "200")
    for name in ("VISUAL", "EDITOR", "AGENTNB_MODEL", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def script(where: Path, analyst: Sequence[str], critic: Sequence[str]) -> str:
    """Write a scripted-model file; return the ``--model`` value for it."""
    path = where / "replies.yaml"
    path.write_text(yaml.safe_dump({"analyst": list(analyst), "critic": list(critic)}))
    return f"scripted:{path}"


class Answers:
    """An ``input`` stand-in: gives the lines in order, then end of file."""

    def __init__(self, *lines: str) -> None:
        self.lines = list(lines)
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if not self.lines:
            raise EOFError
        return self.lines.pop(0)


def cli(argv: Sequence[str], input_fn: Callable[[str], str] | None = None) -> int:
    return main(["run", *argv], input_fn=input_fn)


def test_an_approved_run_prints_the_report_and_the_usage(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = script(workdir, [TOTAL, REPORT], ["APPROVE", "APPROVE, it matches step 1."])
    status = cli(
        [
            TASK,
            "--data",
            "sales.csv",
            "--model",
            model,
            "--transcript",
            "run.jsonl",
            "--out",
            "analysis.ipynb",
        ]
    )
    out, err = capsys.readouterr()
    assert status == 0, err
    assert f"notebook: {workdir / 'analysis.ipynb'}" in err
    saved = nbformat.read(workdir / "analysis.ipynb", as_version=4)
    assert any('sales["amount"].sum()' in c.source for c in saved.cells)
    assert out.strip() == REPORT  # stdout carries the report, nothing else
    assert "approve  never" in err  # stdin is not a terminal here
    assert 'print("total", sales["amount"].sum())' in err  # the proposed code
    assert "APPROVE step 1" in err
    assert "▶ step 1 ok" in err
    assert "total 60" in err  # what the step printed
    assert "✔ the final report was approved" in err
    rows = {
        line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
        for line in err.splitlines()
        if line.startswith("│")
    }
    assert rows["analyst"][0] == "2"
    assert rows["critic"][0] == "2"
    assert rows["total"][0] == "4"
    assert all(cell.startswith("~") for cell in rows["total"][1:3])  # scripted: estimated
    assert rows["total"][3] == "$0.0000"
    assert "Traceback" not in err
    assert (workdir / "run.jsonl").is_file()
    # the header, and the transcript, say how the agents' code was isolated
    assert "kernel: sandboxed by bubblewrap" in " ".join(err.split())
    (ready,) = [e for e in read_transcript(workdir / "run.jsonl") if isinstance(e, KernelReady)]
    assert ready.sandboxed
    assert "no network" in ready.isolation


def test_max_turns_ends_the_run_without_an_answer(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = script(workdir, [TOTAL, REPORT], ["APPROVE", "APPROVE"])
    status = cli([TASK, "--model", model, "--max-turns", "2", "--quiet"])
    out, err = capsys.readouterr()
    assert status == 1
    assert out == ""
    assert "stopped (max_turns)" in err
    assert "the limit is 2; raise it with --max-turns" in err
    assert "proposes step" not in err  # --quiet: only the end
    assert "usage" in err
    transcripts = list((workdir / ".agentnb" / "runs").glob("*.jsonl"))
    assert len(transcripts) == 1  # the default place, under the working directory


def test_edits_at_the_prompt_are_what_runs_and_what_is_reported(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = script(workdir, [TOTAL, REPORT], ["APPROVE", "APPROVE"])
    answers = Answers(
        "e",
        'print("edited", sales["amount"].max())',
        ".",
        "edit",
        "The largest amount is 30.",
        ".",
    )
    status = cli(
        [TASK, "--data", "sales.csv", "--model", model, "--approve", "each", "--transcript", "t"],
        answers,
    )
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "[a]pprove / [e]dit / [r]eject / [s]top" in answers.prompts[0]
    assert answers.lines == []
    assert "edited 30" in err
    assert "total 60" not in err
    ran = [e for e in read_transcript(workdir / "t") if isinstance(e, ExecutionStarted)]
    assert [e.code for e in ran if e.step == 1] == ['print("edited", sales["amount"].max())']
    assert out.strip() == "The largest amount is 30."


def test_a_rejection_sends_the_feedback_to_the_analyst(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[ScriptedModel] = []

    class Recorded(ScriptedModel):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            made.append(self)

    monkeypatch.setattr(agentnb.models, "ScriptedModel", Recorded)
    model = script(
        workdir,
        [
            step("The mean.", 'print("mean", sales["amount"].mean())'),
            step("The median, then.", 'print("median", sales["amount"].median())'),
            "The median amount is 20.",
        ],
        ["APPROVE", "APPROVE", "APPROVE"],
    )
    answers = Answers("r", "use the median instead", "a", "a")
    status = cli([TASK, "--data", "sales.csv", "--model", model, "--approve", "each"], answers)
    out, err = capsys.readouterr()
    assert status == 0, err
    assert out.strip() == "The median amount is 20."
    assert "median 20.0" in err
    assert "mean 20.0" not in err  # the rejected step never ran
    assert "you rejected step 1: use the median instead" in err
    (scripted,) = made
    analyst_prompts = scripted.prompt_texts("analyst")
    assert len(analyst_prompts) == 3
    assert "use the median instead" not in analyst_prompts[0]
    assert "use the median instead" in analyst_prompts[1]


def test_stop_at_the_prompt_ends_the_run(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = script(workdir, [TOTAL, REPORT], ["APPROVE", "APPROVE"])
    status = cli([TASK, "--model", model, "--approve", "each", "--transcript", "t"], Answers("s"))
    out, err = capsys.readouterr()
    assert status == 1
    assert out == ""
    assert "stopped (user_stop): stopped by the user at step 1" in err
    events = list(read_transcript(workdir / "t"))
    assert not [e for e in events if isinstance(e, ExecutionFinished)]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run"], "the following arguments are required: TASK"),
        (["run", TASK, "--bogus"], "unrecognized arguments: --bogus"),
        (["run", TASK, "--max-turns", "0"], "--max-turns: must be at least 1"),
        (["run", TASK, "--approve", "sometimes"], "invalid choice: 'sometimes'"),
        (["run", TASK, "--data", "missing.csv", "--model", "MODEL"], "--data missing.csv"),
        (["run", " ", "--model", "MODEL"], "the task is empty"),
        (["run", TASK], "no model given"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_usage_and_configuration_errors_are_one_line(
    workdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    model = script(workdir, [REPORT], ["APPROVE"])
    status = main([model if a == "MODEL" else a for a in argv])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert err.startswith("agentnb: error: ")
    assert message in err
    assert err.count("\n") == 1  # one line, no traceback


def _read_all(fd: int) -> bytes:
    chunks = []
    while select.select([fd], [], [], 0.5)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VISUAL", "EDITOR", "AGENTNB_MODEL")}
    env["COLUMNS"] = "200"
    return env


def test_python_m_agentnb_with_a_terminal_but_no_input_never_asks(workdir: Path) -> None:
    """stdout is a terminal, stdin is not: nobody can answer, so --approve never."""
    model = script(workdir, [TOTAL, REPORT], ["APPROVE", "APPROVE"])
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [*AGENTNB_RUN, TASK, "--data", "sales.csv", "--model", model],
            cwd=workdir,
            stdin=subprocess.PIPE,  # closed at once: a prompt would read end of file
            stdout=follower,
            stderr=subprocess.PIPE,
            env=_env(),
            timeout=60,
            check=False,
        )
        os.close(follower)
        follower = -1
        out = strip_ansi(_read_all(leader).decode())
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert "approve  never" in err
    assert "total 60" in err
    assert "final report" in out  # rendered for a terminal
    assert "The total amount is 60." in out
    assert len(list((workdir / ".agentnb" / "runs").glob("*.jsonl"))) == 1


def test_ctrl_c_stops_the_run_with_status_130(workdir: Path) -> None:
    sleepy = step("Wait.", 'print("sleeping", flush=True)\nimport time\ntime.sleep(60)')
    model = script(workdir, [sleepy, REPORT], ["APPROVE", "APPROVE"])
    process = subprocess.Popen(
        [*AGENTNB_RUN, TASK, "--data", "sales.csv", "--model", model, "--transcript", "t"],
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
        preexec_fn=interruptible,
    )
    assert process.stderr is not None
    seen = ""
    deadline = time.monotonic() + 30
    while "running step 1" not in seen and time.monotonic() < deadline:
        line = process.stderr.readline().decode()
        if not line:
            break
        seen += line
    assert "running step 1" in seen
    time.sleep(0.5)  # the step is under way in the kernel
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, rest = process.communicate(timeout=30)
    err = seen + rest.decode()
    assert process.returncode == 130, err
    assert time.monotonic() - started < 10
    assert "stopped" in err
    assert "▶ step 1 interrupted" in err
    assert "sleeping" in err
    assert out == b""
    assert "Traceback" not in err


# --- the approver and the view on their own (no kernel) ---------------------------------


def _quiet_console() -> Console:
    return Console(file=io.StringIO(), width=120)


async def test_the_editor_edits_a_step() -> None:
    approver = TerminalApprover(
        _quiet_console(), input_fn=Answers("e"), editor="sed -i s/amount/price/"
    )
    request = ApprovalRequest(kind="step", step=2, text="Sum.", code="df['amount'].sum()")
    assert await approver.decide(request) == Decision.edit("df['price'].sum()\n")


async def test_a_failed_editor_asks_again_and_end_of_file_stops() -> None:
    console = _quiet_console()
    answers = Answers("edit")
    approver = TerminalApprover(console, input_fn=answers, editor="false")
    request = ApprovalRequest(kind="final", step=None, text="The answer is 42.")
    assert await approver.decide(request) == Decision.stop()
    assert len(answers.prompts) == 2
    assert "the final report: [a]pprove" in answers.prompts[1]
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "exited with status 1" in shown
    assert "end of file" in shown


async def test_a_report_is_edited_at_the_prompt() -> None:
    answers = Answers("x", "e", "# Answer", "", "It is 42.", ".")
    approver = TerminalApprover(_quiet_console(), input_fn=answers)
    request = ApprovalRequest(kind="final", step=None, text="The answer is 41.")
    assert await approver.decide(request) == Decision.edit("# Answer\n\nIt is 42.")


def test_step_outputs_are_shown_as_text_and_plot_notes() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + (640).to_bytes(4, "big")
    png += (480).to_bytes(4, "big") + b"\x08\x06\x00\x00\x00"
    figure = {"image/png": base64.b64encode(png).decode(), "text/plain": "<Figure>"}
    execution = Execution(
        code="...",
        status="error",
        outputs=(
            {"output_type": "stream", "name": "stdout", "text": "hello\n"},
            {"output_type": "display_data", "data": figure, "metadata": {}},
            {
                "output_type": "execute_result",
                "execution_count": 3,
                "data": {"text/plain": "   a\n0  1", "text/html": "<table/>"},
                "metadata": {},
            },
            {
                "output_type": "error",
                "ename": "KeyError",
                "evalue": "'b'",
                "traceback": ["\x1b[31mKeyError\x1b[0m: 'b'"],
            },
        ),
        execution_count=3,
        duration=0.25,
    )
    console = _quiet_console()
    view = TerminalView(console)
    view(ExecutionFinished(step=3, execution=execution))
    view(MessagePosted(message=Feedback(sender="user", text="no plots", step=3)))
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "▶ step 3 error  0.2 s" in shown
    assert "hello" in shown
    assert "[plot: 640×480 PNG]" in shown
    assert "<Figure>" not in shown
    assert "   a\n  0  1" in shown
    assert "KeyError: 'b'" in shown
    assert "\x1b" not in shown
    assert re.search(r"user feedback on step 3: no plots", shown)


def test_the_demo_runs_offline_and_writes_its_notebook(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["demo"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "scripted" in err  # it says the replies are not a model's
    assert "OPENAI_API_KEY" in err  # and how to use a real one
    assert "South grew fastest" in out
    notebook = workdir / "agentnb-demo.ipynb"
    assert f"notebook: {notebook}" in err
    saved = nbformat.read(notebook, as_version=4)
    nbformat.validate(saved)
    outputs = [o for c in saved.cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # a real plot
    # the numbers of the scripted report are the ones the real steps printed
    assert any("38651.0" in o.get("data", {}).get("text/plain", "") for o in outputs)


def test_replay_rebuilds_the_notebook_without_a_model(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = script(workdir, [TOTAL, REPORT], ["APPROVE", "APPROVE"])
    assert cli([TASK, "--data", "sales.csv", "--model", model, "--transcript", "t.jsonl"]) == 0
    capsys.readouterr()
    assert main(["replay", "t.jsonl", "--out", "again.ipynb"]) == 0
    out, _ = capsys.readouterr()
    assert out.strip() == str((workdir / "again.ipynb").absolute())
    again = nbformat.read(workdir / "again.ipynb", as_version=4)
    assert any('sales["amount"].sum()' in c.source for c in again.cells)
    assert main(["replay", "missing.jsonl", "--out", "x.ipynb"]) == 2


def test_the_out_notebook_reads_its_data_relatively_and_runs_again(workdir: Path) -> None:
    model = script(workdir, [TOTAL, REPORT], ["APPROVE", "APPROVE"])
    args = ["run", TASK, "--data", "sales.csv", "--model", model, "--approve", "never"]
    assert main([*args, "--out", "reports/analysis.ipynb"]) == 0
    target = workdir / "reports" / "analysis.ipynb"
    setup = next(c for c in nbformat.read(target, as_version=4).cells if c.cell_type == "code")
    assert "pd.read_csv('../sales.csv')" in setup.source  # not this machine's absolute path
    again = asyncio.run(rerun(target))
    printed = [
        o.text for c in again.cells if c.cell_type == "code" for o in c.outputs if "text" in o
    ]
    assert "total 60\n" in printed

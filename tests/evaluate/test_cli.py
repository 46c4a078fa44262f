"""``agentnb eval``: the command line, in-process and as a real subprocess stopped with
Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from agentnb.cli import main
from agentnb.evaluate import load_suite

from ..processes import alive, children_of, interruptible
from .conftest import OracleServer, native, step

AGENTNB_EVAL = [sys.executable, "-m", "agentnb", "eval"]


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


@pytest.mark.kernel
def test_agentnb_eval_takes_the_runs_flags_and_prints_the_summary(
    oracle_server: OracleServer, dabstep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    oracle, server = oracle_server(load_suite(dabstep), "wrong")
    out = tmp_path / "out"
    status = main(
        [
            "eval", str(dabstep), "--out", str(out), "--model", "scripted",
            "--base-url", server.base_url, "--protocol", "text", "--retries", "0",
            "--max-turns", "12", "--time-limit", "60", "--concurrency", "2",
            "--label", "a wrong model",
        ]
    )  # fmt: skip
    stdout, stderr = capsys.readouterr()
    assert status == 0, stderr
    assert "agentnb eval · DABStep (dev): 2 tasks" in stderr
    assert "✘ 1  answer: '999999', expected '3'" in stderr  # a line per task
    assert "✘ 2" in stderr
    assert f"notebook: {out / 'report.ipynb'}" in stderr
    assert "a wrong model" in stdout  # the summary table, on stdout
    assert "accuracy by question" in stdout
    assert "0.0%" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy_by_question"] == 0.0
    assert summary["label"] == "a wrong model"
    run = json.loads((out / "run.json").read_text())
    assert run["options"]["max_turns"] == 12
    assert run["options"]["time_limit"] == 60.0
    assert sorted(oracle.calls("analyst")) == ["1", "2"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "mini"], "give a SUITE and --out DIR, or --compare A B"),
        (["eval", "mini", "--out", "o", "--compare", "a", "b"], "not both"),
        (["eval", "mini", "--out", "o", "--model", "m", "--concurrency", "0"], "--concurrency"),
        (
            ["eval", "mini", "--out", "o", "--model", "m", "--no-critic", "--critic-model", "c"],
            "--no-critic and --critic-model contradict",
        ),
        (["eval", "mini", "--out", "o"], "no model given for the analyst and the critic"),
        (["eval", "mini", "--out", "o", "--approve", "each"], "unrecognized arguments: --approve"),
        (["eval", "mini", "--out", "o", "--data", "x.csv"], "unrecognized arguments: --data"),
        (["eval", "nowhere", "--out", "o", "--model", "m"], "suite nowhere: no such file"),
        (["eval", "mini", "--out", "o", "--model", "m", "--limit", "0"], "--limit must be"),
    ],
)
def test_eval_usage_errors_are_one_line(
    argv: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    _, err = capsys.readouterr()
    assert err.startswith("agentnb: error: ")
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # nothing was started


def _run(folder: Path, label: str, right: dict[str, bool]) -> Path:
    folder.mkdir()
    run = {"label": label, "suite": "s", "tasks": list(right)}
    (folder / "run.json").write_text(json.dumps(run))
    records = [
        {"id": task, "correct": ok, "score": float(ok), "right": {"x": ok}, "status": "answered",
         "stop_reason": "approved", "tokens": {}, "cost": {}, "cost_total": 0.0, "wall_time": 1.0}
        for task, ok in right.items()
    ]  # fmt: skip
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_eval_compare_puts_two_runs_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _run(tmp_path / "a", "with critic", {"1": True, "2": True, "3": False})
    b = _run(tmp_path / "b", "no critic", {"1": True, "2": False, "3": False})
    status = main(["eval", "--compare", str(a / "results.jsonl"), str(b), "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert status == 0, err
    header = next(line for line in out.splitlines() if "with critic" in line)
    assert "no critic" in header
    assert "66.7%" in out
    assert "33.3%" in out
    assert "on the 3 tasks both ran: 1 right in both, 1 only in with critic, 0 only in no" in out
    notebook = nbformat.read(tmp_path / "compare.ipynb", as_version=4)
    assert "| | with critic | no critic |" in notebook.cells[0].source


@pytest.mark.kernel
def test_ctrl_c_keeps_the_finished_tasks(oracle_server: OracleServer, tmp_path: Path) -> None:
    suite = native(
        tmp_path,
        [
            {"id": "quick", "task": "How many rows?", "data": ["v.csv"], "answers": {"n": 3}},
            {"id": "slow", "task": "How slow is it?", "data": ["v.csv"], "answers": {"n": 3}},
        ],
        {"v.csv": "v\n1\n2\n3\n"},
    )
    sleepy = step("print('sleeping', flush=True)\nimport time\ntime.sleep(60)")
    _, server = oracle_server(suite, behaviours={"slow": lambda _: sleepy})
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTNB_", "OPENAI_"))}
    process = subprocess.Popen(
        [*AGENTNB_EVAL, str(suite.path.parent), "--out", str(out), "--model", "scripted",
         "--base-url", server.base_url, "--protocol", "text"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=interruptible,
        # where it still hangs, SIGABRT makes it say where each of its threads is
        env={**env, "COLUMNS": "200", "PYTHONFAULTHANDLER": "1"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        results = out / "results.jsonl"
        while time.monotonic() < deadline and not (
            results.is_file() and len(results.read_text().splitlines()) == 1
        ):
            assert process.poll() is None, process.communicate()
            time.sleep(0.1)
        kernels: list[int] = []
        while time.monotonic() < deadline and not kernels:  # the slow task's kernel is up
            kernels = children_of(process.pid)
            time.sleep(0.1)
        time.sleep(1.5)  # its step is under way
        process.send_signal(signal.SIGINT)
        # ending a kernel per running task takes a while on a loaded 2-core machine
        try:
            stdout, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            _, stderr = process.communicate(timeout=30)
            pytest.fail("agentnb eval did not end after Ctrl-C:\n" + stderr.decode())
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    err = stderr.decode()
    assert process.returncode == 130, err
    assert "stopped (Ctrl-C): the finished tasks are kept" in err
    assert "Traceback" not in err
    (record,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert record["id"] == "quick"
    assert record["correct"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scored"] == 1
    assert summary["tasks"] == 2
    assert not summary["complete"]
    assert "1 of 2 run" in stdout.decode()  # the summary of what finished
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in kernels) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in kernels if alive(pid)], "a task's kernel outlived the Ctrl-C"

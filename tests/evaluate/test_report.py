"""The summary (InfiAgent-DABench's three accuracies, cost per correct answer, times, stop
reasons), the report notebook with its chart, and two runs side by side: from records,
with no kernel and no model."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from rich.console import Console

from agentnb import ConfigError
from agentnb.evaluate import compare, read_records, summarise, write_summary
from agentnb.evaluate.report import CHART, write_comparison
from agentnb.evaluate.view import summary_table

from .conftest import close


def record(task: str, right: dict[str, bool], **fields: Any) -> dict[str, Any]:
    """A task's record as the runner writes it (the fields the summary reads)."""
    base = {
        "id": task,
        "correct": bool(right) and all(right.values()),
        "score": sum(right.values()) / len(right) if right else 0.0,
        "right": right,
        "answers": dict.fromkeys(right, "x"),
        "expected": dict.fromkeys(right, "y"),
        "status": "answered",
        "stop_reason": "approved",
        "stop_message": "the final report was approved",
        "level": None,
        "tokens": {"analyst": {"prompt": 100, "completion": 10, "calls": 1}},
        "tokens_total": 110,
        "cost": {"analyst": 0.01},
        "cost_total": 0.01,
        "wall_time": 2.0,
        "label": "model-a",
    }
    return {**base, **fields}


RECORDS = [
    record("1", {"a": True}, level="easy", wall_time=1.0),
    record("2", {"a": True, "b": False}, level="easy", wall_time=3.0),
    record("3", {"a": False, "b": False, "c": False, "d": False}, level="hard", wall_time=5.0),
]


def test_the_three_accuracies_are_infiagent_dabenchs() -> None:
    summary = summarise(RECORDS, suite="s", kind="dabench", label="model-a")
    # by question: every sub-answer right; by sub-question: right sub-answers over all;
    # proportional: each question's share of right sub-answers, averaged
    assert close(summary["accuracy_by_question"], 1 / 3)
    assert close(summary["accuracy_by_sub_question"], 2 / 7)
    assert close(summary["accuracy_proportional"], (1 + 0.5 + 0) / 3)
    assert summary["accuracy"] == summary["accuracy_by_question"]
    assert summary["correct"] == 1
    assert summary["tasks"] == summary["scored"] == 3
    assert summary["complete"]
    assert summary["by_level"] == {
        "easy": {"tasks": 2, "correct": 1, "accuracy": 0.5},
        "hard": {"tasks": 1, "correct": 0, "accuracy": 0.0},
    }
    assert summary["tokens"] == {
        "prompt": 300,
        "completion": 30,
        "total": 330,
        "per_agent": {"analyst": {"prompt": 300, "completion": 30, "calls": 3}},
    }
    assert close(summary["cost"], 0.03)
    assert close(summary["cost_per_correct"], 0.03)
    assert summary["median_time"] == 3.0
    assert summary["stop_reasons"] == {"approved": 3}


def test_unfinished_and_failed_tasks_count_as_they_should() -> None:
    records = [
        *RECORDS[:2],
        record("4", {"a": False}, status="failed", stop_reason="time_limit", cost_total=None,
               cost={"analyst": None}),
    ]  # fmt: skip
    summary = summarise(records, tasks=["1", "2", "4", "5"])
    assert summary["tasks"] == 4  # task 5 has not run yet
    assert summary["scored"] == 3
    assert not summary["complete"]
    assert close(summary["accuracy_by_question"], 1 / 3)  # the failed task is wrong
    assert summary["stop_reasons"] == {"approved": 2, "time_limit": 1}
    assert summary["cost"] is None  # a price unknown: no total, never a guess
    assert summary["cost_per_correct"] is None
    assert summary["cost_per_agent"] == {"analyst": None}
    empty = summarise([], tasks=["1"])
    assert empty["accuracy_by_question"] is None
    assert empty["median_time"] is None


def _results(folder: Path, records: list[dict[str, Any]], **run: Any) -> Path:
    folder.mkdir(parents=True)
    info = {"suite": "mini", "kind": "native", "label": "model-a", "tasks": ["1", "2", "3"]}
    (folder / "run.json").write_text(json.dumps({**info, **run}))
    lines = [json.dumps(r) for r in records]
    (folder / "results.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_the_summary_files_and_the_report_notebook(tmp_path: Path) -> None:
    rerun = record("3", {"a": True, "b": True, "c": True, "d": True})  # a task run again
    folder = _results(tmp_path / "out", [*RECORDS, rerun])
    with (folder / "results.jsonl").open("a") as f:
        f.write('{"id": "2", "correct": tr')  # a line cut short by a crash
    assert [r["id"] for r in read_records(folder)] == ["1", "2", "3"]
    assert read_records(folder)[2]["correct"]  # the last record of a task counts
    summary = write_summary(folder)
    assert close(summary["accuracy_by_question"], 2 / 3)
    assert json.loads((folder / "summary.json").read_text()) == summary
    assert "| accuracy by question | 66.7% |" in (folder / "summary.md").read_text()
    notebook = nbformat.read(folder / "report.ipynb", as_version=4)
    nbformat.validate(notebook)
    title, load, chart, missed = notebook.cells
    assert title.source.startswith("# agentnb eval: mini")
    assert chart.source == CHART
    (output,) = chart.outputs
    png = base64.b64decode(output["data"]["image/png"])
    assert png.startswith(b"\x89PNG")
    assert "## Not answered right: model-a (1)" in missed.source
    assert "| 2 | approved | a=x, b=x | a=y, b=y |" in missed.source
    # the notebook's code draws the same chart again from summary.json
    namespace: dict[str, Any] = {}
    exec(load.source.replace("Path('summary.json')", f"Path({str(folder / 'summary.json')!r})"),
         namespace)  # fmt: skip
    exec(chart.source, namespace)
    assert namespace["fig"].axes[0].get_title() == "mini"


def test_two_runs_side_by_side(tmp_path: Path) -> None:
    a = _results(tmp_path / "a", RECORDS)
    b_records = [
        record("1", {"a": False}, label="model-b"),
        record("2", {"a": True, "b": True}, label="model-b"),
        record("3", {"a": True, "b": True, "c": True, "d": True}, label="model-b"),
    ]
    b = _results(tmp_path / "b", b_records, label="model-b")
    comparison = compare(a / "results.jsonl", b)
    first, second = comparison["runs"]
    assert (first["label"], second["label"]) == ("model-a", "model-b")
    assert close(first["accuracy_by_question"], 1 / 3)
    assert close(second["accuracy_by_question"], 2 / 3)
    assert comparison["common"] == 3
    assert comparison["both"] == 0
    assert comparison["only_a"] == ["1"]
    assert comparison["only_b"] == ["2", "3"]
    assert comparison["neither"] == 0
    notebook = write_comparison(comparison, tmp_path / "cmp")
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["only_b"] == ["2", "3"]
    cells = nbformat.read(notebook, as_version=4).cells
    assert "| | model-a | model-b |" in cells[0].source
    assert cells[2].outputs[0]["data"]["image/png"]
    console = Console(file=io.StringIO(), width=120)
    console.print(summary_table(comparison["runs"]))
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "model-a" in shown
    assert "model-b" in shown
    assert "33.3%" in shown
    assert "66.7%" in shown
    # the same label twice is told apart
    again = compare(a, a)
    assert [r["label"] for r in again["runs"]] == ["model-a (A)", "model-a (B)"]
    with pytest.raises(ConfigError, match=r"no results\.jsonl there"):
        compare(tmp_path / "nowhere", a)

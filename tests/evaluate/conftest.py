"""Helpers for the evaluation tests: a model that knows each task's answer (an oracle),
served by a real OpenAI-compatible server on 127.0.0.1, and small suites in the
published layouts of InfiAgent-DABench and DABStep, with made-up data."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from agentnb.evaluate import Suite, Task, load_suite
from agentnb.kernel import KernelConfig
from agentnb.models.server import Fault, ScriptedServer, call

ANALYST_PROMPT = "You are a careful data analyst"

FAST = KernelConfig(step_timeout=20, interrupt_grace=2, preload=())
"""Small kernels, short limits."""

Behaviour = Callable[[str], "str | Fault"]
"""What the analyst replies to a prompt (its user message), instead of answering."""


def report(task: Task, mode: str = "right") -> str:
    """A final report answering ``task``: every answer right, every one wrong, or the
    first half of them right (``half``)."""
    lines = []
    half = len(task.expected) // 2
    for i, expected in enumerate(task.expected):
        right = mode == "right" or (mode == "half" and i < half)
        value = expected.as_text() if right else "999999"
        if task.style == "final":
            lines.append(f"FINAL ANSWER: {value}")
        else:
            lines.append(f"@{expected.name}[{value}]")
    return "The analysis is done; the figures are below.\n\n" + "\n".join(lines)


def step(code: str, why: str = "Next step.") -> str:
    return f"{why}\n\n```python\n{code}\n```"


class Oracle:
    """A model behind a :class:`ScriptedServer`: the analyst answers each task of
    ``suite`` straight away (``mode``: right, wrong or half right; per task id in
    ``modes``), or as a ``behaviours`` function of the prompt says; the critic approves.

    ``requests`` lists (role, task id) of every call, in order."""

    def __init__(
        self,
        suite: Suite,
        mode: str = "right",
        *,
        modes: Mapping[str, str] | None = None,
        behaviours: Mapping[str, Behaviour] | None = None,
    ) -> None:
        self.suite = suite
        self.mode = mode
        self.modes = dict(modes or {})
        self.behaviours = dict(behaviours or {})
        self.requests: list[tuple[str, str | None]] = []
        self.tool_calls = 0
        """Requests that offered tools (the tools protocol)."""
        self._lock = threading.Lock()

    def task_of(self, text: str) -> Task | None:
        found = [t for t in self.suite.tasks if t.question.strip() in text]
        return max(found, key=lambda t: len(t.question), default=None)

    def __call__(self, body: dict[str, Any]) -> str | Fault:
        messages = body["messages"]
        system, user = messages[0]["content"], messages[-1]["content"]
        role = "analyst" if system.startswith(ANALYST_PROMPT) else "critic"
        task = self.task_of(user)
        tools = bool(body.get("tools"))  # the tools protocol: answer with tool calls
        with self._lock:
            self.requests.append((role, task.id if task else None))
            self.tool_calls += tools
        if role == "critic":
            return call("review", verdict="approve", comments="Fine.") if tools else "APPROVE"
        assert task is not None, f"the oracle cannot tell the task of: {user[:300]}"
        behaviour = self.behaviours.get(task.id)
        if behaviour is not None:
            return behaviour(user)
        text = report(task, self.modes.get(task.id, self.mode))
        return call("final_report", report=text) if tools else text

    def calls(self, role: str) -> list[str | None]:
        return [task for who, task in self.requests if who == role]


OracleServer = Callable[..., tuple[Oracle, ScriptedServer]]


@pytest.fixture
def oracle_server() -> Iterator[OracleServer]:
    """``oracle_server(suite, mode, ...)``: an :class:`Oracle` and the started server
    that answers with it (model ``scripted``); stopped after the test."""
    started: list[ScriptedServer] = []

    def start(suite: Suite, mode: str = "right", **options: Any) -> tuple[Oracle, ScriptedServer]:
        oracle = Oracle(suite, mode, **options)
        server = ScriptedServer([], respond=oracle).start()
        started.append(server)
        return oracle, server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(autouse=True)
def no_caller_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's model, gateway and OpenAI settings must not leak into these tests."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name in ("MODEL", "GATEWAY", "GATEWAY_TOKEN", "MAX_TURNS", "TIME_LIMIT", "PROTOCOL"):
        monkeypatch.delenv(f"AGENTNB_{name}", raising=False)


def endpoint(server: ScriptedServer) -> dict[str, Any]:
    """The run options that point every agent at ``server``."""
    return {
        "model": "scripted",
        "base_url": server.base_url,
        "api_key": "test",
        "protocol": "text",
        "retries": 0,
    }


# --- small suites in the benchmarks' layouts (made-up data) ------------------------------

DABENCH_QUESTIONS = [
    {
        "id": 0,
        "question": "What is the mean of the price column?",
        "concepts": ["Summary Statistics"],
        "constraints": "Round to two decimal places.",
        "format": "@mean_price[mean], a number rounded to two decimal places.",
        "file_name": "shop.csv",
        "level": "easy",
    },
    {
        "id": 3,
        "question": "What are the smallest and largest quantity?",
        "concepts": ["Summary Statistics"],
        "constraints": "Use the quantity column.",
        "format": "@min_quantity[min] @max_quantity[max], whole numbers.",
        "file_name": "shop.csv",
        "level": "easy",
    },
    {
        "id": 7,
        "question": "Describe the temperature readings of the sensor file.",
        "concepts": ["Summary Statistics", "Distribution Analysis"],
        "constraints": "Population standard deviation; round to two decimals.",
        "format": "@mean_temp[m] @std_temp[s] @is_normal[yes or no] @count[n]",
        "file_name": "sensor readings.csv",
        "level": "medium",
    },
]
DABENCH_LABELS = [
    {"id": 0, "common_answers": [["mean_price", "4.25"]]},
    {"id": 3, "common_answers": [["max_quantity", "9"], ["min_quantity", "1"]]},
    {
        "id": 7,
        "common_answers": [["mean_temp", "20.5"], ["std_temp", "1.12"], ["is_normal", "no"],
                           ["count", "4"]],
    },
]  # fmt: skip


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def dabench(tmp_path: Path) -> Path:
    """InfiAgent-DABench's layout: ``data/da-dev-questions.jsonl``, the labels, the tables
    (three questions, made-up data); returns the folder holding ``data``."""
    root = tmp_path / "InfiAgent" / "examples" / "DA-Agent"
    data = root / "data"
    write_jsonl(data / "da-dev-questions.jsonl", DABENCH_QUESTIONS)
    write_jsonl(data / "da-dev-labels.jsonl", DABENCH_LABELS)
    tables = data / "da-dev-tables"
    tables.mkdir()
    (tables / "shop.csv").write_text("item,price,quantity\na,2.5,1\nb,6.0,9\n")
    (tables / "sensor readings.csv").write_text("t\n19\n20\n21\n22\n")
    return root


DABSTEP_TASKS = [
    {
        "task_id": "1",
        "question": "How many payments are there?",
        "guidelines": "Answer with a whole number.",
        "answer": "3",
        "level": "easy",
    },
    {
        "task_id": "2",
        "question": "Which merchants received a payment?",
        "guidelines": "Answer with a comma-separated list of merchant names.",
        "answer": "Shop_A, Shop_B",
        "level": "hard",
    },
]


@pytest.fixture
def dabstep(tmp_path: Path) -> Path:
    """DABStep's layout: ``data/tasks/dev.jsonl`` and ``data/context/`` (made-up payments,
    a manual as markdown); returns the repository's folder."""
    root = tmp_path / "DABstep"
    write_jsonl(root / "data" / "tasks" / "dev.jsonl", DABSTEP_TASKS)
    write_jsonl(
        root / "data" / "tasks" / "all.jsonl",
        [{**t, "answer": None} for t in DABSTEP_TASKS],
    )
    context = root / "data" / "context"
    context.mkdir(parents=True)
    (context / "payments.csv").write_text("psp_reference,merchant,eur_amount\n1,Shop_A,10.5\n"
                                          "2,Shop_B,3.0\n3,Shop_A,7.25\n")  # fmt: skip
    (context / "fees.json").write_text(json.dumps([{"ID": 1, "fixed_amount": 0.1}]))
    (context / "manual.md").write_text("# Manual\n\nFees are charged per payment.\n")
    return root


def native(tmp_path: Path, tasks: list[dict[str, Any]], files: Mapping[str, str]) -> Suite:
    """A suite of agentnb's own format in ``tmp_path/suite``."""
    folder = tmp_path / "suite"
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    write_jsonl(folder / "suite.jsonl", tasks)
    return load_suite(folder)


def close(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, abs_tol=1e-9)


class RecordingView:
    """An :class:`~agentnb.evaluate.EvalView` that keeps what it was shown: the most
    tasks running at once, the ids started and finished."""

    def __init__(self) -> None:
        self.most_running = 0
        self.started: list[str] = []
        self.finished: list[str] = []
        self.closed = False

    def start(self, suite: Suite, tally: Any) -> None:
        self.total = tally.total

    def task_started(self, task: Task, tally: Any) -> None:
        self.started.append(task.id)
        self.most_running = max(self.most_running, tally.running)

    def task_finished(self, record: Mapping[str, Any], tally: Any) -> None:
        self.finished.append(str(record["id"]))

    def close(self) -> None:
        self.closed = True

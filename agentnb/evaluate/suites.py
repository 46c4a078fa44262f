"""Suites: the tasks of a benchmark, read from a local copy in its published layout.

Three layouts are read (:func:`load_suite` tells them apart):

- **InfiAgent-DABench**: ``da-dev-questions.jsonl`` (``id``, ``question``,
  ``constraints``, ``format``, ``file_name``, ``level``), ``da-dev-labels.jsonl``
  (``id``, ``common_answers``: ``[[name, value], ...]``) and the CSV folder
  ``da-dev-tables/``, as in ``examples/DA-Agent/data`` of the InfiAgent repository.
  Give that folder, the repository's root, or the questions file.
- **DABStep**: ``tasks/dev.jsonl`` (``task_id``, ``question``, ``guidelines``,
  ``answer``, ``level``) and the ``context/`` folder of the payments data, as in the
  ``data`` folder of the dataset's repository. Give the repository, its ``data``
  folder, or a tasks file (its ``context`` folder is then ``../context``).
- **agentnb's own**: ``suite.jsonl``, one task a line, for your regression suites::

      {"id": "total", "task": "What is the total revenue?", "data": ["sales.csv"],
       "answers": {"total_revenue": 1234.5}, "tolerance": 0.01}

  ``data``: files relative to the suite file. ``answers``: each expected answer by
  name, which the analyst reports as ``@name[value]``; a value is a number, a text
  or a list, or ``{"value": ..., "scorer": ..., "tolerance": ...}`` for one answer.
  ``answer`` (instead of ``answers``): one answer, reported on a ``FINAL ANSWER:``
  line. ``scorer``: ``auto`` (the default: ``number`` for a number, ``list`` for a
  list, ``text`` otherwise), ``number``, ``text``, ``list``, ``exact``
  (InfiAgent-DABench's) or ``dabstep``. ``tolerance`` (absolute, default 1e-6) and
  ``rel_tolerance`` (relative) for numbers. ``level`` and ``format`` (words on the
  answers' form, shown to the analyst) are optional.

agentnb ships one suite of its own, ``mini`` (made-up data, a dozen tasks, every
scorer): ``agentnb eval mini --out results``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from ..kernel.data import loader_code, variable_name
from .scoring import (
    SCORERS,
    Expected,
    Score,
    ScorerName,
    extract_final,
    extract_named,
    number_match,
)

__all__ = ["SHIPPED", "Suite", "SuiteKind", "Task", "load_suite", "shipped_suites"]

SuiteKind = Literal["dabench", "dabstep", "native"]

SHIPPED = Path(__file__).resolve().parent / "suites"
"""The suites agentnb ships, one folder each."""


def shipped_suites() -> list[str]:
    """The names of the suites agentnb ships (``agentnb eval NAME``)."""
    return sorted(p.name for p in SHIPPED.iterdir() if (p / "suite.jsonl").is_file())


# --- a task ------------------------------------------------------------------------

_NAMED_RULE = (
    "End the final report with the answer in exactly this format: each @name[value] as the "
    "answer format names it, with the value alone inside the brackets (no units, quotes or "
    "markdown)."
)
_FINAL_RULE = (
    "End the final report with one line `FINAL ANSWER: <answer>`: the answer alone, as the "
    "guidelines ask (no markdown)."
)


@dataclass(frozen=True)
class Task:
    """One task of a suite: what to ask, on which files, and the answers expected.

    Attributes:
        id: unique in its suite.
        question: what to find out.
        expected: the answers expected; one per ``@name[...]`` for a ``named`` task,
            one called ``answer`` for a ``final`` task.
        files: the data files (loaded as DataFrames; documents a DataFrame cannot
            hold, such as ``.md``, become text variables).
        style: how the report gives its answers: ``named`` (``@name[value]``) or
            ``final`` (a ``FINAL ANSWER:`` line).
        constraints: the benchmark's constraints (InfiAgent-DABench).
        format: the answer format the suite asks for (InfiAgent-DABench's ``format``,
            DABStep's ``guidelines``, a native task's ``format``).
        level: the benchmark's difficulty level, if it has one.
    """

    id: str
    question: str
    expected: tuple[Expected, ...]
    files: tuple[Path, ...] = ()
    style: Literal["named", "final"] = "named"
    constraints: str = ""
    format: str = ""
    level: str | None = None

    @cached_property
    def documents(self) -> dict[str, Path]:
        """Files the analyst gets as text (``str`` variables), by variable name."""
        texts = {}
        for path in self.files:
            try:
                loader_code({"x": path})
            except ConfigError:  # no DataFrame reader for it
                texts[variable_name(path)] = path
        return texts

    def data(self) -> list[Any]:
        """What ``run_with(data=...)`` gets: the tables as paths, the documents' text
        as a mapping of names to strings."""
        texts = self.documents
        tables: list[Any] = [str(p) for p in self.files if p not in texts.values()]
        if texts:
            tables.append({name: _read_text(path) for name, path in texts.items()})
        return tables

    def prompt(self) -> str:
        """The task as the analyst reads it, with the answer format the suite requires."""
        parts = [self.question.strip()]
        if self.constraints.strip():
            parts.append(f"Constraints: {self.constraints.strip()}")
        if self.documents:
            names = ", ".join(f"`{name}` ({path.name})" for name, path in self.documents.items())
            parts.append(f"Documents, loaded as text (str variables): {names}.")
        if self.style == "final":
            if self.format.strip():
                parts.append(f"Guidelines: {self.format.strip()}")
            parts.append(_FINAL_RULE)
            return "\n\n".join(parts)
        answer_format = self.format.strip() or " ".join(
            f"@{e.name}[{_shape(e)}]" for e in self.expected
        )
        parts.append(f"Answer format: {answer_format}")
        parts.append(_NAMED_RULE)
        return "\n\n".join(parts)

    def score(self, report: str | None) -> Score:
        """The answers of ``report`` (None: no approved report), each right or wrong."""
        if self.style == "final":
            found = {"answer": extract_final(report)} if report else {}
        else:
            found = dict(extract_named(report))
        answers = {e.name: found.get(e.name) for e in self.expected}
        right = {e.name: e.matches(answers[e.name]) for e in self.expected}
        return Score(answers, right)


def _shape(expected: Expected) -> str:
    """What a native task's answer looks like, for its answer format."""
    if expected.scorer == "list":
        return "comma-separated items"
    if expected.scorer == "number" or number_match(expected.as_text(), expected.as_text()):
        return "number"
    return "text"


def _read_text(path: Path) -> str:
    try:
        return path.read_text("utf-8", errors="replace")
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror or err}") from None


# --- a suite --------------------------------------------------------------------------


@dataclass(frozen=True)
class Suite:
    """The tasks of one benchmark (or of your own suite), in order."""

    name: str
    kind: SuiteKind
    path: Path
    tasks: tuple[Task, ...]

    def select(self, ids: Iterable[str] | None = None, limit: int | None = None) -> Suite:
        """Only the tasks ``ids`` (in the suite's order), then only the first ``limit``."""
        tasks = self.tasks
        if ids is not None:
            wanted = [str(i) for i in ids]
            known = {t.id for t in tasks}
            unknown = [i for i in wanted if i not in known]
            if unknown:
                raise ConfigError(
                    f"--ids: {self.name} has no task {', '.join(unknown[:5])}"
                    + (f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else "")
                )
            tasks = tuple(t for t in tasks if t.id in set(wanted))
        if limit is not None:
            if limit < 1:
                raise ConfigError(f"--limit must be at least 1, not {limit}")
            tasks = tasks[:limit]
        return replace(self, tasks=tasks)


def load_suite(where: str | Path) -> Suite:
    """The suite at ``where``: a folder or file in one of the layouts above, or the
    name of a suite agentnb ships (``mini``).

    Raises:
        ConfigError: nothing readable there; the message says what was looked for.
    """
    path = Path(where).expanduser()
    if not path.exists() and (SHIPPED / str(where) / "suite.jsonl").is_file():
        path = SHIPPED / str(where)
    if not path.exists():
        shipped = ", ".join(shipped_suites())
        raise ConfigError(
            f"suite {where}: no such file or folder (agentnb ships these suites: {shipped})"
        )
    path = path.resolve()
    if path.is_file():
        return _load_file(path)
    for folder in (path, path / "data", path / "examples" / "DA-Agent" / "data"):
        questions = sorted(folder.glob("da-*-questions.jsonl"))
        if questions:
            return _load_dabench(questions[0])
    for folder in (path, path / "data"):
        if (folder / "tasks" / "dev.jsonl").is_file():
            return _load_dabstep(folder / "tasks" / "dev.jsonl")
    if (path / "suite.jsonl").is_file():
        return _load_native(path / "suite.jsonl")
    raise ConfigError(
        f"suite {where}: found none of InfiAgent-DABench's da-dev-questions.jsonl (here, in "
        "data/ or in examples/DA-Agent/data/), DABStep's tasks/dev.jsonl (here or in data/), "
        "or a suite.jsonl of agentnb's own"
    )


def _load_file(path: Path) -> Suite:
    if re.fullmatch(r"da-.+-questions\.jsonl", path.name):
        return _load_dabench(path)
    records = _read_jsonl(path)
    first = records[0] if records else {}
    if "task_id" in first:
        return _load_dabstep(path, records)
    if "task" in first:
        return _load_native(path, records)
    raise ConfigError(
        f"suite {path}: its records have neither DABStep's task_id nor agentnb's task field"
    )


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror or err}") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            raise ConfigError(f"{path}, line {number}: not JSON ({err})") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{path}, line {number}: expected a JSON object")
        records.append(record)
    if not records:
        raise ConfigError(f"{path}: no tasks in it")
    return records


def _missing(files: Iterable[Path], where: Path) -> None:
    absent = sorted({str(p.relative_to(where)) for p in files if not p.is_file()})
    if absent:
        more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
        raise ConfigError(f"suite {where}: missing data file(s) {', '.join(absent[:5])}{more}")


# --- InfiAgent-DABench -------------------------------------------------------------------


def _load_dabench(questions_file: Path) -> Suite:
    split = questions_file.name.removesuffix("-questions.jsonl")  # da-dev
    folder = questions_file.parent
    labels_file = folder / f"{split}-labels.jsonl"
    tables = folder / f"{split}-tables"
    if not labels_file.is_file():
        raise ConfigError(
            f"suite {folder}: {labels_file.name} is missing (InfiAgent-DABench keeps the labels "
            "beside the questions)"
        )
    labels: dict[str, list[Any]] = {}
    for record in _read_jsonl(labels_file):
        labels[str(record.get("id"))] = record.get("common_answers") or []
    tasks = []
    for record in _read_jsonl(questions_file):
        task_id = str(record.get("id"))
        answers = labels.get(task_id)
        if not answers:
            raise ConfigError(f"suite {folder}: question {task_id} has no label in {labels_file}")
        tasks.append(
            Task(
                id=task_id,
                question=str(record.get("question", "")),
                expected=tuple(Expected(str(n), str(v), "exact") for n, v in answers),
                files=(tables / str(record.get("file_name", "")),),
                constraints=str(record.get("constraints") or ""),
                format=str(record.get("format") or ""),
                level=record.get("level"),
            )
        )
    _missing((f for t in tasks for f in t.files), folder)
    return Suite(f"InfiAgent-DABench ({split})", "dabench", questions_file, tuple(tasks))


# --- DABStep ------------------------------------------------------------------------------


def _load_dabstep(tasks_file: Path, records: list[dict[str, Any]] | None = None) -> Suite:
    records = records if records is not None else _read_jsonl(tasks_file)
    context = tasks_file.parent.parent / "context"
    if not context.is_dir():
        context = tasks_file.parent / "context"
    if not context.is_dir():
        raise ConfigError(
            f"suite {tasks_file}: DABStep's context/ folder (payments.csv, fees.json, "
            "manual.md, ...) is not beside the tasks folder"
        )
    files = tuple(sorted(p for p in context.iterdir() if p.is_file() and p.name[0] != "."))
    tasks = []
    for record in records:
        task_id = str(record.get("task_id"))
        answer = record.get("answer", record.get("answers"))
        if isinstance(answer, list):
            answer = ", ".join(str(a) for a in answer)
        if answer is None:
            raise ConfigError(
                f"suite {tasks_file}: task {task_id} has no answer (DABStep's leaderboard keeps "
                "the answers of its full set; run the dev set, tasks/dev.jsonl)"
            )
        tasks.append(
            Task(
                id=task_id,
                question=str(record.get("question", "")),
                expected=(Expected("answer", str(answer), "dabstep"),),
                files=files,
                style="final",
                format=str(record.get("guidelines") or ""),
                level=None if record.get("level") is None else str(record.get("level")),
            )
        )
    return Suite(f"DABStep ({tasks_file.stem})", "dabstep", tasks_file, tuple(tasks))


# --- agentnb's own -------------------------------------------------------------------------

_NAME = re.compile(r"^\w+$")


def _load_native(suite_file: Path, records: list[dict[str, Any]] | None = None) -> Suite:
    records = records if records is not None else _read_jsonl(suite_file)
    folder = suite_file.parent
    tasks = []
    seen: set[str] = set()
    for number, record in enumerate(records, 1):
        where = f"{suite_file}, task {record.get('id', number)}"
        task_id = str(record.get("id", number))
        if task_id in seen:
            raise ConfigError(f"{where}: the id {task_id!r} is used twice")
        seen.add(task_id)
        question = record.get("task")
        if not isinstance(question, str) or not question.strip():
            raise ConfigError(f"{where}: 'task' must say what to find out")
        data = record.get("data") or []
        data = [data] if isinstance(data, str) else data
        files = tuple((folder / str(f)).resolve() for f in data)
        default_scorer = str(record.get("scorer", "auto"))
        tolerance = _number(record.get("tolerance", 1e-6), where, "tolerance")
        rel = _number(record.get("rel_tolerance", 0.0), where, "rel_tolerance")
        if "answers" in record:
            answers = record["answers"]
            if not isinstance(answers, Mapping) or not answers:
                raise ConfigError(f"{where}: 'answers' must map answer names to values")
            style: Literal["named", "final"] = "named"
        elif "answer" in record:
            answers, style = {"answer": record["answer"]}, "final"
        else:
            raise ConfigError(f"{where}: give the expected 'answers' (or one 'answer')")
        expected = tuple(
            _expected(str(name), spec, default_scorer, tolerance, rel, where)
            for name, spec in answers.items()
        )
        tasks.append(
            Task(
                id=task_id,
                question=question,
                expected=expected,
                files=files,
                style=style,
                format=str(record.get("format") or ""),
                level=None if record.get("level") is None else str(record.get("level")),
            )
        )
    _missing((f for t in tasks for f in t.files), folder)
    return Suite(folder.name, "native", suite_file, tuple(tasks))


def _number(value: Any, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{where}: {what} must be a number of at least 0, not {value!r}")
    return float(value)


def _expected(
    name: str, spec: Any, scorer: str, tolerance: float, rel: float, where: str
) -> Expected:
    if not _NAME.match(name):
        raise ConfigError(f"{where}: the answer name {name!r} must be letters, digits and _")
    if isinstance(spec, Mapping):
        if "value" not in spec:
            raise ConfigError(f"{where}: answer {name!r} gives no 'value'")
        value = spec["value"]
        scorer = str(spec.get("scorer", scorer))
        tolerance = _number(spec.get("tolerance", tolerance), where, "tolerance")
        rel = _number(spec.get("rel_tolerance", rel), where, "rel_tolerance")
    else:
        value = spec
    if scorer == "auto":
        scorer = _auto(value)
    if scorer not in SCORERS:
        raise ConfigError(
            f"{where}: scorer {scorer!r} is not one of auto, {', '.join(sorted(SCORERS))}"
        )
    if isinstance(value, Mapping) or value is None:
        raise ConfigError(f"{where}: answer {name!r} must be a number, a text or a list")
    if isinstance(value, Sequence) and not isinstance(value, str):
        value = list(value)
    chosen: ScorerName = scorer  # type: ignore[assignment]
    return Expected(name, value, chosen, tolerance, rel)


def _auto(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "number"
    return "text"

"""What an evaluation produced: its records, its summary, a report notebook, a comparison.

An evaluation's folder holds ``run.json`` (the suite, the tasks chosen, the models and
options), ``results.jsonl`` (one record per finished task, appended as it finishes; a
task run again gets a new record, and the last one counts), ``summary.json``,
``summary.md`` and ``report.ipynb`` (the summary and a chart of the accuracies).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import statistics
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = [
    "CHART",
    "METRICS",
    "chart_png",
    "compare",
    "read_records",
    "report_notebook",
    "summarise",
    "summary_markdown",
    "write_comparison",
    "write_summary",
]

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
RUN = "run.json"

METRICS = (
    ("accuracy_by_question", "by question"),
    ("accuracy_by_sub_question", "by sub-question"),
    ("accuracy_proportional", "proportional"),
)
"""The three accuracies InfiAgent-DABench's scorer reports, with their short names."""


# --- records ----------------------------------------------------------------------------


def results_file(path: str | Path) -> Path:
    """``results.jsonl`` of an evaluation's folder, or the file given."""
    path = Path(path).expanduser()
    return path / RESULTS if path.is_dir() else path


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of ``results.jsonl`` (or of the folder holding it), the last one of
    each task, in the order the tasks first finished. A line cut short by a crash
    is skipped."""
    file = results_file(path)
    if not file.is_file():
        return []
    latest: dict[str, dict[str, Any]] = {}
    for line in file.read_text("utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "id" in record:
            latest[str(record["id"])] = record
    return list(latest.values())


def append_record(out: Path, record: Mapping[str, Any]) -> None:
    """Add one record to ``results.jsonl``, on disk before this returns."""
    with (out / RESULTS).open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


# --- the summary ------------------------------------------------------------------------------


def _ratio(part: float, whole: int) -> float | None:
    return part / whole if whole else None


def summarise(
    records: Iterable[Mapping[str, Any]],
    *,
    tasks: Sequence[str] | None = None,
    suite: str = "",
    kind: str = "",
    label: str = "",
) -> dict[str, Any]:
    """The numbers of an evaluation: accuracies as fractions (InfiAgent-DABench's three:
    by question, by sub-question, proportional), stop reasons, tokens, cost, time.

    Only the records of ``tasks`` (all when None) count. A task that ended without an
    approved answer counts as answered wrong: unlike InfiAgent-DABench's own script,
    which leaves questions without a response out, so numbers are never flattered.
    """
    chosen = [r for r in records if tasks is None or str(r["id"]) in set(tasks)]
    scored = len(chosen)
    correct = sum(bool(r.get("correct")) for r in chosen)
    subs = [bool(v) for r in chosen for v in (r.get("right") or {}).values()]
    proportional = sum(float(r.get("score") or 0.0) for r in chosen)
    per_agent: dict[str, dict[str, int]] = {}
    cost_per_agent: dict[str, float | None] = {}
    for record in chosen:
        for agent, usage in (record.get("tokens") or {}).items():
            sums = per_agent.setdefault(agent, {"prompt": 0, "completion": 0, "calls": 0})
            for key in sums:
                sums[key] += int(usage.get(key, 0))
        for agent, dollars in (record.get("cost") or {}).items():
            known = cost_per_agent.get(agent, 0.0)
            cost_per_agent[agent] = None if known is None or dollars is None else known + dollars
    costs = [r.get("cost_total") for r in chosen]
    cost = None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)
    times = [float(r.get("wall_time") or 0.0) for r in chosen]
    levels: dict[str, dict[str, Any]] = {}
    for record in chosen:
        if record.get("level") is None:
            continue
        level = levels.setdefault(str(record["level"]), {"tasks": 0, "correct": 0})
        level["tasks"] += 1
        level["correct"] += bool(record.get("correct"))
    for level in levels.values():
        level["accuracy"] = _ratio(level["correct"], level["tasks"])
    total = len(tasks) if tasks is not None else scored
    prompt_tokens = sum(a["prompt"] for a in per_agent.values())
    completion_tokens = sum(a["completion"] for a in per_agent.values())
    return {
        "suite": suite,
        "kind": kind,
        "label": label,
        "tasks": total,
        "scored": scored,
        "complete": scored >= total,
        "correct": correct,
        "accuracy": _ratio(correct, scored),
        "accuracy_by_question": _ratio(correct, scored),
        "accuracy_by_sub_question": _ratio(sum(subs), len(subs)),
        "accuracy_proportional": _ratio(proportional, scored),
        "by_level": dict(sorted(levels.items())),
        "answered": sum(r.get("status") == "answered" for r in chosen),
        "errors": sum(r.get("status") == "error" for r in chosen),
        "stop_reasons": dict(Counter(str(r.get("stop_reason")) for r in chosen).most_common()),
        "tokens": {
            "prompt": prompt_tokens,
            "completion": completion_tokens,
            "total": prompt_tokens + completion_tokens,
            "per_agent": per_agent,
        },
        "cost": cost,
        "cost_per_agent": cost_per_agent,
        "cost_per_correct": cost / correct if cost is not None and correct else None,
        "median_time": statistics.median(times) if times else None,
        "total_time": sum(times),
    }


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.4f}"


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} s"


def summary_rows(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The summary as (what, value) rows, as the table and the notebook show it."""
    rows = [
        ("tasks", f"{summary['scored']} of {summary['tasks']} run"),
        ("correct", str(summary["correct"])),
    ]
    rows += [(f"accuracy {name}", _pct(summary[key])) for key, name in METRICS]
    for level, numbers in summary.get("by_level", {}).items():
        rows.append(
            (f"  {level}", f"{_pct(numbers['accuracy'])} ({numbers['correct']}/{numbers['tasks']})")
        )
    tokens = summary["tokens"]
    rows += [
        ("tokens", f"{tokens['total']:,} ({tokens['prompt']:,} in, {tokens['completion']:,} out)"),
        ("cost", _money(summary["cost"])),
        ("cost per correct answer", _money(summary["cost_per_correct"])),
        ("median time per task", _seconds(summary["median_time"])),
        ("stop reasons", ", ".join(f"{k} {v}" for k, v in summary["stop_reasons"].items()) or "–"),
    ]
    return rows


def summary_markdown(summaries: Sequence[Mapping[str, Any]]) -> str:
    """One column per run: the table of ``summary.md`` and of the report notebook."""
    head = "| | " + " | ".join(s.get("label") or f"run {i + 1}" for i, s in enumerate(summaries))
    lines = [head + " |", "|---" * (len(summaries) + 1) + "|"]
    columns = [summary_rows(s) for s in summaries]
    names = [name for name, _ in columns[0]]
    for name in names:
        cells = [dict(col).get(name, "–") for col in columns]
        lines.append(f"| {name.strip()} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- the report notebook ------------------------------------------------------------------------

CHART = """\
import textwrap

from matplotlib.figure import Figure

metrics = [
    ("accuracy_by_question", "by question"),
    ("accuracy_by_sub_question", "by sub-question"),
    ("accuracy_proportional", "proportional"),
]
fig = Figure(figsize=(max(5, 2.4 * len(summaries) + 2), 3.4), layout="constrained")
ax = fig.add_subplot()
width = 0.8 / len(metrics)
for i, (key, name) in enumerate(metrics):
    values = [100 * (s[key] or 0) for s in summaries]
    xs = [j + (i - (len(metrics) - 1) / 2) * width for j in range(len(summaries))]
    bars = ax.bar(xs, values, width, label=name)
    ax.bar_label(bars, fmt="%.0f%%", fontsize=8)
names = [textwrap.fill(s["label"] or f"run {j + 1}", 28) for j, s in enumerate(summaries)]
ax.set_xticks(range(len(summaries)), names, fontsize=8)
ax.set_xlim(-0.7, len(summaries) - 0.3)
ax.set_ylim(0, 120)
ax.set_ylabel("accuracy (%)")
ax.set_title(summaries[0]["suite"])
ax.legend(loc="upper right", fontsize=8, ncols=3)
fig"""
"""The chart's code: bars of the three accuracies per run, from ``summaries``. The
report notebook holds it and, as its output, the chart drawn when the notebook was
built (no kernel needed to see it)."""


def chart_png(summaries: Sequence[Mapping[str, Any]]) -> bytes:
    """The chart of :data:`CHART`, drawn here (matplotlib's Agg; pyplot and its global
    backend are left alone)."""
    namespace: dict[str, Any] = {"summaries": list(summaries)}
    exec(compile(CHART, "<chart>", "exec"), namespace)
    buffer = io.BytesIO()
    namespace["fig"].savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def report_notebook(
    summaries: Sequence[Mapping[str, Any]],
    records: Sequence[Sequence[Mapping[str, Any]]] = (),
    *,
    source: str = "summary.json",
) -> Any:
    """A notebook: the summary table, the chart (code and drawn image), and the tasks
    that were not answered right. ``source`` is the JSON file its code reads the
    summaries from (``summary.json``; a comparison's ``compare.json``)."""
    import nbformat

    v4: Any = nbformat.v4  # untyped
    title = summaries[0]["suite"] if summaries else "evaluation"
    cells = [
        v4.new_markdown_cell(f"# agentnb eval: {title}\n\n{summary_markdown(summaries)}"),
    ]
    load = (
        "import json\nfrom pathlib import Path\n\n"
        f"data = json.loads(Path({source!r}).read_text())\n"
        "summaries = data['runs'] if 'runs' in data else [data]"
    )
    cells.append(v4.new_code_cell(load))
    chart = v4.new_code_cell(CHART)
    png = base64.b64encode(chart_png(summaries)).decode() if summaries else ""
    if png:
        chart.outputs = [
            v4.new_output("display_data", data={"image/png": png, "text/plain": "<accuracy chart>"})
        ]
    cells.append(chart)
    for summary, runs in zip(summaries, records, strict=False):
        missed = [r for r in runs if not r.get("correct")]
        if not missed:
            continue
        lines = [
            f"## Not answered right: {summary.get('label') or ''} ({len(missed)})",
            "",
            "| task | status | answers | expected |",
            "|---|---|---|---|",
        ]
        for record in missed[:200]:
            given = ", ".join(f"{k}={v}" for k, v in (record.get("answers") or {}).items())
            wanted = ", ".join(f"{k}={v}" for k, v in (record.get("expected") or {}).items())
            status = str(record.get("stop_reason"))
            lines.append(f"| {record['id']} | {status} | {_cell(given)} | {_cell(wanted)} |")
        if len(missed) > 200:
            lines.append(f"\n… and {len(missed) - 200} more (results.jsonl has them all)")
        cells.append(v4.new_markdown_cell("\n".join(lines)))
    notebook = v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return notebook


def _writes(notebook: Any) -> str:
    import nbformat

    writes: Any = nbformat.writes  # untyped
    text: str = writes(notebook)
    return text


def _cell(text: str) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= 120 else text[:119] + "…"


def write_summary(out: str | Path) -> dict[str, Any]:
    """Summarise the evaluation in ``out`` (its ``run.json`` and ``results.jsonl``) into
    ``summary.json``, ``summary.md`` and ``report.ipynb``; return the summary."""
    folder = Path(out).expanduser()
    run = read_json(folder / RUN)
    records = read_records(folder)
    tasks = run.get("tasks")
    order = {task_id: i for i, task_id in enumerate(tasks or [])}
    records.sort(key=lambda r: order.get(str(r["id"]), len(order)))
    summary = summarise(
        records,
        tasks=tasks,
        suite=run.get("suite", ""),
        kind=run.get("kind", ""),
        label=run.get("label", ""),
    )
    summary["models"] = run.get("models", {})
    summary["critic"] = run.get("critic", True)
    write_atomically(folder / SUMMARY, json.dumps(summary, indent=2) + "\n")
    write_atomically(folder / "summary.md", summary_markdown([summary]) + "\n")
    chosen = [r for r in records if tasks is None or str(r["id"]) in set(tasks)]
    notebook = report_notebook([summary], [chosen])
    write_atomically(folder / "report.ipynb", _writes(notebook))
    return summary


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from None
    return data if isinstance(data, dict) else {}


# --- two runs side by side ------------------------------------------------------------------------


def _load_run(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    file = results_file(path)
    if not file.is_file():
        raise ConfigError(f"--compare {path}: no results.jsonl there")
    run = read_json(file.parent / RUN)
    records = read_records(file)
    label = run.get("label") or next((r.get("label") for r in records if r.get("label")), "")
    summary = summarise(
        records,
        tasks=run.get("tasks") if run.get("tasks") and file.name == RESULTS else None,
        suite=run.get("suite", ""),
        kind=run.get("kind", ""),
        label=label or file.parent.name,
    )
    return summary, records


def compare(a: str | Path, b: str | Path) -> dict[str, Any]:
    """Two evaluations side by side: each one's summary (``runs``), and on the tasks both
    ran, how many each got right that the other did not (``both``, ``only_a``,
    ``only_b``, ``neither``, with the ids of the tasks where they differ)."""
    (summary_a, records_a), (summary_b, records_b) = _load_run(a), _load_run(b)
    if summary_a["label"] == summary_b["label"]:
        summary_a["label"] += " (A)"
        summary_b["label"] += " (B)"
    right_a = {str(r["id"]): bool(r.get("correct")) for r in records_a}
    right_b = {str(r["id"]): bool(r.get("correct")) for r in records_b}
    common = [task for task in right_a if task in right_b]
    only_a = [t for t in common if right_a[t] and not right_b[t]]
    only_b = [t for t in common if right_b[t] and not right_a[t]]
    return {
        "runs": [summary_a, summary_b],
        "sources": [str(results_file(a)), str(results_file(b))],
        "common": len(common),
        "both": sum(right_a[t] and right_b[t] for t in common),
        "neither": sum(not right_a[t] and not right_b[t] for t in common),
        "only_a": only_a,
        "only_b": only_b,
    }


def write_comparison(comparison: Mapping[str, Any], out: str | Path) -> Path:
    """``compare.json``, ``compare.md`` and ``compare.ipynb`` (both runs in one chart)
    of a :func:`compare` result, in the folder ``out``; returns the notebook's path."""
    folder = Path(out).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    runs = comparison["runs"]
    write_atomically(folder / "compare.json", json.dumps(comparison, indent=2) + "\n")
    write_atomically(folder / "compare.md", summary_markdown(runs) + "\n")
    records = [read_records(source) for source in comparison["sources"]]
    notebook = report_notebook(runs, records, source="compare.json")
    write_atomically(folder / "compare.ipynb", _writes(notebook))
    return folder / "compare.ipynb"

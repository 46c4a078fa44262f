"""An evaluation's progress on a terminal: a bar with the accuracy so far, tokens and
cost, and one line per finished task (also where the output is a file or a pipe)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from .report import METRICS, summary_rows
from .runner import Tally
from .suites import Suite, Task

__all__ = ["ProgressView", "summary_table"]


def _stats(tally: Tally) -> str:
    accuracy = "–" if tally.accuracy is None else f"{100 * tally.accuracy:.1f}%"
    cost = "cost unknown" if tally.cost is None else f"${tally.cost:.4f}"
    running = f" · {tally.running} running" if tally.running else ""
    score = f"accuracy {accuracy} ({tally.correct}/{tally.done})"
    return f"{score} · {tally.tokens:,} tokens · {cost}{running}"


class ProgressView:
    """A progress bar (on a terminal) and a line per finished task on ``console``."""

    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[stats]}"),
            console=console,
            transient=True,
        )
        self._bar: TaskID | None = None

    def start(self, suite: Suite, tally: Tally) -> None:
        where = f"{suite.name}: {tally.total} tasks"
        if tally.skipped:
            where += f", {tally.skipped} scored before (skipped)"
        self.console.print(Text(f"agentnb eval · {where}", style="bold"))
        if self.console.is_terminal:
            self._progress.start()
            self._bar = self._progress.add_task(
                "eval", total=tally.total, completed=tally.done, stats=_stats(tally)
            )

    def task_started(self, task: Task, tally: Tally) -> None:
        self._update(tally)

    def task_finished(self, record: Mapping[str, Any], tally: Tally) -> None:
        self._update(tally)
        if self.quiet:
            return
        line = Text()
        if record.get("correct"):
            line.append("✔ ", style="green")
        else:
            line.append("✘ ", style="red")
        line.append(str(record["id"]), style="bold")
        right = record.get("right") or {}
        if len(right) > 1:
            line.append(f"  {sum(right.values())}/{len(right)} right")
        if record.get("status") != "answered":
            message = str(record.get("stop_message") or "")
            message = message if len(message) <= 90 else message[:89] + "…"
            line.append(f"  {record.get('stop_reason')}: {message}", style="yellow")
        elif not record.get("correct"):
            wrong = [k for k, ok in right.items() if not ok]
            given = (record.get("answers") or {}).get(wrong[0]) if wrong else None
            wanted = (record.get("expected") or {}).get(wrong[0]) if wrong else None
            if wrong:
                line.append(f"  {wrong[0]}: {given!r}, expected {wanted!r}", style="dim")
        line.append(f"  {float(record.get('wall_time') or 0):.1f} s", style="dim")
        line.append(f"  {int(record.get('tokens_total') or 0):,} tokens", style="dim")
        done = f"{tally.done}/{tally.total}"
        accuracy = "" if tally.accuracy is None else f" · {100 * tally.accuracy:.1f}% right"
        line.append(f"   [{done}{accuracy}]", style="dim")
        self.console.print(line, soft_wrap=True)

    def _update(self, tally: Tally) -> None:
        if self._bar is not None:
            self._progress.update(self._bar, completed=tally.done, stats=_stats(tally))

    def close(self) -> None:
        if self._bar is not None:
            self._progress.stop()
            self._bar = None


def summary_table(summaries: list[Mapping[str, Any]], title: str = "") -> Table:
    """The summary (or several side by side) as a table."""
    table = Table(title=title or None, title_justify="left", show_edge=False)
    table.add_column("")
    for i, summary in enumerate(summaries):
        table.add_column(str(summary.get("label") or f"run {i + 1}"), justify="right")
    columns = [dict(summary_rows(s)) for s in summaries]
    accuracies = {f"accuracy {name}" for _, name in METRICS}
    for name in dict(summary_rows(summaries[0])):
        style = "bold" if name == f"accuracy {METRICS[0][1]}" else None
        cells = [col.get(name, "–") for col in columns]
        table.add_row(name, *cells, style=style if name in accuracies else None)
    return table

"""``agentnb.evaluate``: how often agentnb's answers are right, with which model, at what cost.

Runs a suite of tasks with known answers, each headless in its own managed kernel,
N at a time, and scores the answers as the benchmark scores them::

    import agentnb

    result = agentnb.evaluate("mini", out="results/gpt-4o-mini", model="gpt-4o-mini",
                              concurrency=4)
    print(result.summary["accuracy_by_question"], result.summary["cost_per_correct"])

Suites: InfiAgent-DABench and DABStep in their published layouts (a local copy;
agentnb ships neither), and agentnb's own JSONL format (see :mod:`.suites`). The
results folder gets ``results.jsonl`` (a record per task), ``summary.json``,
``summary.md`` and ``report.ipynb`` (see :mod:`.report`); running the same command
again resumes it. :func:`compare` puts two results folders side by side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..kernel import KernelConfig
from .report import compare, read_records, summarise, write_summary
from .runner import EvalAborted, EvalResult, EvalView, aevaluate, evaluate_with
from .scoring import Expected, Score, dabench_equal, dabstep_match
from .suites import Suite, Task, load_suite, shipped_suites

__all__ = [
    "EvalAborted",
    "EvalResult",
    "EvalView",
    "Expected",
    "Score",
    "Suite",
    "Task",
    "aevaluate",
    "compare",
    "dabench_equal",
    "dabstep_match",
    "evaluate",
    "evaluate_with",
    "load_suite",
    "read_records",
    "shipped_suites",
    "summarise",
    "write_summary",
]


def evaluate(
    suite: str | Path | Suite,
    *,
    out: str | Path,
    concurrency: int = 1,
    rerun_failed: bool = False,
    critic: bool = True,
    ids: Sequence[str] | None = None,
    limit: int | None = None,
    label: str | None = None,
    progress: bool = True,
    kernel_config: KernelConfig | None = None,
    api_key: str | None = None,
    prices: Mapping[str, tuple[float, float]] | None = None,
    **options: Any,
) -> EvalResult:
    """Run a suite and score it; return its summary and records.

    Args:
        suite: a folder or file in InfiAgent-DABench's, DABStep's or agentnb's own
            layout, a :class:`Suite`, or the name of a shipped suite (``"mini"``).
        out: the results folder. An evaluation already there is resumed: tasks it
            scored are skipped (with the same models, protocol and critic only).
        concurrency: tasks run at a time, each with its own managed kernel (on
            ``gateway`` when given: how a large suite spreads over a cluster).
        rerun_failed: run again the tasks that ended without an answer (errors,
            time-outs, budgets, loop guards).
        critic: False runs the analyst alone, with no review of steps or report.
        ids, limit: only these tasks; only the first ``limit`` of them.
        label: the run's name in tables and charts (default: its models and settings).
        progress: show a progress bar and a line per task on stderr.
        kernel_config, api_key, prices: as for :func:`agentnb.run`.
        **options: the run options of :func:`agentnb.run`, applied to every task:
            ``model``, ``analyst_model``, ``critic_model``, ``base_url``, ``protocol``,
            ``max_turns``, ``budget_tokens`` and ``time_limit`` (per task),
            ``step_timeout``, ``gateway``, ``sandbox``, ...

    Raises:
        ConfigError: the suite cannot be read, an option is wrong, or ``out`` holds an
            evaluation with other models. Nothing has run then.
        EvalAborted: the first tasks all failed the same way (a wrong endpoint, a
            sandbox that cannot start); their records are kept.

    A Ctrl-C stops the tasks under way; those that finished are kept and summarised.
    """
    from rich.console import Console

    from .._sync import SyncBridge
    from .view import ProgressView

    view = ProgressView(Console(stderr=True)) if progress else None
    bridge = SyncBridge()
    try:
        return bridge.run(
            aevaluate(
                suite,
                out=out,
                concurrency=concurrency,
                rerun_failed=rerun_failed,
                critic=critic,
                ids=ids,
                limit=limit,
                label=label,
                view=view,
                kernel_config=kernel_config,
                api_key=api_key,
                prices=prices,
                **options,
            )
        )
    except KeyboardInterrupt:
        if Path(out, "run.json").is_file():
            write_summary(out)  # what finished, summarised, even if the cleanup was cut short
        raise
    finally:
        bridge.close()

"""Running a suite: each task a headless run in its own managed kernel, N at a time.

Every finished task is appended to ``results.jsonl`` at once, so a stopped
evaluation (Ctrl-C, a crash) keeps what finished, and running it again skips the
tasks already scored (``rerun_failed`` runs again those that ended without an
answer).

One module past the usual length on purpose: scheduling, resuming and recording the
tasks of a suite share one results file.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from ..chat.events import Event, RunStarted
from ..chat.group import RunResult
from ..chat.roles import ANALYST, CRITIC
from ..errors import AgentnbError, ConfigError
from ..kernel import KernelConfig
from ..models.base import ModelClient
from ..options import Resolved, RunOptions, specs
from . import report
from .suites import Suite, Task, load_suite

__all__ = ["EvalResult", "EvalView", "Tally", "aevaluate", "evaluate_with"]

FAIL_FAST = 3
"""Tasks that must all fail alike, with nothing answered yet, before an evaluation stops
(a wrong endpoint or a sandbox that cannot start fails every task the same way)."""

HARD_LIMIT_GRACE = 120.0
"""Seconds past ``time_limit`` after which a task that did not end is abandoned."""

_NOT_RUN_OPTIONS = {
    "out": "the results folder is eval's own --out",
    "transcript": "each task's transcript goes into the results folder",
}


@dataclass
class Tally:
    """The evaluation so far, for a progress view."""

    total: int
    """Tasks chosen."""
    done: int = 0
    """Tasks with a record (earlier runs' included)."""
    correct: int = 0
    tokens: int = 0
    cost: float | None = 0.0
    running: int = 0
    skipped: int = 0
    """Tasks already scored by an earlier run of the same folder."""

    def add(self, record: Mapping[str, Any]) -> None:
        self.done += 1
        self.correct += bool(record.get("correct"))
        self.tokens += int(record.get("tokens_total") or 0)
        cost = record.get("cost_total")
        self.cost = None if self.cost is None or cost is None else self.cost + cost

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.done if self.done else None


class EvalView(Protocol):
    """Shows an evaluation's progress (:class:`agentnb.evaluate.view.ProgressView`)."""

    def start(self, suite: Suite, tally: Tally) -> None: ...
    def task_started(self, task: Task, tally: Tally) -> None: ...
    def task_finished(self, record: Mapping[str, Any], tally: Tally) -> None: ...
    def close(self) -> None: ...


@dataclass
class EvalResult:
    """What :func:`agentnb.evaluate` produced.

    Attributes:
        out: the results folder.
        summary: ``summary.json``'s content: accuracies as fractions
            (``accuracy_by_question``, ``accuracy_by_sub_question``,
            ``accuracy_proportional``), stop reasons, tokens, cost, times.
        records: one per task chosen that has finished, in the suite's order.
        ran: the tasks this call ran (the others were scored before).
        aborted: why the evaluation stopped early, if it did.
    """

    out: Path
    summary: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    ran: int = 0
    aborted: str | None = None

    @property
    def results_path(self) -> Path:
        return self.out / report.RESULTS

    @property
    def summary_path(self) -> Path:
        return self.out / report.SUMMARY

    @property
    def notebook_path(self) -> Path:
        return self.out / "report.ipynb"


class EvalAborted(AgentnbError):
    """The first tasks all failed the same way: the rest would too."""


async def aevaluate(
    suite: str | Path | Suite,
    *,
    out: str | Path,
    concurrency: int = 1,
    rerun_failed: bool = False,
    critic: bool = True,
    ids: Sequence[str] | None = None,
    limit: int | None = None,
    label: str | None = None,
    view: EvalView | None = None,
    kernel_config: KernelConfig | None = None,
    api_key: str | None = None,
    prices: Mapping[str, tuple[float, float]] | None = None,
    **options: Any,
) -> EvalResult:
    """:func:`agentnb.evaluate` as a coroutine."""
    known = specs()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"evaluate() takes no option {', '.join(map(repr, unknown))}")
    for name, why in _NOT_RUN_OPTIONS.items():
        if options.get(name) is not None:
            raise ConfigError(f"evaluate() takes no {name!r}: {why}")
    if options.get("approve") not in (None, "never"):
        raise ConfigError("evaluate() runs every task headless: approve is always 'never'")
    # approve is never, whatever $AGENTNB_APPROVE or configuration say
    resolved = RunOptions.from_keywords({**options, "approve": "never"})
    return await evaluate_with(
        suite,
        resolved,
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
    )


def _model_name(spec: str | ModelClient | None) -> str | None:
    if spec is None or isinstance(spec, str):
        return spec
    return spec.name


def _models(options: RunOptions, critic: bool) -> dict[str, str | None]:
    models = {"analyst": _model_name(options.analyst_model or options.model)}
    if critic:
        models["critic"] = _model_name(options.critic_model or options.model)
    return models


def default_label(options: RunOptions, critic: bool) -> str:
    """``gpt-4o``, ``gpt-4o + critic gpt-4o-mini``, ``gpt-4o, no critic``, ``…, text``."""
    models = _models(options, critic)
    analyst = str(models["analyst"])
    if ":" in analyst:  # scripted:/long/path/replies.yaml
        kind, _, rest = analyst.partition(":")
        analyst = f"{kind}:{Path(rest).name}"
    words = analyst
    if not critic:
        words += ", no critic"
    elif models.get("critic") != models["analyst"]:
        words += f" + critic {models['critic']}"
    if options.protocol != "auto":
        words += f", {options.protocol}"
    return words


def _check(resolved: Resolved, critic: bool, concurrency: int) -> None:
    options, sources = resolved.options, resolved.sources
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"--concurrency must be a whole number of 1 or more, not {concurrency!r}")
    if options.approve not in (None, "never"):
        raise ConfigError(
            "agentnb eval runs every task headless: leave --approve out (it is never)"
        )
    if not critic and sources.get("critic_model") in ("flag", "argument"):
        raise ConfigError("--no-critic and --critic-model contradict each other: give one")
    missing = [role for role, name in _models(options, critic).items() if name is None]
    if missing:
        raise ConfigError(
            f"no model given for the {' and the '.join(missing)}: pass --model NAME (and "
            "--base-url URL for your endpoint), or set AGENTNB_MODEL"
        )


def _fingerprint(options: RunOptions, critic: bool, suite: Suite) -> dict[str, Any]:
    """What must not change when an evaluation's folder is resumed."""
    return {
        "suite_path": str(suite.path),
        "models": _models(options, critic),
        "critic": critic,
        "protocol": options.protocol,
    }


_SAFE = re.compile(r"[^\w.-]+")


def _transcript_path(folder: Path, task: Task) -> Path:
    stem = _SAFE.sub("_", task.id).strip("._") or "task"
    path = folder / f"{stem}.jsonl"
    attempt = 1
    while path.exists():
        attempt += 1
        path = folder / f"{stem}.{attempt}.jsonl"
    return path


async def evaluate_with(
    suite: str | Path | Suite,
    resolved: Resolved,
    *,
    out: str | Path,
    concurrency: int = 1,
    rerun_failed: bool = False,
    critic: bool = True,
    ids: Sequence[str] | None = None,
    limit: int | None = None,
    label: str | None = None,
    view: EvalView | None = None,
    kernel_config: KernelConfig | None = None,
    api_key: str | None = None,
    prices: Mapping[str, tuple[float, float]] | None = None,
    on_event: Callable[[Task, Event], None] | None = None,
) -> EvalResult:
    """:func:`aevaluate` with its run options resolved already (by the ``eval`` flags)."""
    whole = suite if isinstance(suite, Suite) else load_suite(suite)
    chosen = whole.select(ids, limit)
    _check(resolved, critic, concurrency)
    options = resolved.options
    folder = Path(out).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {out}: is a file; give a folder for the results")
    folder.mkdir(parents=True, exist_ok=True)
    transcripts = folder / "transcripts"
    transcripts.mkdir(exist_ok=True)

    fingerprint = _fingerprint(options, critic, chosen)
    run_file = folder / report.RUN
    earlier = report.read_json(run_file)
    if earlier:
        changed = [k for k, v in fingerprint.items() if k in earlier and earlier[k] != v]
        if changed:
            said = "; ".join(f"{k} was {earlier[k]!r}, now {fingerprint[k]!r}" for k in changed)
            raise ConfigError(
                f"--out {out} holds an evaluation with other settings ({said}): give another "
                "--out folder to compare runs (agentnb eval --compare A B)"
            )
    label = label or earlier.get("label") or default_label(options, critic)
    # the summary covers the tasks chosen now and those chosen before (a first run of
    # --limit 10, then of the whole suite; a whole suite, then --ids X --rerun-failed)
    covered = {t.id for t in chosen.tasks} | set(earlier.get("tasks") or [])
    task_ids = [t.id for t in whole.tasks if t.id in covered]
    run_info = {
        **fingerprint,
        "suite": chosen.name,
        "kind": chosen.kind,
        "label": label,
        "tasks": task_ids,
        "options": {
            name: getattr(options, name)
            for name in ("max_turns", "budget_tokens", "time_limit", "step_timeout", "gateway")
        },
        "started": earlier.get("started") or _now(),
    }
    report.write_atomically(run_file, json.dumps(run_info, indent=2) + "\n")

    done = {str(r["id"]): r for r in report.read_records(folder)}
    plan = [
        t
        for t in chosen.tasks
        if t.id not in done or (rerun_failed and done[t.id].get("status") != "answered")
    ]
    tally = Tally(total=len(chosen.tasks))
    for task in chosen.tasks:
        if task.id in done and task not in plan:
            tally.add(done[task.id])
            tally.skipped += 1
    roles = [ANALYST, CRITIC] if critic else [ANALYST]
    shared = _SharedClients(options)
    resolved = Resolved(shared.options, resolved.sources)
    failures: list[dict[str, Any]] = []
    answered_any = False
    aborted: str | None = None
    ran = 0

    async def one(task: Task) -> dict[str, Any]:
        transcript = _transcript_path(transcripts, task)
        per_task = Resolved(resolved.options.changed(transcript=str(transcript)), resolved.sources)
        return await run_task(
            task,
            per_task,
            roles=roles,
            label=label,
            kernel_config=kernel_config,
            api_key=api_key,
            prices=prices,
            transcript=transcript,
            on_event=(lambda event: on_event(task, event)) if on_event else None,
        )

    queue = list(plan)

    async def worker() -> None:
        nonlocal answered_any, aborted, ran
        while queue and aborted is None:
            task = queue.pop(0)
            tally.running += 1
            if view:
                view.task_started(task, tally)
            try:
                record = await one(task)
            finally:
                tally.running -= 1
            report.append_record(folder, record)
            ran += 1
            tally.add(record)
            if view:
                view.task_finished(record, tally)
            if record["status"] == "answered":
                answered_any = True
            elif not answered_any:
                failures.append(record)
                aborted = aborted or _alike(failures)

    if view:
        view.start(chosen, tally)
    workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(plan)))]
    try:
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await shared.aclose()
        if view:
            view.close()
        summary = report.write_summary(folder)
    order = {t: i for i, t in enumerate(task_ids)}
    records = sorted(
        (r for r in report.read_records(folder) if str(r["id"]) in order),
        key=lambda r: order[str(r["id"])],
    )
    result = EvalResult(folder, summary, records, ran, aborted)
    if aborted:
        raise EvalAborted(aborted)
    return result


def _alike(failures: list[dict[str, Any]]) -> str | None:
    """Why to stop, when the first tasks all failed the same way (nothing answered)."""
    if len(failures) < FAIL_FAST:
        return None
    kinds = {f["stop_reason"] for f in failures}
    messages = {f["stop_message"] for f in failures}
    if len(messages) == 1 and kinds <= {"model_error", "kernel_error", "error"}:
        return (
            f"stopped: the first {len(failures)} tasks all failed the same way "
            f"({failures[0]['stop_reason']}: {failures[0]['stop_message']}); fix that and run "
            "the same command again (finished tasks are kept; --rerun-failed retries these)"
        )
    return None


class _SharedClients:
    """Model clients given as objects serve every task; run_with closes the clients it
    uses after each task, so each task gets a wrapper whose close does nothing, and
    the real clients are closed once, at the end."""

    def __init__(self, options: RunOptions) -> None:
        self._clients: list[ModelClient] = []
        changes = {}
        for name in ("model", "analyst_model", "critic_model"):
            value = getattr(options, name)
            if value is not None and not isinstance(value, str):
                self._clients.append(value)
                changes[name] = _Unclosed(value)
        self.options = options.changed(**changes) if changes else options

    async def aclose(self) -> None:
        for client in {id(c): c for c in self._clients}.values():
            await client.aclose()


class _Unclosed:
    """A model client whose ``aclose`` is left to its owner."""

    def __init__(self, client: ModelClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    @property
    def name(self) -> str:
        return self._client.name

    @property
    def accepts_images(self) -> bool:
        return self._client.accepts_images

    async def complete(self, *args: Any, **kwargs: Any) -> Any:
        return await self._client.complete(*args, **kwargs)

    async def aclose(self) -> None:
        return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


async def run_task(
    task: Task,
    resolved: Resolved,
    *,
    roles: Sequence[Any],
    label: str = "",
    kernel_config: KernelConfig | None = None,
    api_key: str | None = None,
    prices: Mapping[str, tuple[float, float]] | None = None,
    transcript: Path | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> dict[str, Any]:
    """Run one task to its end and return its record; never raises for the task's own
    failures (an error, a time-out, a dead kernel are a record with its reason)."""
    from ..run import run_with

    models: dict[str, str] = {}

    def observe(event: Event) -> None:
        if isinstance(event, RunStarted):
            models.update(event.models)
        if on_event is not None:
            on_event(event)

    limit = resolved.options.time_limit
    started = time.monotonic()
    result: RunResult | None = None
    failure: tuple[str, str] | None = None
    try:
        run = run_with(
            task.prompt(),
            resolved,
            data=task.data() or None,
            roles=roles,
            kernel_config=kernel_config,
            api_key=api_key,
            prices=prices,
            on_event=observe,
        )
        if limit is None:
            result = await run
        else:
            result = await asyncio.wait_for(run, limit + HARD_LIMIT_GRACE)
    except asyncio.TimeoutError:
        hard = (limit or 0.0) + HARD_LIMIT_GRACE
        failure = ("time_limit", f"the task did not end within {hard:g} s")
    except AgentnbError as err:
        failure = ("error", " ".join(str(err).split()))
    except Exception as err:  # a bug of agentnb's: this task fails, the others go on
        failure = ("error", f"agentnb failed: {type(err).__name__}: {err}")
    wall = time.monotonic() - started
    return make_record(task, result, failure, wall, label, models, transcript)


def make_record(
    task: Task,
    result: RunResult | None,
    failure: tuple[str, str] | None,
    wall: float,
    label: str,
    models: Mapping[str, str],
    transcript: Path | None,
) -> dict[str, Any]:
    """A task's line of ``results.jsonl``. Only an approved final report is scored: a run
    that ended without one answered nothing."""
    approved = result is not None and result.ok
    report_text = result.final_report if result is not None else None
    score = task.score(report_text if approved else None)
    stop_kind: str
    if result is not None:
        status = "answered" if approved else "failed"
        stop_kind, stop_message = result.stop_reason.kind, result.stop_reason.message
    else:
        assert failure is not None
        status = "error"
        stop_kind, stop_message = failure
    usage = result.usage if result is not None else {}
    tokens = {
        agent: {
            "prompt": u.prompt_tokens,
            "completion": u.completion_tokens,
            "calls": u.calls,
            "estimated": u.estimated,
        }
        for agent, u in usage.items()
    }
    steps = result.steps if result is not None else ()
    return {
        "id": task.id,
        "correct": score.correct,
        "score": score.fraction,
        "right": score.right,
        "answers": score.answers,
        "expected": {e.name: e.as_text() for e in task.expected},
        "status": status,
        "stop_reason": stop_kind,
        "stop_message": stop_message,
        "level": task.level,
        "tokens": tokens,
        "tokens_total": sum(u.total_tokens for u in usage.values()),
        "cost": dict(result.costs) if result is not None else {},
        "cost_total": result.cost if result is not None else None,
        "wall_time": round(wall, 3),
        "steps": len(steps),
        "step_statuses": [s.status for s in steps],
        "models": dict(models),
        "label": label,
        "transcript": str(transcript or (result.transcript_path if result else "") or ""),
        "report": report_text,
        "finished": _now(),
    }

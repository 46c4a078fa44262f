"""The notebook session behind ``%%agents``: settings, the managed kernel, the analyses.

One :class:`Session` lives in each user kernel that loaded the extension. It owns
the managed kernel (pre-warmed when the extension loads), so a follow-up
``%%agents`` cell continues in the same kernel state and its agents are told what
the earlier analyses of the session found, and it answers the ``%agents``
subcommands. Each cell is one :class:`~agentnb.jupyter.watch.Analysis`, the run it
watches (:mod:`agentnb.jupyter.watch`).

Settings, from lowest to highest precedence: the built-in defaults, the
environment (``AGENTNB_MODEL``, ``AGENTNB_APPROVE``, …), traitlets configuration
(``%config Agents.model = "..."`` or ``ipython_config.py``), the cell's flags.
Configuration set in the notebook is more deliberate than a variable exported in
a shell profile long ago, so it wins over the environment.

(Over 500 lines because the settings, :class:`Agents` to :func:`parse_line`, are
still here, as they were, while ``agentnb/options.py`` replaces them; without them
the session is about 370 lines.)
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import logging
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from traitlets import Bool

from ..chat.events import Event, ExecutionFinished
from ..chat.group import RunResult
from ..chat.messages import Execution
from ..errors import AgentnbError, ConfigError
from ..flags import FlagParser, UsageError, add_run_flags, split_names
from ..kernel import ManagedKernel
from ..kernel.data import assigned
from ..options import Resolved, RunOptions, configurable, specs
from ..record import RunRecord
from .notebook import build_notebook, join_notebooks, save_notebook
from .sources import recreate, save_values
from .watch import Analysis, Watched, observe

__all__ = ["Agents", "Analysis", "Session", "resolve_settings"]

log = logging.getLogger(__name__)


Agents: Any = configurable(
    "Agents",
    """``%%agents`` defaults: ``%config Agents.model = "gpt-4o-mini"`` or ``c.Agents.…``
    in ``ipython_config.py``. Unset values fall back to ``AGENTNB_*`` variables; one
    trait per option of :class:`~agentnb.options.RunOptions`.""",
    prewarm=Bool(True, help="start the managed kernel when the extension loads").tag(config=True),
    __module__=__name__,
)

NOTEBOOK_DEFAULTS = {"approve": "each"}
"""Where a notebook's defaults differ from ``agentnb.run``'s: someone is there to click."""


def resolve_settings(config: Any, flags: Mapping[str, Any]) -> Resolved:
    """Layer the defaults, the environment, the configuration and the flags
    (a flag left out, None, is not set)."""
    given = {name: value for name, value in flags.items() if value is not None}
    return RunOptions.resolve(
        {k: v for k, v in given.items() if k in specs()}, config=config, defaults=NOTEBOOK_DEFAULTS
    )


def _parser() -> FlagParser:
    parser = FlagParser(
        prog="%%agents",
        description="Analyse data with an analyst and a critic; approved steps run in a "
        "managed kernel. The cell's body is the task.",
        add_help=True,
    )
    add_run_flags(parser, notebook=True)
    parser.add_argument(
        "--background", action="store_true", help="return at once; the analysis goes on"
    )
    parser.add_argument(
        "--new", action="store_true", help="start a new analysis: fresh kernel, no history"
    )
    return parser


def parse_line(line: str) -> argparse.Namespace:
    """The flags of a ``%%agents`` line, or a :class:`UsageError`."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"cannot read the flags ({exc}): check the quotes") from None
    return _parser().parse_args(words)


def _expand(line: str, namespace: Mapping[str, Any]) -> str:
    """``{name}`` and ``$name`` in the flags, as IPython expands any magic's line
    (the cell reaches us rewritten, before IPython could)."""
    from IPython.utils.text import DollarFormatter

    try:
        return str(DollarFormatter().vformat(line, args=[], kwargs=namespace))
    except Exception:  # as IPython does: a line that does not format stays as written
        return line


def summarise(result: RunResult, limit: int = 1_200) -> str:
    """What a later analysis of the session should know about this one."""
    lines = [f"Question: {result.task.strip()}"]
    ran = [s for s in result.steps if s.status == "ok"]
    if ran:
        lines.append("Steps that ran (their variables still exist in the kernel):")
        for step in ran:
            code = step.code.strip()
            if len(code) > 300:
                code = code[:300] + " …"
            lines.append(f"```python\n{code}\n```")
    if result.final_report:
        report = result.final_report.strip()
        lines.append("Answer: " + (report if len(report) <= limit else report[:limit] + " …"))
    else:
        lines.append(f"No answer: {result.stop_reason.message}")
    return "\n".join(lines)


def default_save_name(task: str) -> str:
    """Where Save writes when no path is given: beside the notebook the kernel runs
    for, named after it (``sales.ipynb`` → ``sales-analysis.ipynb``), else after the
    task's first words (``agentnb-which-region-grew.ipynb``)."""
    notebook = os.environ.get("JPY_SESSION_NAME", "")
    stem = Path(notebook).stem if notebook.endswith(".ipynb") else ""
    if stem and not stem.endswith("-analysis"):
        return f"{stem}-analysis.ipynb"
    words = re.findall(r"\w+", task.lower())[:4]
    slug = "-".join(words)[:32].strip("-") or "analysis"
    return f"agentnb-{slug}.ipynb"


def _with_outputs(result: RunResult, record: RunRecord) -> RunResult:
    """``result`` with its steps' (and setup's) executions as ``record`` now has them."""
    steps = tuple(
        replace(step, execution=record.steps[step.number].execution or step.execution)
        if step.number in record.steps
        else step
        for step in result.steps
    )
    return replace(result, steps=steps, setup=record.setup or result.setup)


def _ended(analysis: Analysis) -> None:
    """The run ended, however it did: the cell keeps a static copy of the chat, which
    shows where the widget cannot (its kernel gone, another viewer), and its widget's
    display is updated with the outcome."""
    from IPython.display import display

    try:
        analysis.chat = analysis.static_output()
        if analysis.display is not None:
            analysis.display.update(analysis.bundle(), raw=True)
        display(  # type: ignore[no-untyped-call]
            analysis.chat["data"], raw=True, metadata=analysis.chat["metadata"]
        )
    except Exception:  # a display bug must not hide how the run ended
        log.exception("the static copy of the chat could not be shown")


class Session:
    """The agents of one user kernel."""

    def __init__(self, shell: Any, config: Agents) -> None:
        self.shell = shell
        self.config = config
        self.kernel: ManagedKernel | None = None
        self.analyses: list[Analysis] = []
        self.pushed: list[str] = []

    # --- kernel --------------------------------------------------------------------

    def prewarm(self) -> None:
        """Start the managed kernel in the background, if the loop is running."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        try:
            kernel = self._kernel(resolve_settings(self.config, {}))
        except ConfigError as exc:  # a malformed setting: the first cell says so too
            log.warning("agentnb: the managed kernel was not pre-warmed: %s", exc)
            return
        kernel.prewarm()

    def _kernel(self, settings: Resolved) -> ManagedKernel:
        if self.kernel is None:
            from ..run import kernel_config_for

            self.kernel = ManagedKernel(kernel_config_for(settings))
        return self.kernel

    async def reset(self, *, prewarm: bool = True) -> None:
        """Stop the current run and start over: a fresh kernel, no history."""
        await self.stop_and_wait()
        if self.kernel is not None:
            await self.kernel.shutdown()
        self.kernel = None
        self.analyses = []
        self.pushed = []
        if prewarm:
            self.prewarm()

    async def close(self) -> None:
        await self.stop_and_wait()
        if self.kernel is not None:
            await self.kernel.shutdown()
            self.kernel = None

    # --- a cell --------------------------------------------------------------------

    @property
    def current(self) -> Analysis | None:
        return self.analyses[-1] if self.analyses else None

    def prepare(self, line: str, body: str) -> Analysis:
        """Check the cell and build its analysis (nothing runs yet). Every mistake the
        user can fix raises :class:`UsageError` here, before the widget appears."""
        from ..ui.widget import ChatView

        args = parse_line(_expand(line, self.shell.user_ns))
        task = body.strip()
        if not task:
            raise UsageError(
                "the cell has no task: write the question below the %%agents line, e.g.\n"
                "%%agents --data sales\nWhich region grew fastest in 2024?"
            )
        if self.current is not None and self.current.running:
            raise UsageError(
                "an analysis is still running in this kernel: wait for it, stop it with "
                "%agents stop (or its Stop button), or run this cell with --new after it ends"
            )
        settings = resolve_settings(self.config, vars(args))
        names = split_names(args.data)
        namespace = self.shell.user_ns
        for name in names:
            if name not in namespace:
                close = difflib.get_close_matches(
                    name, [n for n in namespace if not n.startswith("_")], n=3
                )
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise UsageError(f"--data {name}: no variable of that name in your namespace{hint}")
        out = None
        if args.out:
            from ..run import _check_out

            out = _check_out(args.out)
        record = RunRecord()
        analysis = Analysis(
            task=task,
            settings=settings,
            view=ChatView(task, record=record, data=names),
            record=record,
            out=out,
            names=names,
            new=bool(args.new),
            background=bool(args.background),
        )
        # frontends count the views they render; none ever does under nbclient or papermill
        analysis.view.widget._view_count = 0
        return analysis

    def prepare_resume(self, run: str | None) -> Analysis:
        """The analysis that continues an earlier run (``%agents resume [RUN]``): by
        default the last one of this session, else the newest transcript of this
        folder that did not end with an approved answer; RUN is a run id or a
        transcript's path. Its steps run again in a fresh managed kernel."""
        from ..chat.resume import resumption
        from ..ui.widget import ChatView

        if self.current is not None and self.current.running:
            raise UsageError("an analysis is still running: stop it first (%agents stop)")
        earlier = resumption(self._transcript_of(run))
        namespace = self.shell.user_ns
        loaded = assigned(earlier.data_code)
        names = [n for n in earlier.data_names if n not in loaded]
        missing = [n for n in names if n not in namespace]
        if missing:
            raise UsageError(
                f"%agents resume: the run was given {', '.join(missing)}, which this "
                "namespace does not have: define it again first"
            )
        settings = resolve_settings(self.config, {})
        options = settings.options
        if not (options.model or options.analyst_model or options.critic_model):
            settings = RunOptions.resolve(
                config=self.config, defaults={**NOTEBOOK_DEFAULTS, **earlier.role_models}
            )
        record = RunRecord()
        analysis = Analysis(
            task=earlier.task,
            settings=settings,
            view=ChatView(earlier.task, record=record),
            record=record,
            names=names,
            new=True,  # a fresh kernel: the earlier one's state is what the steps rebuild
            resume=earlier,
        )
        analysis.view.widget._view_count = 0
        return analysis

    def _transcript_of(self, run: str | None) -> Path:
        from ..chat.transcript import default_transcript_dir

        if run is not None and Path(run).expanduser().is_file():
            return Path(run).expanduser()
        if run is None:
            last = self.current
            result = last.result if last is not None else None
            if result is not None and result.transcript_path and not result.ok:
                return result.transcript_path
        folder = default_transcript_dir()
        for path in sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True):
            try:
                with path.open(encoding="utf-8") as file:
                    first = json.loads(file.readline())
            except (OSError, ValueError):
                continue
            if run is not None and first.get("run_id") != run:
                continue
            if run is None and '"kind": "approved"' in path.read_text(encoding="utf-8")[-4000:]:
                continue
            return path
        what = f"run {run}" if run else "a run to resume"
        raise UsageError(
            f"%agents resume: no transcript of {what} in {folder}; give a transcript's path"
        )

    async def check(self, analysis: Analysis) -> None:
        """Fail before anything shows when a model cannot be used at all (no model
        named, no API key): a :class:`ConfigError` saying what to set."""
        from ..models import resolve_model

        options = analysis.settings.options
        models = {options.analyst_model or options.model, options.critic_model or options.model}
        for spec in models:
            client = resolve_model(spec, base_url=options.base_url)
            await client.aclose()

    async def start(self, analysis: Analysis) -> None:
        """Run the analysis as a task on this loop; returns once it is under way."""
        from ..run import run_with
        from .cells import anchor_cell_id

        settings = analysis.settings
        options = settings.options
        gateway = options.gateway
        moved = self.kernel is not None and self.kernel.config.gateway != gateway
        # the sandbox is set when the kernel starts: another one needs another kernel
        resealed = self.kernel is not None and (
            self.kernel.config.sandbox != options.sandbox
            or self.kernel.config.network != options.network
        )
        if analysis.new or moved or resealed:
            await self.reset(prewarm=False)
        kernel = self._kernel(settings)
        history = "\n\n".join(summarise(a.result) for a in self.analyses if a.result is not None)
        self.analyses.append(analysis)
        view = analysis.view
        view.on_stop = analysis.stop.set
        view.on_save = self._save_from_button
        if (moved or resealed) and not analysis.new:
            where = f"on the gateway {gateway}" if gateway else "on this machine"
            change = "--gateway" if moved else "--sandbox or --network"
            view.notify(
                "info",
                f"The managed kernel now runs {where} ({change} changed), so this analysis "
                "starts over: the earlier analyses' variables and history are not there.",
            )
        anchor = anchor_cell_id()
        watched = observe(analysis, anchor)

        def on_event(event: Event) -> None:
            watched(event)
            if isinstance(event, ExecutionFinished):
                self._ran(analysis, event.execution, kernel)

        # the code that rebuilds the data, for the saved notebook: here, once the widget
        # shows, not in prepare (it parses the whole input history)
        if analysis.resume is None:  # a resumed run names its data, without sources
            cells = [str(cell) for cell in self.shell.user_ns.get("In", ())]
            for name in analysis.names:
                source = recreate(cells, name)
                if source is not None:
                    analysis.data_sources[name] = source
        data = {name: self.shell.user_ns[name] for name in analysis.names}
        analysis.values = dict(data)
        self.pushed = [*self.pushed, *(n for n in analysis.names if n not in self.pushed)]
        approver = Watched(analysis)
        # the session saves every analysis of the session together (_finish), not run_with
        unsaved = Resolved(options.changed(out=None), settings.sources)
        coroutine = run_with(
            analysis.task,
            unsaved,
            resume=analysis.resume,
            data=data or None,
            data_names=[n for n in self.pushed if n not in data],
            approver=approver if options.approve != "never" else None,
            kernel=kernel,
            history=history,
            on_event=on_event,
            stop=analysis.stop,
        )
        analysis.handle = asyncio.ensure_future(self._finish(analysis, coroutine))

    def _ran(self, analysis: Analysis, execution: Execution, kernel: ManagedKernel) -> None:
        """A step of ``analysis`` ran: what it changed of the displays of earlier runs'
        steps in the same kernel process (``h.update(...)``) reaches them as it reaches
        this run's: their records (and so a save), results, widgets and cells."""
        process = kernel.incarnation
        if execution.status in ("ok", "error"):  # a kernel that died or restarted is another
            analysis.ran_in = process
        if not execution.updates:
            return
        for earlier in self.analyses:
            if earlier is analysis or earlier.ran_in != process:
                continue
            changed = earlier.record.take_updates(execution)
            if not changed:
                continue
            earlier.view.show_updated()
            if earlier.result is not None:
                earlier.result = _with_outputs(earlier.result, earlier.record)
            for number in changed:
                shown = earlier.record.steps[number].execution if number else None
                if shown is None:
                    continue  # the data's setup has no cell
                if earlier.writer is not None:  # still open: a page attaching later gets it
                    earlier.writer.update_outputs(step=number, outputs=shown.outputs)
                if analysis.writer is not None:
                    key = f"{earlier.record.run_id}:{number}"
                    analysis.writer.update_earlier(key, shown.outputs)

    async def _finish(self, analysis: Analysis, coroutine: Any) -> RunResult | None:
        try:
            analysis.result = await coroutine
        except AgentnbError as exc:
            analysis.error = str(exc)
            analysis.view.close(analysis.error)
            _ended(analysis)
            return None
        except asyncio.CancelledError:
            analysis.view.close("cancelled")
            _ended(analysis)
            raise
        except Exception as exc:  # an agentnb bug: the widget says so, the kernel lives on
            log.exception("the analysis failed")
            analysis.error = f"agentnb failed: {type(exc).__name__}: {exc}"
            analysis.view.close(analysis.error)
            _ended(analysis)
            return None
        if analysis.out is not None:
            try:
                path = self.save(analysis.out)
            except AgentnbError as exc:
                analysis.view.notify("error", f"could not save {analysis.out}: {exc}")
            else:
                analysis.view.notify("info", f"analysis notebook saved: {path}")
        _ended(analysis)
        writer = analysis.writer
        if writer is not None:
            await writer.ready()  # settles 'unavailable' (and tells the user) if it was
        return analysis.result

    async def stop_and_wait(self, within: float = 15.0) -> None:
        """Stop the current run and wait until it has ended."""
        analysis = self.current
        if analysis is None or analysis.handle is None or analysis.handle.done():
            return
        analysis.stop.set()
        await asyncio.wait([analysis.handle], timeout=within)

    # --- subcommands -----------------------------------------------------------------

    def result(self) -> RunResult:
        """The last analysis's :class:`RunResult` (``r = %agents result``): its steps with
        code and outputs, final report, stop reason, tokens and costs."""
        last = self.current
        if last is None:
            raise UsageError("no analysis in this session yet: a %%agents cell runs one")
        if last.result is not None:
            return last.result
        if last.error is not None:
            raise UsageError(f"the last analysis ended without a result: {last.error}")
        raise UsageError(
            "the last analysis is still running: ask again when it has ended (%agents stop ends it)"
        )

    def status(self) -> str:
        analysis = self.current
        lines = []
        kernel = self.kernel
        if kernel is None:
            lines.append("managed kernel: not started")
        else:
            state = "running" if kernel.is_started else "starting"
            where = f" on the gateway {kernel.config.gateway}" if kernel.config.gateway else ""
            lines.append(
                f"managed kernel: {state}{where}" + (f" (pid {kernel.pid})" if kernel.pid else "")
            )
            lines.append(f"isolation: {kernel.isolation}")
        if self.pushed:
            lines.append("data given to the agents: " + ", ".join(self.pushed))
        if analysis is None:
            lines.append("no analysis yet: run a %%agents cell")
            return "\n".join(lines)
        lines.append(f"analyses in this session: {len(self.analyses)}")
        lines += analysis.status()
        return "\n".join(lines)

    def stop(self) -> bool:
        analysis = self.current
        if analysis is None or not analysis.running:
            return False
        analysis.stop.set()
        return True

    def save(self, path: str | Path | None = None) -> Path:
        """Save the session's analyses as one notebook that re-runs from the top."""
        from ..run import _check_out

        done = [a for a in self.analyses if a.events]
        if not done:
            raise ConfigError("nothing to save yet: run a %%agents cell first")
        if path is None:
            path = next((a.out for a in reversed(done) if a.out is not None), None)
        if path is None:
            path = default_save_name(done[0].task)
        target = _check_out(path, what="%agents save")
        sources: dict[str, str] = {}
        known: set[str] = set()
        notebooks = []
        for analysis in done:
            sources.update(analysis.data_sources)
            # what no code of the session rebuilds is saved beside the notebook
            kept = {n: v for n, v in analysis.values.items() if n not in sources}
            sources.update(save_values(kept, target))
            record = analysis.record
            notebooks.append(
                build_notebook(record, data_sources=sources, known=known, folder=target.parent)
            )
            known.update(record.started.data if record.started is not None else ())
        return save_notebook(join_notebooks(notebooks), target)

    def _save_from_button(self) -> str:
        return str(self.save())

    async def pull(self, name: str) -> str:
        if self.kernel is None:
            raise UsageError("no managed kernel yet: run a %%agents cell first")
        if not name.isidentifier():
            raise UsageError(f"%agents pull {name}: not a variable name")
        value = await self.kernel.pull(name)
        self.shell.user_ns[name] = value
        return f"{name}: {type(value).__name__} copied from the agents' kernel"

"""The notebook session behind ``%%agents``: settings, the managed kernel, the analyses.

One :class:`Session` lives in each user kernel that loaded the extension. It owns
the managed kernel (pre-warmed when the extension loads), so a follow-up
``%%agents`` cell continues in the same kernel state and its agents are told what
the earlier analyses of the session found. Each cell is one :class:`Analysis`:
its widget, its events (the transcript has them first), its run task and its
writer of notebook cells.

Settings, from lowest to highest precedence: the built-in defaults, the
environment (``AGENTNB_MODEL``, ``AGENTNB_APPROVE``, …), traitlets configuration
(``%config Agents.model = "..."`` or ``ipython_config.py``), the cell's flags.
Configuration set in the notebook is more deliberate than a variable exported in
a shell profile long ago, so it wins over the environment.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import difflib
import logging
import re
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traitlets import Bool

from ..chat.approval import ApprovalRequest, Decision
from ..chat.events import (
    Event,
    ExecutionFinished,
    MessagePosted,
    RunFinished,
    RunStarted,
)
from ..chat.group import RunResult
from ..chat.messages import Proposal
from ..errors import AgentnbError, ConfigError
from ..flags import FlagParser, UsageError, add_run_flags, split_names
from ..kernel import ManagedKernel
from ..options import Resolved, RunOptions, configurable, specs
from ..ui.untrusted import safe_markdown
from .notebook import build_notebook, join_notebooks, save_notebook

if TYPE_CHECKING:
    from ..ui.widget import ChatView
    from .cells import CellWriter

__all__ = ["Agents", "Analysis", "Session", "resolve_settings"]

log = logging.getLogger(__name__)

FAILURES = frozenset({"model_error", "kernel_error", "error", "protocol"})
"""Stop reasons that fail the cell, so that Run All stops there: a part failed (a
model that cannot follow the reply protocol included). Limits and guards end a run
as designed; the widget says why."""

HEADLESS_GRACE = 5.0
"""Seconds an approval waits for any frontend to show the widget before the run
is stopped as headless (nbclient, papermill): nobody could ever click."""


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


def _data_source(history: Sequence[str], name: str) -> str | None:
    """The statement of the user's session that last bound ``name`` to a call,
    such as ``sales = pd.read_csv("sales.csv")``: the saved notebook re-runs it."""
    for cell in reversed(history):
        try:
            tree = ast.parse(cell)
        except SyntaxError:  # magics and shell escapes
            continue
        for node in reversed(tree.body):
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
                and isinstance(node.value, ast.Call)
            ):
                return ast.get_source_segment(cell, node.value)
    return None


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


@dataclass
class Analysis:
    """One ``%%agents`` cell's run."""

    task: str
    settings: Resolved
    view: ChatView
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    events: list[Event] = field(default_factory=list)
    handle: asyncio.Task[RunResult | None] | None = None
    result: RunResult | None = None
    writer: CellWriter | None = None
    out: Path | None = None
    data_sources: dict[str, str] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    """The ``--data`` variables to push."""
    new: bool = False
    background: bool = False
    headless: str | None = None
    """Why the run stopped for want of a frontend (nbclient, papermill), if it did."""
    error: str | None = None
    """Why the run could not start or crashed, if it did."""
    display: Any = None
    """The cell's display handle, updated with the outcome when the run ends."""
    started: float = field(default_factory=time.monotonic)

    @property
    def running(self) -> bool:
        return self.handle is not None and not self.handle.done()


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
        analysis = Analysis(
            task=task,
            settings=settings,
            view=ChatView(task),
            out=out,
            names=names,
            new=bool(args.new),
            background=bool(args.background),
        )
        # frontends count the views they render; none ever does under nbclient or papermill
        analysis.view.widget._view_count = 0
        history = [str(cell) for cell in namespace.get("In", ())]
        for name in names:
            source = _data_source(history, name)
            if source is not None:
                analysis.data_sources[name] = source
        return analysis

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
        from .cells import CellWriter, anchor_cell_id

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
        models: dict[str, str] = {}
        proposals: dict[int, str] = {}

        def on_event(event: Event) -> None:
            analysis.events.append(event)
            view.handle(event)
            if isinstance(event, RunStarted):
                models.update(event.models)
                if anchor is None:
                    # nbclient and papermill say nothing of the cell; nobody to insert for
                    view.notify(
                        "info",
                        "Steps are not inserted as cells here: this frontend does not say "
                        "which cell ran. Save the analysis (Save, or %agents save PATH) "
                        "to get them as a notebook.",
                    )
                    return
                analysis.writer = CellWriter(
                    run_id=event.run_id,
                    anchor=anchor,
                    on_status=lambda text: view.notify("warning", text),
                    on_inserted=view.step_inserted,
                    # a page opened after the tab was closed shows the live widget again
                    display=lambda: self.bundle(analysis),
                )
                analysis.writer.open()
            elif isinstance(event, RunFinished) and analysis.writer is not None:
                analysis.writer.finish()
            elif isinstance(event, MessagePosted) and isinstance(event.message, Proposal):
                proposals[event.message.step] = event.message.code
            elif isinstance(event, ExecutionFinished):
                execution = event.execution
                if event.step > 0 and execution.ok and analysis.writer is not None:
                    analysis.writer.insert(
                        step=event.step,
                        code=execution.code,
                        outputs=list(execution.outputs),
                        metadata={
                            "models": dict(models),
                            "edited": proposals.get(event.step, execution.code) != execution.code,
                        },
                    )

        data = {name: self.shell.user_ns[name] for name in analysis.names}
        self.pushed = [*self.pushed, *(n for n in analysis.names if n not in self.pushed)]
        approver = _Watched(analysis, HEADLESS_GRACE)
        # the session saves every analysis of the session together (_finish), not run_with
        unsaved = Resolved(options.changed(out=None), settings.sources)
        coroutine = run_with(
            analysis.task,
            unsaved,
            data=data or None,
            data_names=[n for n in self.pushed if n not in data],
            approver=approver if options.approve != "never" else None,
            kernel=kernel,
            history=history,
            on_event=on_event,
            stop=analysis.stop,
        )
        analysis.handle = asyncio.ensure_future(self._finish(analysis, coroutine))

    async def _finish(self, analysis: Analysis, coroutine: Any) -> RunResult | None:
        try:
            analysis.result = await coroutine
        except AgentnbError as exc:
            analysis.error = str(exc)
            analysis.view.close(analysis.error)
            return None
        except asyncio.CancelledError:
            analysis.view.close("cancelled")
            raise
        except Exception as exc:  # an agentnb bug: the widget says so, the kernel lives on
            log.exception("the analysis failed")
            analysis.error = f"agentnb failed: {type(exc).__name__}: {exc}"
            analysis.view.close(analysis.error)
            return None
        if analysis.out is not None:
            try:
                path = self.save(analysis.out)
            except AgentnbError as exc:
                analysis.view.notify("error", f"could not save {analysis.out}: {exc}")
            else:
                analysis.view.notify("info", f"analysis notebook saved: {path}")
        if analysis.display is not None:
            analysis.display.update(self.bundle(analysis), raw=True)
        writer = analysis.writer
        if writer is not None:
            await writer.ready()  # settles 'unavailable' (and tells the user) if it was
        return analysis.result

    @staticmethod
    def failure(analysis: Analysis) -> str | None:
        """Why the analysis failed, when a part of it did (the model, the managed
        kernel, the data, agentnb); None when it ended for any other reason."""
        if analysis.headless is not None:
            return analysis.headless
        if analysis.error is not None:
            return analysis.error
        result = analysis.result
        if result is None or result.stop_reason.kind not in FAILURES:
            return None
        kept = ""
        if result.transcript_path is not None:
            kept = f"; what ran is kept (%agents save PATH; transcript {result.transcript_path})"
        return f"{result.stop_reason.message}{kept}"

    async def stop_and_wait(self, within: float = 15.0) -> None:
        """Stop the current run and wait until it has ended."""
        analysis = self.current
        if analysis is None or analysis.handle is None or analysis.handle.done():
            return
        analysis.stop.set()
        await asyncio.wait([analysis.handle], timeout=within)

    # --- subcommands -----------------------------------------------------------------

    def bundle(self, analysis: Analysis) -> dict[str, Any]:
        """The cell's display: the live widget, and for anything that cannot show
        widgets (papermill reports, GitHub, nbviewer) the task, how it ended and the
        final report as markdown and text."""
        bundle: dict[str, Any] = dict(analysis.view.widget._repr_mimebundle_())
        finished = next((e for e in analysis.events if isinstance(e, RunFinished)), None)
        title = analysis.task.strip().splitlines()[0]
        if finished is None:
            state = f"{analysis.view.phase} (open the notebook in Jupyter to follow it)"
        else:
            state = f"{finished.reason.kind}: {finished.reason.message}"
        report = finished.final_report if finished is not None else None
        bundle["text/plain"] = "\n\n".join(
            part for part in (f"agentnb: {title}", state, report) if part
        )
        # shown in the cell the user ran, which is trusted: no raw HTML of the model's
        bundle["text/markdown"] = safe_markdown(
            "\n\n".join(part for part in (f"**agentnb**: {title}", f"*{state}*", report) if part)
        )
        return bundle

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
        lines.append(f"current: {analysis.task.splitlines()[0][:80]}")
        lines.append(f"phase: {analysis.view.phase}")
        finished = next((e for e in analysis.events if isinstance(e, RunFinished)), None)
        if finished is not None:
            tokens = sum(u.prompt_tokens + u.completion_tokens for u in finished.usage.values())
            lines.append(f"stop reason: {finished.reason.kind} — {finished.reason.message}")
            lines.append(
                f"tokens: {tokens:,}" + (f", cost ${finished.cost:.4f}" if finished.cost else "")
            )
        steps = [e for e in analysis.events if isinstance(e, ExecutionFinished) and e.step > 0]
        if steps:
            lines.append("steps: " + ", ".join(f"{e.step} {e.execution.status}" for e in steps))
        elapsed = time.monotonic() - analysis.started
        lines.append(f"elapsed: {elapsed:.0f} s")
        lines.append(
            "settings: "
            + analysis.settings.describe(
                "model", "approve", "max_turns", "step_timeout", "sandbox", "network"
            )
        )
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
            words = re.findall(r"\w+", done[0].task.lower())
            slug = "-".join(words)
            while len(slug) > 40 and "-" in slug:  # whole words only
                slug = slug.rsplit("-", 1)[0]
            slug = slug[:40] or "analysis"
            path = f"agentnb-{slug}.ipynb"
        target = _check_out(path, what="%agents save")
        sources: dict[str, str] = {}
        known: set[str] = set()
        notebooks = []
        for analysis in done:
            sources.update(analysis.data_sources)
            notebooks.append(build_notebook(analysis.events, data_sources=sources, known=known))
            known.update(n for e in analysis.events if isinstance(e, RunStarted) for n in e.data)
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


class _Watched:
    """The widget as approver, which stops the run when no frontend shows it.

    A frontend that renders the widget counts its views (``_view_count``); under
    nbclient or papermill nothing ever does, and an approval would wait forever."""

    def __init__(self, analysis: Analysis, grace: float) -> None:
        self.analysis = analysis
        self.grace = grace
        self.shown = asyncio.Event()
        analysis.view.widget.observe(self._counted, names="_view_count")

    def _counted(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.shown.set()

    async def decide(self, request: ApprovalRequest) -> Decision:
        view = self.analysis.view
        if view.widget._view_count:
            self.shown.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.shown.wait(), self.grace)
        if not self.shown.is_set():
            what = f"step {request.step}" if request.step else "the final report"
            self.analysis.headless = (
                f"no frontend is showing this cell (a headless run under nbclient or "
                f"papermill?), so nobody can approve {what}; run headless %%agents cells "
                f"with --approve never"
            )
            view.notify("error", self.analysis.headless)
            return Decision.stop()
        return await view.decide(request)

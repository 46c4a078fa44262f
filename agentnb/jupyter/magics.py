"""``%load_ext agentnb``: the ``%%agents`` cell and the ``%agents`` line.

Thin: it parses, displays and awaits; :mod:`agentnb.jupyter.session` does the work.

A ``%%agents`` cell must stay running until its chat ends (so "Run All" keeps
its order) while button clicks are still handled. A cell that awaits can do
both on ipykernel >= 7.4, which processes comm messages while an async cell
waits; a sync magic cannot. So an input transformer rewrites the cell into
``await`` of :func:`run_cell` before IPython sees it, and a ``%agents`` line at
the top level into ``await`` of :func:`run_line` (``pull`` needs the kernel's
loop). The registered magics stay as the fallback for calls that bypass the
transformers (``get_ipython().run_cell_magic``): they start the run in the
background.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import shlex
import threading
from typing import Any

from ..errors import AgentnbError
from ..flags import HelpShown, UsageError
from .session import Agents, Analysis, Session

__all__ = ["load_ipython_extension", "run_cell", "run_line", "unload_ipython_extension"]

log = logging.getLogger(__name__)

_session: Session | None = None

_LINE_USAGE = (
    "%agents status | result | stop | save [PATH] | pull NAME | resume [RUN] | reset  "
    "(a %%agents cell runs an analysis; %%agents --help lists its flags)"
)


class AgentsError(Exception):
    """A failure shown as one line in the cell, without a traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[31m{type(self).__name__}\x1b[0m: {self}"]


class AgentsStopped(AgentsError):
    """The user interrupted a ``%%agents`` cell."""


def _get_session() -> Session:
    if _session is None:
        raise UsageError("agentnb is not loaded: run %load_ext agentnb first")
    return _session


def _usage_error(exc: AgentnbError) -> Exception:
    from IPython.core.error import UsageError as IPythonUsageError

    return IPythonUsageError(str(exc))  # IPython shows it as one line


# --- the cell --------------------------------------------------------------------


def _prepare(line: str, body: str) -> Analysis | None:
    """Check the cell; None when only --help was asked for."""
    try:
        return _get_session().prepare(line, body)
    except HelpShown:
        return None
    except AgentnbError as exc:
        raise _usage_error(exc) from None


def _show(analysis: Analysis) -> None:
    from IPython.display import display

    analysis.display = display(  # type: ignore[no-untyped-call]
        analysis.bundle(), raw=True, display_id=True
    )


async def _start(analysis: Analysis) -> None:
    warm_up(SAVE_MODULES)  # the widget shows: now nothing waits for it
    try:
        await _get_session().start(analysis)
    except AgentnbError as exc:
        analysis.view.notify("error", str(exc))
        raise _usage_error(exc) from None


async def run_cell(line: str, body: str) -> None:
    """What a ``%%agents`` cell becomes: start the analysis, show it, await it."""
    analysis = _prepare(line, body)
    if analysis is None:
        return
    await _run(analysis)


async def _run(analysis: Analysis) -> None:
    try:
        await _get_session().check(analysis)
    except AgentnbError as exc:
        raise _usage_error(exc) from None
    _show(analysis)
    await _start(analysis)
    if analysis.background or analysis.handle is None:
        return
    try:
        # shielded: an interrupt of this cell must stop the run, not cancel it half-way
        await asyncio.shield(analysis.handle)
    except (asyncio.CancelledError, KeyboardInterrupt):
        analysis.stop.set()
        await asyncio.wait([analysis.handle], timeout=15)
        raise AgentsStopped(
            "the analysis was stopped by the interrupt; its managed kernel was interrupted too "
            "(its state is kept: a next %%agents cell continues from here)"
        ) from None
    # the widget says why at length; where a frontend shows it, the cell's error is brief
    failure = analysis.failure(brief=bool(analysis.view.widget._view_count))
    if failure is not None:
        raise AgentsError(failure)


def _words(line: str) -> tuple[str, list[str]]:
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise _usage_error(UsageError(f"%agents {line}: {exc}")) from None
    return (words[0], words[1:]) if words else ("status", [])


def _at_once(session: Session, line: str, command: str, args: list[str]) -> Any:
    """The subcommands that need no awaiting: status, result, stop (without waiting), save."""
    try:
        if command == "status" and not args:
            return _Text(session.status())
        if command == "result" and not args:
            return session.result()
        if command == "stop" and not args:
            return _Text("stopped" if session.stop() else "no analysis is running")
        if command == "save" and len(args) <= 1:
            return _Text(f"saved {session.save(args[0] if args else None)}")
    except AgentnbError as exc:
        raise _usage_error(exc) from None
    raise _usage_error(UsageError(f"%agents {line}: not a subcommand. Usage: {_LINE_USAGE}"))


async def run_line(line: str) -> Any:
    """What a top-level ``%agents`` line becomes."""
    session = _get_session()
    command, args = _words(line)
    try:
        if command == "stop" and not args and session.stop():
            await session.stop_and_wait()
            return _Text("stopped")
        if command == "reset" and not args:
            await session.reset()
            return _Text("the agents start over: a fresh managed kernel, no history")
        if command == "pull" and len(args) == 1:
            return _Text(await session.pull(args[0]))
        if command == "resume" and len(args) <= 1:
            await _run(session.prepare_resume(args[0] if args else None))
            return None
    except AgentnbError as exc:
        raise _usage_error(exc) from None
    return _at_once(session, line, command, args)


class _Text(str):
    """A message shown as plain text (no quotes) as the cell's result."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


# --- the transformer -----------------------------------------------------------------


_HERE = "__import__('agentnb.jupyter.magics').jupyter.magics"
"""This module, as an expression the rewritten cell can use without an import."""


def transform(lines: list[str]) -> list[str]:
    """Rewrite ``%%agents`` cells and top-level ``%agents`` lines into awaits."""
    if lines and lines[0].startswith("%%agents") and lines[0][8:9] in ("", " ", "\t", "\n"):
        line = lines[0][8:].strip()
        body = "".join(lines[1:])
        return [f"await {_HERE}.run_cell({line!r}, {body!r})\n"]
    rewritten = []
    for text in lines:
        if text.startswith("%agents") and text[7:8] in ("", " ", "\t", "\n"):
            rest = text[7:].strip()
            text = f"await {_HERE}.run_line({rest!r})\n"
        rewritten.append(text)
    return rewritten


# --- loading -------------------------------------------------------------------------


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext agentnb``: register the magics; pre-warm the managed kernel."""
    global _session
    if _session is not None and _session.shell is shell:
        return  # loading twice is harmless
    config = Agents(parent=shell)
    shell.configurables.append(config)
    _session = Session(shell, config)
    shell.input_transformers_cleanup.append(transform)
    shell.register_magic_function(_line_magic, "line", "agents")
    shell.register_magic_function(_cell_magic, "cell", "agents")
    from .cells import register_target

    register_target()  # a reopened notebook page attaches to the run going on
    if config.prewarm:
        _session.prewarm()
        warm_up()


WARM_MODULES = ("ipywidgets", "agentnb.ui.widget", "openai", "agentnb.models.openai_compat")
"""What the first ``%%agents`` cell needs beyond ``%load_ext``: the widget and the
model client (about a second on a fresh kernel)."""

SAVE_MODULES = ("nbformat.v4",)
"""What saving an analysis needs: nbformat, which imports jsonschema and its format
checkers (a second or more). Imported in the background once the first analysis is
under way, where it delays nothing: not by ``%load_ext`` (the cell would wait for it),
nor with :data:`WARM_MODULES` (the thread would hold the interpreter while a first
cell run at once builds its widget)."""

warmed = threading.Event()
"""Set once :func:`warm_up` has imported :data:`WARM_MODULES`."""

_warming: set[tuple[str, ...]] = set()


def warm_up(modules: tuple[str, ...] = WARM_MODULES) -> None:
    """Import ``modules`` in a background thread, while the user writes the cell, so
    that its widget shows at once. A cell that needs them sooner waits for the import
    in progress, as any import does."""
    if modules in _warming:
        return
    _warming.add(modules)

    def imports() -> None:
        try:
            for name in modules:
                importlib.import_module(name)
        except Exception:  # the cell imports them again and says what is wrong
            log.debug("agentnb: warming up the imports failed", exc_info=True)
        finally:
            if modules == WARM_MODULES:
                warmed.set()

    threading.Thread(target=imports, name="agentnb-warm-up", daemon=True).start()


def unload_ipython_extension(shell: Any) -> None:
    """``%unload_ext agentnb``: stop the run, shut the managed kernel down."""
    global _session
    if transform in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.remove(transform)
    magics = shell.magics_manager.magics
    magics["line"].pop("agents", None)
    magics["cell"].pop("agents", None)
    from .cells import unregister_target

    unregister_target()
    session, _session = _session, None
    if session is None:
        return
    if session.config in shell.configurables:
        shell.configurables.remove(session.config)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        if session.kernel is not None:
            session.kernel.close()
        return
    task = loop.create_task(session.close())
    task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("agentnb: a background task failed", exc_info=task.exception())


def _line_magic(line: str) -> Any:
    """%agents status | result | stop | save [PATH] | pull NAME | resume [RUN] | reset"""
    # reached only when the transformer did not apply (an indented or programmatic
    # call): everything but pull and reset works without awaiting
    command, args = _words(line)
    if command in ("pull", "reset"):
        raise _usage_error(
            UsageError(f"%agents {command} must start a line of a cell (it awaits the agents)")
        )
    return _at_once(_get_session(), line, command, args)


def _cell_magic(line: str, cell: str) -> None:
    """%%agents [flags]: analyse data with an analyst and a critic (see --help)."""
    # reached only when the transformer did not apply: a sync magic cannot wait for
    # clicks, so the analysis goes on in the background
    analysis = _prepare(line, cell)
    if analysis is not None:
        _show(analysis)
        analysis.background = True
        task = asyncio.get_running_loop().create_task(_start(analysis))
        task.add_done_callback(_log_failure)

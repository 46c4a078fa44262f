"""The terminal front end of ``agentnb run``: live progress and approval prompts.

:class:`TerminalView` is an observer: it folds each event of a run into a
:class:`~agentnb.record.RunRecord` and prints what happened from it on a
:class:`rich.console.Console` (stderr by default, so that stdout carries only the
final report). On a real terminal a spinner line shows the agent thinking and the
tokens streamed so far; elsewhere (a pipe, a log file) whole replies are printed
once they are complete, never token by token.

:class:`TerminalApprover` is an :class:`~agentnb.chat.approval.Approver`: it shows the
step (or final report) to decide on and asks ``[a]pprove / [e]dit / [r]eject /
[s]top``. Lines are read in a thread, so the run's event loop never blocks on the
keyboard.

(Over 500 lines because the view and its approver share the console's rendering of
code and outputs; ``agentnb run`` imports both from here.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console, Group
from rich.padding import Padding
from rich.panel import Panel
from rich.status import Status
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from ..chat.approval import ApprovalRequest, Decision
from ..chat.events import (
    AgentThinking,
    AnyEvent,
    ApprovalDecided,
    ApprovalRequested,
    DataReady,
    Event,
    ExecutionFinished,
    ExecutionOutput,
    ExecutionStarted,
    KernelReady,
    MessagePosted,
    ModelCalled,
    Notice,
    RunFinished,
    RunStarted,
    TokenDelta,
    assert_never,
    is_event,
)
from ..chat.messages import Execution, Feedback, FinalReport, Proposal, Review, StepResult
from ..kernel.outputs import png_size, render_for_model, truncate_middle
from ..models.base import Usage
from ..record import RunRecord, subject

__all__ = ["TerminalApprover", "TerminalView"]

T = TypeVar("T")

_AGENT_COLOURS = {
    "analyst": "cyan",
    "critic": "magenta",
    "selector": "bright_black",
    "user": "yellow",
    "agentnb": "yellow",
    "executor": "blue",
}
_PALETTE = ("green", "bright_blue", "bright_magenta", "bright_cyan", "orange3", "purple")

_STATUS_STYLES = {
    "ok": "green",
    "error": "red",
    "timeout": "red",
    "died": "red",
    "interrupted": "yellow",
}

_NOTICE_STYLES = {"info": "blue", "warning": "yellow", "error": "bold red"}


def _colour(agent: str) -> str:
    if agent in _AGENT_COLOURS:
        return _AGENT_COLOURS[agent]
    return _PALETTE[sum(map(ord, agent)) % len(_PALETTE)]


def _code(code: str) -> Syntax:
    return Syntax(
        code.rstrip("\n") or "# (no code)",
        "python",
        theme="monokai",
        background_color="default",
        word_wrap=True,
    )


def _indent(renderable: Any) -> Any:
    """Indented by two spaces (plain text gets no trailing padding)."""
    if isinstance(renderable, Text):
        lines = renderable.split("\n", allow_blank=True)
        return Text("\n").join(Text("  ") + line for line in lines)
    return Padding(renderable, (0, 0, 0, 2), expand=False)


def _image_note(data: Mapping[str, Any]) -> str | None:
    """``[plot: 640×480 PNG]`` for an output that holds an image, else None."""
    for mime, value in data.items():
        if not mime.startswith("image/"):
            continue
        kind = mime.split("/", 1)[1].split("+", 1)[0].upper()
        size = png_size(value) if mime == "image/png" and isinstance(value, str) else None
        return f"[plot: {size[0]}×{size[1]} {kind}]" if size else f"[plot: {kind}]"
    return None


def _output_texts(execution: Execution, limit: int) -> list[Text]:
    """Each output of a step as terminal text: streams, values (DataFrames as their
    text/plain), a one-line note per image, compacted tracebacks."""
    texts: list[Text] = []
    for out in execution.outputs:
        kind = out.get("output_type")
        if kind == "stream":
            body = truncate_middle(str(out.get("text", "")).rstrip("\n"), limit)
            style = "" if out.get("name") == "stdout" else "red"
            texts.append(Text(body, style=style))
        elif kind in ("execute_result", "display_data"):
            data = out.get("data", {})
            note = _image_note(data) if isinstance(data, Mapping) else None
            if note is not None:
                texts.append(Text(note, style="italic blue"))
            elif isinstance(data, Mapping) and "text/plain" in data:
                texts.append(Text(truncate_middle(str(data["text/plain"]).rstrip("\n"), limit)))
            else:
                texts.append(Text(render_for_model([out], limit)))
        elif kind == "error":
            texts.append(Text(render_for_model([out], limit), style="red"))
    return [t for t in texts if t.plain.strip()]


def _count(value: int, estimated: bool) -> str:
    return f"~{value:,}" if estimated else f"{value:,}"


def _money(cost: float | None) -> str:
    return "—" if cost is None else f"${cost:.4f}"


class TerminalView:
    """Renders a run on a console as it happens: each event is folded into
    :attr:`record`, and what is printed comes from there.

    Args:
        console: where to write (default: a console on stderr).
        quiet: show only the stop reason and the usage table at the end.
        output_limit: characters of each step output shown (the middle is cut).
        record: the run record to show (default: a new one).
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        quiet: bool = False,
        output_limit: int = 3_000,
        record: RunRecord | None = None,
    ) -> None:
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.output_limit = output_limit
        self.record = record if record is not None else RunRecord()
        self.live = self.console.is_terminal and not self.console.is_dumb_terminal
        self._status: Status | None = None
        self._streamed: dict[str, tuple[int, str]] = {}
        """Per agent: characters streamed so far, and the last of them."""

    @property
    def finished(self) -> RunFinished | None:
        """The run's last event, once it came."""
        return self.record.finished

    # --- the observer ----------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        """Fold one event into the record and show it."""
        self.record.apply(event)
        self.show(event)

    def show(self, event: Event) -> None:
        """Show one event that its owner already folded into :attr:`record`."""
        if not is_event(event):
            return
        if isinstance(event, TokenDelta):
            self._on_delta(event)
            return
        self._stop_status()
        if isinstance(event, RunFinished):
            self._finished()
        elif not self.quiet:
            self._dispatch(event)

    def _dispatch(self, event: AnyEvent) -> None:
        match event:
            case RunStarted():
                self._on_run_started(event)
            case KernelReady():
                style = "bold red" if event.sandboxed is False else "dim"
                self.console.print(Text(f"kernel: {event.isolation}", style=style))
            case DataReady():
                self._on_data_ready(event)
            case AgentThinking():
                self._streamed[event.agent] = (0, "")
                self._start_status(
                    Text.assemble(
                        (event.agent, f"bold {_colour(event.agent)}"), (" thinking…", "dim")
                    )
                )
            case ModelCalled():
                self._on_model_called(event)
            case MessagePosted():
                self._on_message(event)
            case ApprovalDecided():
                self._on_approval_decided(event)
            case ExecutionStarted():
                self._on_execution_started(event)
            case ExecutionFinished():
                self._on_execution_finished(event)
            case Notice():
                mark = {"info": "ℹ", "warning": "⚠", "error": "✘"}[event.level]
                style = _NOTICE_STYLES[event.level]
                self.console.print(Text(f"{mark} {event.text}", style=style))
            case TokenDelta() | ApprovalRequested() | RunFinished() | ExecutionOutput():
                # streamed above; the approver shows the request; the end below; a
                # terminal prints a step's outputs once, when it has run
                pass
            case _:
                assert_never(event)

    def close(self) -> None:
        """Stop the spinner, if one is running (after an interrupted run)."""
        self._stop_status()

    # --- progress --------------------------------------------------------------------

    def _start_status(self, text: Text) -> None:
        if not self.live or self.quiet:
            return
        if self._status is None:
            self._status = Status(text, console=self.console, spinner="dots")
            self._status.start()
        else:
            self._status.update(text)

    def _stop_status(self) -> None:
        status, self._status = self._status, None
        if status is not None:
            status.stop()

    def _on_delta(self, event: TokenDelta) -> None:
        if not self.live or self.quiet:
            return  # whole replies are shown when they are complete
        size, tail = self._streamed.get(event.agent, (0, ""))
        size, tail = size + len(event.text), (tail + event.text)[-200:]
        self._streamed[event.agent] = (size, tail)
        line = Text.assemble(
            (event.agent, f"bold {_colour(event.agent)}"),
            (f" thinking… ~{(size + 3) // 4:,} tokens ", "dim"),  # as estimate_tokens
        )
        room = max(self.console.width - line.cell_len - 4, 0)  # one line, spinner included
        line.append(" ".join(tail.split())[-room:] if room else "", style="italic")
        line.no_wrap = True
        line.overflow = "crop"
        self._start_status(line)

    # --- handlers ----------------------------------------------------------------------

    def _on_run_started(self, event: RunStarted) -> None:
        lines = Text()
        lines.append("task  ", style="bold")
        lines.append(event.task.strip())
        models = ", ".join(f"{agent}={model}" for agent, model in event.models.items())
        lines.append("\nmodels  ", style="bold")
        lines.append(models)
        lines.append("\napprove  ", style="bold")
        lines.append(event.approve)
        if event.data:
            lines.append("\ndata  ", style="bold")
            lines.append(", ".join(event.data))
        self.console.print(Panel(lines, title="agentnb", title_align="left", border_style="blue"))

    def _on_data_ready(self, event: DataReady) -> None:
        self.console.print(Text(f"data ready: {', '.join(event.names)}", style="bold blue"))
        lines = event.summary.strip().splitlines()
        shown = "\n".join(lines[:20]) + (f"\n… ({len(lines) - 20} more lines)" * (len(lines) > 20))
        if shown:
            self.console.print(_indent(Text(shown, style="dim")))

    def _on_model_called(self, event: ModelCalled) -> None:
        asked = self.record.asked.get(event.agent)
        doing = {
            "propose": "",
            "review_step": f" reviews {subject(asked.step)}" if asked else "",
            "review_final": f" reviews {subject(None)}",
            "select": " chooses who speaks",
            "setup": "",
        }[asked.phase if asked else "propose"]
        usage = event.usage
        facts = [
            event.model,
            f"{_count(usage.prompt_tokens, usage.estimated)} → "
            f"{_count(usage.completion_tokens, usage.estimated)} tokens",
            f"{event.duration:.1f} s",
        ]
        if event.cached:
            facts.append("cached")
        self.console.print()
        self.console.print(
            Text.assemble(
                ("● ", _colour(event.agent)),
                (event.agent, f"bold {_colour(event.agent)}"),
                (doing, _colour(event.agent)),
                ("  " + " · ".join(facts), "dim"),
            )
        )

    def _on_message(self, event: MessagePosted) -> None:
        message = event.message
        match message:
            case Proposal():
                head = Text(f"proposes {subject(message.step)}", style="bold")
                self.console.print(_indent(head))
                if message.rationale.strip():
                    self.console.print(_indent(Text(message.rationale.strip())))
                self.console.print(_indent(_code(message.code)))
            case Review():
                style = "bold green" if message.verdict == "approve" else "bold yellow"
                line = Text.assemble(
                    (message.verdict.upper(), style), (f" {subject(message.step)}", "dim")
                )
                if message.text.strip():
                    line.append(": ")
                    line.append(message.text.strip())
                self.console.print(_indent(line))
            case FinalReport():
                self.console.print(_indent(Text("final report", style="bold")))
                self.console.print(
                    _indent(Panel(Text(message.text.strip()), border_style="green", expand=False))
                )
            case Feedback():
                where = f" on {subject(message.step)}" if message.step else ""
                self.console.print(
                    Text.assemble(
                        ("● ", _colour(message.sender)),
                        (message.sender, f"bold {_colour(message.sender)}"),
                        (f" feedback{where}: ", _colour(message.sender)),
                        message.text.strip(),
                    )
                )
            case StepResult():
                pass  # shown as it finished (ExecutionFinished)
            case _:
                assert_never(message)

    def _on_approval_decided(self, event: ApprovalDecided) -> None:
        what = subject(event.request.step)
        action = event.decision.action
        words = {
            "approve": f"approved {what}",
            "edit": f"edited {what}",
            "reject": f"rejected {what}",
            "stop": f"stopped the run at {what}",
        }[action]
        style = {"approve": "green", "edit": "cyan", "reject": "yellow", "stop": "red"}[action]
        line = Text.assemble(("● ", style), ("you ", "bold"), (words, style))
        if action == "reject" and event.decision.feedback.strip():
            line.append(f": {event.decision.feedback.strip()}")
        self.console.print(line)

    def _on_execution_started(self, event: ExecutionStarted) -> None:
        if event.step == 0:
            label = "loading the data…"
        else:
            label = f"running {subject(event.step)}…"
            step = self.record.steps[event.step]
            if step.edited:
                self.console.print(Text(f"{subject(event.step)} as edited:", style="bold cyan"))
                self.console.print(_indent(_code(event.code)))
        if self.live:
            self._start_status(Text(label, style="blue"))
        else:
            self.console.print(Text(label, style="blue"))

    def _on_execution_finished(self, event: ExecutionFinished) -> None:
        execution = event.execution
        what = "data" if event.step == 0 else subject(event.step)
        style = _STATUS_STYLES.get(execution.status, "red")
        head = Text.assemble(
            ("▶ ", style),
            (what, "bold"),
            (f" {execution.status}", f"bold {style}"),
            (f"  {execution.duration:.1f} s", "dim"),
        )
        if execution.restarted:
            head.append("  (the kernel was restarted)", style="yellow")
        self.console.print(head)
        if execution.note:
            self.console.print(_indent(Text(execution.note, style="yellow")))
        if event.step == 0 and execution.ok:
            return
        for text in _output_texts(execution, self.output_limit):
            self.console.print(_indent(text))

    # --- the end ---------------------------------------------------------------------

    def _finished(self) -> None:
        record = self.record
        reason = record.reason
        assert reason is not None
        self.console.print()
        if reason.outcome == "approved":
            self.console.print(Text(f"✔ {reason.message}", style="bold green"))
        else:
            line = Text.assemble(("✘ stopped ", "bold red"), (f"({reason.kind})", "red"))
            line.append(f": {reason.message}")
            self.console.print(line)
        if record.usage:
            self.console.print(self.usage_table(record.usage, record.cost))

    def usage_table(self, usage: Mapping[str, Usage], total_cost: float | None) -> Table:
        """Calls, tokens and dollars per agent (the record's), and a total row."""
        table = Table(title="usage", title_justify="left", show_footer=True)
        total = Usage()
        for agent in usage:
            total = total + usage[agent]
        columns = (
            ("agent", "total", "left"),
            ("calls", self._calls(total), "right"),
            ("prompt tokens", _count(total.prompt_tokens, total.estimated), "right"),
            ("completion tokens", _count(total.completion_tokens, total.estimated), "right"),
            ("cost", _money(total_cost), "right"),
        )
        for header, footer, justify in columns:
            table.add_column(header, footer=footer, justify=justify)  # type: ignore[arg-type]
        for agent, used in usage.items():
            table.add_row(
                Text(agent, style=_colour(agent)),
                self._calls(used),
                _count(used.prompt_tokens, used.estimated),
                _count(used.completion_tokens, used.estimated),
                _money(self.record.costs.get(agent)),
            )
        return table

    @staticmethod
    def _calls(usage: Usage) -> str:
        return f"{usage.calls} ({usage.cached} cached)" if usage.cached else str(usage.calls)


# --- approvals -------------------------------------------------------------------------


def _read_line(prompt: str) -> str:
    """``input`` with the prompt on stderr, so that stdout carries only the report."""
    sys.stderr.write(prompt)
    sys.stderr.flush()
    return input()


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking call in a daemon thread without blocking the event loop.

    Not ``asyncio.to_thread``: the executor's threads are joined when the
    interpreter exits, so a prompt left waiting for a line (the run was stopped
    by Ctrl-C) would keep ``agentnb`` from exiting until Enter was pressed.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the awaiting coroutine
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(settle, None, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=work, name="agentnb-input", daemon=True).start()
    return await future


class _EndOfInput(Exception):
    pass


class TerminalApprover:
    """Asks the user at the terminal to approve, edit, reject or stop.

    Args:
        console: where requests are shown (default: a console on stderr).
        input_fn: reads one line, given a prompt (default: ``input`` with the
            prompt on stderr). Raises EOFError at the end of the input.
        editor: the command that edits a file (default ``$VISUAL``, then
            ``$EDITOR``); without one, replacement text is read from the prompt.
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        input_fn: Callable[[str], str] | None = None,
        editor: str | None = None,
    ) -> None:
        self.console = console or Console(stderr=True)
        self.input_fn = input_fn or _read_line
        self.editor = editor

    async def decide(self, request: ApprovalRequest) -> Decision:
        self._show(request)
        try:
            return await self._ask(request)
        except _EndOfInput:
            self.console.print(
                Text("no more input (end of file): stopping the run", style="bold red")
            )
            return Decision.stop()

    async def _line(self, prompt: str) -> str:
        try:
            return await _in_thread(self.input_fn, prompt)
        except EOFError:
            raise _EndOfInput from None

    async def _ask(self, request: ApprovalRequest) -> Decision:
        prompt = f"{subject(request.step)}: [a]pprove / [e]dit / [r]eject / [s]top > "
        while True:
            answer = (await self._line(prompt)).strip().lower()
            if answer in ("a", "approve", "y", "yes"):
                return Decision.approve()
            if answer in ("s", "stop", "q", "quit"):
                return Decision.stop()
            if answer in ("r", "reject", "n", "no"):
                feedback = await self._line("feedback for the analyst (one line) > ")
                return Decision.reject(feedback.strip())
            if answer in ("e", "edit"):
                edited = await self._edit(request)
                if edited is not None:
                    return Decision.edit(edited)
                continue
            self.console.print(
                Text("answer a (approve), e (edit), r (reject) or s (stop)", style="yellow")
            )

    async def _edit(self, request: ApprovalRequest) -> str | None:
        """The replacement code (or report), or None when nothing changed."""
        original = request.code if request.kind == "step" else request.text
        editor = self.editor or os.environ.get("VISUAL") or os.environ.get("EDITOR")
        if editor:
            edited = await self._edit_in(editor, original, request.kind)
        else:
            edited = await self._edit_at_prompt(request.kind)
        if edited is None:
            return None
        if not edited.strip():
            self.console.print(Text("nothing was entered; asking again", style="yellow"))
            return None
        if edited.strip() == original.strip():
            self.console.print(Text("nothing was changed; asking again", style="yellow"))
            return None
        if request.kind == "step":
            self.console.print(Text("your version:", style="bold cyan"))
            self.console.print(_indent(_code(edited)))
        return edited

    async def _edit_in(self, editor: str, original: str, kind: str) -> str | None:
        suffix = ".py" if kind == "step" else ".md"
        handle, name = tempfile.mkstemp(prefix="agentnb-edit-", suffix=suffix)
        path = Path(name)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(original if original.endswith("\n") else original + "\n")
            try:
                done = await asyncio.to_thread(
                    subprocess.run, [*shlex.split(editor), str(path)], check=False
                )
            except OSError as exc:
                self.console.print(
                    Text(f"could not run the editor {editor!r}: {exc}; asking again", "red")
                )
                return None
            if done.returncode != 0:
                self.console.print(
                    Text(
                        f"the editor {editor!r} exited with status {done.returncode}; "
                        "the edit was dropped",
                        style="yellow",
                    )
                )
                return None
            return path.read_text("utf-8")
        finally:
            path.unlink(missing_ok=True)

    async def _edit_at_prompt(self, kind: str) -> str | None:
        what = "code" if kind == "step" else "report"
        self.console.print(
            Text(
                f"enter the new {what}; end with a line containing only a dot (.)",
                style="cyan",
            )
        )
        lines: list[str] = []
        while True:
            line = await self._line("… ")
            if line.strip() == ".":
                return "\n".join(lines)
            lines.append(line)

    def _show(self, request: ApprovalRequest) -> None:
        body: list[Any] = []
        if request.kind == "step":
            title = f"approve {subject(request.step)}?"
            if request.text.strip():
                body.append(Text(request.text.strip()))
            body.append(_code(request.code))
        else:
            title = f"accept {subject(None)}?"
            body.append(Text(request.text.strip()))
        for review in request.reviews:
            body.append(Text(review, style="magenta"))
        self.console.print(
            Panel(Group(*body), title=title, title_align="left", border_style="yellow")
        )

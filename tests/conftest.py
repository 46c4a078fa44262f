"""Shared fixtures: real managed kernels, a fake one for the engine's own logic, and a way
to check that processes are gone."""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import os
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import nbformat
import pytest

from agentnb import Execution, KernelConfig, ManagedKernel
from agentnb.chat.events import AgentThinking, Event, ExecutionStarted
from agentnb.chat.group import GroupChat, RunResult
from agentnb.chat.messages import ExecutionStatus
from agentnb.chat.roles import ANALYST, CRITIC
from agentnb.kernel.outputs import Output
from agentnb.models.scripted import ScriptedModel
from agentnb.models.server import Fault, ScriptedServer
from agentnb.run import arun

from .processes import alive, free_port, process_state

# Kernels under test are small and quick: no preloaded libraries unless a test
# asks for them, short limits so failure paths finish in seconds.
FAST = KernelConfig(step_timeout=20, interrupt_grace=2, preload=())


@pytest.fixture(scope="session")
async def shared_kernel(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ManagedKernel]:
    """One warm kernel for tests that neither restart, kill nor reconfigure it; its
    sandbox lets it read the tests' data files, in pytest's temporary folders."""
    readable = (str(tmp_path_factory.getbasetemp()),)
    config = KernelConfig(step_timeout=30, interrupt_grace=2, readable=readable)
    async with ManagedKernel(config) as kernel:
        yield kernel


@pytest.fixture
async def make_kernel() -> AsyncIterator[Callable[..., ManagedKernel]]:
    """Build kernels with any config (not started); all are shut down afterwards."""
    made: list[ManagedKernel] = []

    def make(**config: object) -> ManagedKernel:
        base = {f: getattr(FAST, f) for f in ("step_timeout", "interrupt_grace", "preload")}
        kernel = ManagedKernel(KernelConfig(**{**base, **config}))  # type: ignore[arg-type]
        made.append(kernel)
        return kernel

    yield make
    for kernel in made:
        await kernel.shutdown()


@pytest.fixture
async def kernel(make_kernel: Callable[..., ManagedKernel]) -> ManagedKernel:
    """A fresh, started kernel of its own, for tests that hurt it."""
    fresh = make_kernel()
    await fresh.start()
    return fresh


def host_pids(*argv: str) -> list[int]:
    """Live processes of this machine running exactly ``argv``. A sandboxed kernel's
    code sees the pids of its own PID namespace, so tests find its processes here."""
    wanted = "\0".join(argv).encode() + b"\0"
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and Path(f"/proc/{entry}/cmdline").read_bytes() == wanted:
                found.append(int(entry))
        except OSError:
            continue
    return [pid for pid in found if alive(pid)]


@pytest.fixture
def wait_gone() -> Callable[..., bool]:
    """``wait_gone(pid, within=s)``: True once the process no longer exists.

    A zombie whose parent is gone counts as gone: only init can reap it, and it
    runs nothing.
    """

    def wait(pid: int, within: float = 10.0, zombie_ok: bool = False) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            state = process_state(pid)
            if state is None or (zombie_ok and state == "Z"):
                return True
            time.sleep(0.05)
        return False

    return wait


@pytest.fixture
async def run_later() -> Callable[..., asyncio.Task[None]]:
    """``run_later(seconds, coroutine_function)``: call it after a delay, as a task."""

    def schedule(delay: float, action: Callable[[], object]) -> asyncio.Task[None]:
        async def later() -> None:
            await asyncio.sleep(delay)
            result = action()
            if asyncio.iscoroutine(result):
                await result

        return asyncio.ensure_future(later())

    return schedule


@pytest.fixture
def server() -> Iterator[Callable[..., ScriptedServer]]:
    """``server(*replies, **options)``: a started ScriptedServer, stopped after the test."""
    started: list[ScriptedServer] = []

    def start(*replies: str | Fault, **options: Any) -> ScriptedServer:
        srv = ScriptedServer(replies, **options).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    return free_port()


# --- a notebook's own kernel -------------------------------------------------------


class Cell:
    """``await cell(source)`` runs a cell in the notebook's kernel (``cell.kernel``)."""

    def __init__(self, kernel: ManagedKernel) -> None:
        self.kernel = kernel

    async def __call__(self, source: str) -> Execution:
        return await self.kernel.execute(source)


@pytest.fixture
def make_cell(
    make_kernel: Callable[..., ManagedKernel], tmp_path: Path
) -> Callable[..., Awaitable[Cell]]:
    """``await make_cell(**kernel_config)``: a notebook's own kernel (a real ipykernel
    working in ``tmp_path``) that loaded agentnb and has a small ``sales`` DataFrame.
    Its cells are sent as a frontend sends them, so the input transformer, the async
    cell and the nested managed kernel are all real; without a frontend nobody renders
    the widget, which is also how nbclient and papermill run a notebook."""

    async def make(**config: object) -> Cell:
        # the user's own kernel is never sandboxed: the managed kernel it starts is
        notebook = make_kernel(
            **{"step_timeout": 90, "cwd": str(tmp_path), "sandbox": False, **config}
        )
        await notebook.start()
        cell = Cell(notebook)
        # a user's kernel has no tidy-up of agentnb's: it would end the managed
        # kernels that a cell starts (a restart, --new) as the cell's leftovers
        untidy = await cell(
            "from agentnb_inside import _Tidy\n"
            "for _event, _callbacks in get_ipython().events.callbacks.items():\n"
            "    for _cb in list(_callbacks):\n"
            "        if isinstance(getattr(_cb, '__self__', None), _Tidy):\n"
            "            get_ipython().events.unregister(_event, _cb)"
        )
        assert untidy.status == "ok", untidy.to_model_text()
        setup = await cell(
            "%load_ext agentnb\n"
            "import pandas as pd\n"
            "sales = pd.DataFrame({'region': ['North', 'South', 'North'], 'revenue': [10, 12, 20]})"
        )
        assert setup.status == "ok", setup.to_model_text()
        return cell

    return make


@pytest.fixture
async def cell(make_cell: Callable[..., Awaitable[Cell]]) -> Cell:
    """``await cell(source)``: run a cell in a notebook kernel that loaded agentnb."""
    return await make_cell()


def step(code: str, why: str = "Next step.") -> str:
    """An author's reply that proposes ``code``."""
    return f"{why}\n\n```python\n{code}\n```"


def script(tmp_path: Path, analyst: list[str], critic: list[str], name: str = "r.json") -> Path:
    """A file of scripted replies per role, for ``--model scripted:PATH``."""
    path = tmp_path / name
    path.write_text(json.dumps({"analyst": analyst, "critic": critic}))
    return path


def value(execution: Execution) -> Any:
    """The value a cell ended with (a literal)."""
    assert execution.status == "ok", execution.to_model_text()
    results = [o for o in execution.outputs if o["output_type"] == "execute_result"]
    return ast.literal_eval(results[-1]["data"]["text/plain"])


async def outcome(cell: Cell) -> object:
    """The current analysis' stop reason kind and its steps' statuses."""
    return value(
        await cell("r = %agents result\n(r.stop_reason.kind, [s.status for s in r.steps])")
    )


def usage_error(execution: Execution) -> str:
    """IPython's one-line usage error (on stderr, no traceback), without its prefix."""
    assert execution.status == "error"
    assert not [o for o in execution.outputs if o["output_type"] == "error"]
    (line,) = [o["text"] for o in execution.outputs if o.get("name") == "stderr"]
    assert line.startswith("UsageError: ")
    return line.removeprefix("UsageError: ").strip()


def text(execution: Execution) -> str:
    """Everything a cell printed or returned, as text."""
    return "".join(
        o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in execution.outputs
    )


KERNEL_FIXTURES = {"shared_kernel", "make_kernel", "kernel"}


E = TypeVar("E", bound=Event)


@dataclass
class Run:
    result: RunResult
    events: list[Event]
    model: ScriptedModel
    transcript: Path

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def speakers(self) -> list[str]:
        """Who spoke, in order, with ``run`` for each execution of a step."""
        order = []
        for e in self.events:
            if isinstance(e, AgentThinking):
                order.append(e.agent)
            elif isinstance(e, ExecutionStarted) and e.step > 0:
                order.append("run")
        return order

    def prompts(self, role: str) -> list[str]:
        """The text of every prompt ``role`` received, system prompt left out."""
        return self.model.prompt_texts(role)


ChatRunner = Callable[..., Awaitable[Run]]


def _model_and_observer(
    replies: Mapping[str, Sequence[str]] | None, options: dict[str, Any]
) -> tuple[ScriptedModel, list[Event], Callable[[Event], None]]:
    """The run's model (``options["model"]`` or the replies scripted) and an observer that
    collects its events (and passes them on to ``options["on_event"]``)."""
    model = options.pop("model", None) or ScriptedModel(dict(replies or {}))
    events: list[Event] = []
    also = options.pop("on_event", None)

    def observe(event: Event) -> None:
        events.append(event)
        if also is not None:
            also(event)

    return model, events, observe


@pytest.fixture
def chat(shared_kernel: ManagedKernel, tmp_path: Path) -> ChatRunner:
    """``await chat({"analyst": [...], "critic": [...]}, **arun_options)`` → :class:`Run`."""

    async def go(
        replies: Mapping[str, Sequence[str]] | None = None,
        task: str = "Find out something about the numbers.",
        **options: Any,
    ) -> Run:
        model, events, observe = _model_and_observer(replies, options)
        transcript = options.pop("transcript", None) or tmp_path / f"run-{id(events)}.jsonl"
        result = await arun(
            task,
            model=model,
            kernel=shared_kernel,
            transcript=transcript,
            on_event=observe,
            **options,
        )
        return Run(result, events, model, transcript)

    return go


# --- the engine without a kernel ------------------------------------------------------


class FakeKernel:
    """An in-process stand-in for :class:`ManagedKernel` where a test is about the chat's
    own logic (its ``Executor`` protocol: ``execute`` and ``interrupt``).

    Each step runs with ``exec`` in one namespace, so a step sees the variables of the
    steps before it. ``print`` becomes a stdout stream output, the value of a last
    expression an ``execute_result``, an exception an ``error`` output (status
    ``error``). Top-level ``await`` works: a step that awaits (``await asyncio.sleep(30)``)
    can be interrupted (status ``interrupted``) or run out of time (``timeout``), its
    output so far kept, as in a real kernel.

    ``ran`` lists the code of every step in the order it ran. The real kernel stays at
    the seams a user touches: this fake is for engine tests only.
    """

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {}
        self.ran: list[str] = []
        self.interrupts = 0
        self._step: asyncio.Future[None] | None = None
        self._count = 0

    async def execute(self, code: str, *, timeout: float | None = None) -> Execution:
        self.ran.append(code)
        self._count += 1
        outputs: list[Output] = []
        started = time.monotonic()
        self._step = step = asyncio.ensure_future(self._run(code, outputs))
        interrupts = self.interrupts
        try:
            await asyncio.wait({step}, timeout=timeout)
        finally:
            self._step = None
        status: ExecutionStatus = "ok"
        if not step.done():
            step.cancel()
            status = "timeout"
        elif step.cancelled():
            status = "interrupted" if self.interrupts > interrupts else "timeout"
        elif (error := step.exception()) is not None:
            status = "error"
            outputs.append(_error_output(error))
        return Execution(
            code=code,
            status=status,
            outputs=tuple(outputs),
            execution_count=self._count,
            duration=time.monotonic() - started,
        )

    async def interrupt(self) -> None:
        self.interrupts += 1
        if self._step is not None:
            self._step.cancel()

    async def _run(self, code: str, outputs: list[Output]) -> None:
        def write(*values: object, sep: str | None = " ", end: str | None = "\n", **_: Any) -> None:
            text = (sep if sep is not None else " ").join(map(str, values))
            text += end if end is not None else "\n"
            if outputs and outputs[-1].get("name") == "stdout":
                outputs[-1]["text"] += text
            else:
                outputs.append(nbformat.v4.new_output("stream", name="stdout", text=text))

        self.namespace["print"] = write
        tree = ast.parse(code)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        await self._eval(ast.Module(body=tree.body, type_ignores=[]), "exec")
        if last is not None:
            value = await self._eval(ast.Expression(body=last.value), "eval")
            if value is not None:
                data = {"text/plain": repr(value)}
                outputs.append(
                    nbformat.v4.new_output("execute_result", data=data, execution_count=self._count)
                )

    async def _eval(self, tree: ast.Module | ast.Expression, mode: str) -> Any:
        compiled = compile(tree, "<step>", mode, flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(compiled, self.namespace)
        if compiled.co_flags & inspect.CO_COROUTINE:
            result = await result
        return result


def _error_output(exc: BaseException) -> Output:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<step>"]
    lines = [
        "Traceback (most recent call last):\n",
        *traceback.format_list(frames),
        *traceback.format_exception_only(type(exc), exc),
    ]
    return nbformat.v4.new_output(
        "error", ename=type(exc).__name__, evalue=str(exc), traceback=lines
    )


@pytest.fixture
def fake_kernel() -> FakeKernel:
    """A :class:`FakeKernel`: steps run in this process, in milliseconds."""
    return FakeKernel()


@pytest.fixture
def fast_chat(fake_kernel: FakeKernel, tmp_path: Path) -> ChatRunner:
    """``await fast_chat({"analyst": [...], "critic": [...]}, **group_chat_options)`` →
    :class:`Run`: a :class:`GroupChat` of the analyst and the critic (or ``roles=``) on
    ``fake_kernel``, with the scripted replies; no kernel process, no ``arun``."""

    async def go(
        replies: Mapping[str, Sequence[str]] | None = None,
        task: str = "Find out something about the numbers.",
        **options: Any,
    ) -> Run:
        model, events, observe = _model_and_observer(replies, options)
        roles = options.pop("roles", None) or [ANALYST, CRITIC]
        transcript = options.pop("transcript", None) or tmp_path / f"run-{id(events)}.jsonl"
        group = GroupChat(
            roles=roles,
            models={role.name: model for role in roles},
            executor=fake_kernel,
            transcript=transcript,
            observers=[observe],
            **options,
        )
        result = await group.run(task)
        return Run(result, events, model, transcript)

    return go


async def rerun(path: Path) -> Any:
    """Execute a saved notebook in a fresh python3 kernel in its own folder
    ("Restart & Run All"); raises nbclient's CellExecutionError on any error."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    await client.async_execute()
    return nb


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tier markers: a test in tests/kernel/ or using a kernel fixture starts real kernels;
    tests/browser/ drives a real browser; ``llama`` tests mark themselves."""
    for item in items:
        if any(item.get_closest_marker(m) for m in ("quality", "kernel", "llama")):
            continue
        if "browser" in Path(str(item.path)).parts[-2:-1]:
            item.add_marker(pytest.mark.browser)
            continue
        in_folder = "kernel" in Path(str(item.path)).parts[-2:-1]
        uses = KERNEL_FIXTURES & set(getattr(item, "fixturenames", ()))
        item.add_marker(pytest.mark.kernel if in_folder or uses else pytest.mark.unit)


assert os.name == "posix", "agentnb's managed kernel needs a POSIX system"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run in which no test passed is a failure, never a green CI."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if exitstatus == 0 and reporter is not None and not reporter.stats.get("passed"):
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED

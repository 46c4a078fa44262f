"""Shared fixtures: real managed kernels, and a way to check that processes are gone."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentnb import Execution, KernelConfig, ManagedKernel
from agentnb.models.server import Fault, ScriptedServer

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


def process_state(pid: int) -> str | None:
    """The process's state letter from /proc (Z = zombie), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


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
    return [pid for pid in found if process_state(pid) not in (None, "Z")]


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
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
        await cell(
            "from agentnb import magics\n"
            "r = magics._session.current.result\n"
            "(r.stop_reason.kind, [s.status for s in r.steps])"
        )
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

"""Shared fixtures: real managed kernels, and a way to check that processes are gone."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agentnb import KernelConfig, ManagedKernel

# Kernels under test are small and quick: no preloaded libraries unless a test
# asks for them, short limits so failure paths finish in seconds.
FAST = KernelConfig(step_timeout=20, interrupt_grace=2, preload=())


@pytest.fixture(scope="session")
async def shared_kernel() -> AsyncIterator[ManagedKernel]:
    """One warm kernel for tests that neither restart, kill nor reconfigure it."""
    async with ManagedKernel(KernelConfig(step_timeout=30, interrupt_grace=2)) as kernel:
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


KERNEL_FIXTURES = {"shared_kernel", "make_kernel", "kernel"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tier markers: a test in tests/kernel/ or using a kernel fixture starts real kernels;
    tests/browser/ drives a real browser."""
    for item in items:
        if item.get_closest_marker("quality") or item.get_closest_marker("kernel"):
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

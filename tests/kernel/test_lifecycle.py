"""Starting, pre-warming, restarting and shutting down managed kernels."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agentnb import KernelConfig, KernelError, KernelStartError, ManagedKernel, SyncBridge
from agentnb.kernel import leftovers

from ..conftest import FAST, host_pids


async def test_prewarm_returns_at_once_and_the_first_step_finds_a_kernel(
    make_kernel: Callable[..., ManagedKernel],
) -> None:
    kernel = make_kernel()
    kernel.prewarm()
    assert not kernel.is_started  # the start goes on in the background
    for _ in range(200):
        if kernel.is_started:
            break
        await asyncio.sleep(0.05)
    assert kernel.is_started
    pid = kernel.pid
    result = await kernel.execute("6 * 7")
    assert result.outputs[0]["data"]["text/plain"] == "42"
    assert kernel.pid == pid  # no second start


async def test_a_failed_prewarm_is_reported_by_the_next_request(
    make_kernel: Callable[..., ManagedKernel], tmp_path: Path
) -> None:
    kernel = make_kernel(cwd=str(tmp_path / "missing"))
    kernel.prewarm()
    with pytest.raises(KernelStartError, match=r"working directory .* does not exist"):
        await kernel.execute("1")


@pytest.fixture
def bare_python(tmp_path: Path) -> str:
    """An interpreter without ipykernel: a venv made without pip or packages."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True
    )
    return str(tmp_path / "bare" / "bin" / "python")


async def test_a_kernel_that_cannot_start_says_why(
    make_kernel: Callable[..., ManagedKernel], bare_python: str
) -> None:
    kernel = make_kernel(python=bare_python, startup_timeout=20)
    with pytest.raises(KernelStartError) as caught:
        await kernel.start()
    message = str(caught.value)
    assert "exited with code 1" in message
    assert "No module named ipykernel_launcher" in message
    assert "Check that ipykernel is installed" in message


async def test_a_kernel_that_dies_while_being_set_up_says_so(
    make_kernel: Callable[..., ManagedKernel], tmp_path: Path
) -> None:
    (tmp_path / "crashing_import.py").write_text("import os\nos._exit(5)\n")
    kernel = make_kernel(cwd=str(tmp_path), preload=("crashing_import",))
    with pytest.raises(KernelStartError, match="exited with code 5 while being set up"):
        await kernel.start()


@pytest.mark.parametrize("sandbox", [True, False], ids=["sandboxed", "unsandboxed"])
async def test_shutdown_leaves_no_process_behind(
    make_kernel: Callable[..., ManagedKernel], wait_gone: Callable[..., bool], sandbox: bool
) -> None:
    kernel = make_kernel(sandbox=sandbox)
    # still running at shutdown: one child in the kernel's group, one daemon that left it
    running = asyncio.ensure_future(
        kernel.execute(
            "import subprocess, time\n"
            "child = subprocess.Popen(['sleep', '1000.25'])\n"
            "daemon = subprocess.Popen(['sleep', '1000.5'], start_new_session=True)\n"
            "time.sleep(60)"
        )
    )
    deadline = time.monotonic() + 20
    while len(host_pids("sleep", "1000.25") + host_pids("sleep", "1000.5")) < 2:
        assert time.monotonic() < deadline, "the step's processes never started"
        await asyncio.sleep(0.05)
    children = host_pids("sleep", "1000.25")
    daemons = host_pids("sleep", "1000.5")
    kernel_pid = kernel.pid
    assert kernel_pid is not None
    private_dir = kernel.log_path.parent if kernel.log_path else None
    await kernel.shutdown()
    await asyncio.gather(running, return_exceptions=True)
    assert wait_gone(kernel_pid, within=5)
    # the child is killed with the kernel's process group; only init can reap it
    assert all(wait_gone(pid, within=5, zombie_ok=True) for pid in children)
    if sandbox:  # the sandbox's PID namespace ends with it, daemons included
        assert all(wait_gone(pid, within=5, zombie_ok=True) for pid in daemons)
    else:  # an unsandboxed kernel's daemon is out of reach: the README says so
        for pid in daemons:
            os.kill(pid, signal.SIGKILL)
    assert private_dir is not None
    assert not private_dir.exists()
    await kernel.shutdown()  # twice is fine
    with pytest.raises(KernelError, match="has been shut down"):
        await kernel.execute("1")


async def test_close_returns_at_once_and_the_kernel_goes(
    make_kernel: Callable[..., ManagedKernel], wait_gone: Callable[..., bool]
) -> None:
    kernel = make_kernel()
    await kernel.start()
    pid = kernel.pid
    assert pid is not None
    kernel.close()  # not awaited: the shutdown goes on as a task
    with pytest.raises(KernelError, match="has been shut down"):
        await kernel.execute("1")
    gone = False
    for _ in range(100):  # let the shutdown task run on this loop
        await asyncio.sleep(0.05)
        gone = wait_gone(pid, within=0.01)
        if gone:
            break
    assert gone


async def test_a_restart_that_fails_is_retried_by_the_next_request(
    make_kernel: Callable[..., ManagedKernel], tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    kernel = make_kernel(cwd=str(workdir))
    await kernel.start()
    shutil.rmtree(workdir)  # the kernel cannot start there any more
    with pytest.raises(KernelStartError, match="does not exist"):
        await kernel.execute("import os\nos._exit(1)")
    workdir.mkdir()
    result = await kernel.execute("'back'")
    assert result.outputs[0]["data"]["text/plain"] == "'back'"


async def test_a_forgotten_kernel_is_killed_when_collected(
    wait_gone: Callable[..., bool],
) -> None:
    kernel = ManagedKernel(FAST)
    await kernel.start()
    pid = kernel.pid
    assert pid is not None
    del kernel
    gc.collect()
    assert wait_gone(pid, within=5)


def test_the_kernel_dies_with_the_process_that_started_it(
    wait_gone: Callable[..., bool], tmp_path: Path
) -> None:
    script = tmp_path / "owner.py"
    script.write_text(
        textwrap.dedent("""
        import asyncio, sys, time
        from agentnb import KernelConfig, ManagedKernel
        async def main():
            kernel = ManagedKernel(KernelConfig(preload=()))
            await kernel.start()
            print(kernel.pid, kernel.log_path.parent, flush=True)
            await asyncio.sleep(600)
        asyncio.run(main())
    """)
    )
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        pid, folder = owner.stdout.readline().split()
        kernel_pid = int(pid)
        os.kill(owner.pid, signal.SIGKILL)  # no cleanup code gets to run
        owner.wait()
        # ipykernel's parent poller ends a kernel whose parent is gone
        assert wait_gone(kernel_pid, within=15, zombie_ok=True)
        # its folder (connection file, key, log) is left; the next process removes it
        assert Path(folder).is_dir()
        assert Path(folder) in leftovers.sweep(str(Path(folder).parent), force=True)
        assert not Path(folder).exists()
    finally:
        owner.kill()


async def test_restart_gives_a_fresh_process_with_the_data_reloaded(
    kernel: ManagedKernel, wait_gone: Callable[..., bool]
) -> None:
    await kernel.push("regions", ["north", "south"])
    await kernel.execute("scratch = 1")
    old = kernel.pid
    assert old is not None
    await kernel.restart()
    assert kernel.pid != old
    assert wait_gone(old)
    result = await kernel.execute("('scratch' in dir(), regions)")
    assert result.outputs[0]["data"]["text/plain"] == "(False, ['north', 'south'])"


async def test_the_sync_bridge_drives_a_kernel_from_blocking_code() -> None:
    # called from inside a running event loop, as in a notebook cell
    bridge = SyncBridge()
    kernel = ManagedKernel(FAST)
    try:
        bridge.run(kernel.start())
        assert bridge.run(kernel.execute("6 * 7")).outputs[0]["data"]["text/plain"] == "42"
        with pytest.raises(TimeoutError):
            bridge.run(kernel.execute("import time\ntime.sleep(60)"), timeout=1)
        # giving up on a step interrupted it: the kernel is free at once
        free = bridge.run(kernel.execute("'free'", timeout=10))
        assert free.status == "ok"
    finally:
        bridge.run(kernel.shutdown())
        bridge.close()


async def test_the_agents_code_stays_out_of_the_users_history(kernel: ManagedKernel) -> None:
    result = await kernel.execute("get_ipython().history_manager.hist_file")
    assert result.outputs[0]["data"]["text/plain"] == "':memory:'"


async def test_a_kernel_python_can_be_chosen(make_kernel: Callable[..., ManagedKernel]) -> None:
    kernel = make_kernel(python=sys.executable)
    result = await kernel.execute("import sys\nsys.executable")
    assert result.outputs[0]["data"]["text/plain"] == repr(sys.executable)
    assert isinstance(KernelConfig().preload, tuple)


async def test_an_interrupt_while_the_kernel_starts_stops_the_step_before_it_runs(
    make_kernel: Callable[..., ManagedKernel],
) -> None:
    fresh = make_kernel()
    step = asyncio.ensure_future(fresh.execute("import time; time.sleep(30)"))
    await asyncio.sleep(0.05)  # the kernel is still starting
    assert not fresh.is_started
    await fresh.interrupt()
    result = await asyncio.wait_for(step, 30)
    assert result.status == "interrupted"
    assert "before it started" in result.note
    # the kernel works afterwards
    assert (await fresh.execute("print('next')")).stdout == "next\n"

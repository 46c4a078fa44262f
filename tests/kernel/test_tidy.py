"""The tidy-up after every step: cheap when nothing happened, thorough when it did."""

from __future__ import annotations

import asyncio

from agentnb import ManagedKernel

from ..conftest import host_pids

COUNT_WALKS = """\
import agentnb_inside as _inside
_walks = [0]
_walk = _inside._processes_of
def _counted(*args, **kwargs):
    _walks[0] += 1
    return _walk(*args, **kwargs)
_inside._processes_of = _counted
"""


async def test_a_process_left_running_is_ended_and_said(kernel: ManagedKernel) -> None:
    left = await kernel.execute("import subprocess\np = subprocess.Popen(['sleep', '30.4242'])")
    assert left.status == "ok"
    said = "".join(o.get("text", "") for o in left.outputs)
    assert "ended 1 process this step left running: sleep 30.4242" in said
    assert host_pids("sleep", "30.4242") == []
    quiet = await kernel.execute("x = 1")
    assert quiet.outputs == ()


async def test_a_process_started_between_steps_is_not_the_next_steps(
    kernel: ManagedKernel,
) -> None:
    # a thread of the first step starts the process after that step has ended
    first = await kernel.execute(
        "import subprocess, threading, time\n"
        "def later():\n"
        "    time.sleep(0.5)\n"
        "    global p\n"
        "    p = subprocess.Popen(['sleep', '30.5151'])\n"
        "threading.Thread(target=later).start()"
    )
    assert first.outputs == ()
    await asyncio.sleep(1.5)
    second = await kernel.execute("p.poll() is None")
    assert second.outputs[0]["data"]["text/plain"] == "True"  # still running, not ended
    assert len(host_pids("sleep", "30.5151")) == 1
    await kernel.execute("p.kill(); p.wait()")


async def test_steps_that_start_nothing_do_not_walk_proc(kernel: ManagedKernel) -> None:
    assert kernel.sandboxed  # its own PID namespace: nothing else makes processes there
    await kernel.execute(COUNT_WALKS)
    for _ in range(5):
        await kernel.execute("x = 1")
    walks = await kernel.execute("_walks[0]")
    assert walks.outputs[0]["data"]["text/plain"] == "0"
    # a step that starts a process is looked at, before and after
    await kernel.execute("import subprocess\nsubprocess.run(['true'])")
    walks = await kernel.execute("_walks[0]")
    assert int(walks.outputs[0]["data"]["text/plain"]) >= 2

"""Steps that run too long, are stopped, or take the kernel down with them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from agentnb import ManagedKernel


async def test_timeout_interrupts_and_keeps_state(kernel: ManagedKernel) -> None:
    await kernel.execute("x = 41")
    result = await kernel.execute("while True: pass", timeout=1)
    assert result.status == "timeout"
    assert not result.restarted
    assert "longer than 1 s" in result.note
    assert "kept its state" in result.note
    assert result.error is not None
    assert result.error["ename"] == "KeyboardInterrupt"
    after = await kernel.execute("x + 1")
    assert after.outputs[0]["data"]["text/plain"] == "42"


async def test_output_before_a_timeout_is_kept(kernel: ManagedKernel) -> None:
    result = await kernel.execute("print('partial', flush=True)\nwhile True: pass", timeout=1)
    assert result.status == "timeout"
    assert result.stdout == "partial\n"


async def test_a_step_that_ignores_interrupts_gets_a_new_kernel(
    make_kernel: Callable[..., ManagedKernel], wait_gone: Callable[..., bool]
) -> None:
    kernel = make_kernel(interrupt_grace=1)
    await kernel.push("sales", {"north": 3})
    old_pid = kernel.pid
    assert old_pid is not None
    result = await kernel.execute(
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass",
        timeout=1,
    )
    assert result.status == "timeout"
    assert result.restarted
    assert "did not stop when interrupted" in result.note
    assert "loaded again (sales)" in result.note
    assert kernel.pid != old_pid
    assert wait_gone(old_pid)
    after = await kernel.execute("sales['north'] * 2")
    assert after.outputs[0]["data"]["text/plain"] == "6"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("import os\nos._exit(3)", "exited with code 3"),
        (
            "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
            "killed by signal 9 (SIGKILL), which is what the out-of-memory killer sends",
        ),
        ("import ctypes\nctypes.string_at(0)", "killed by signal 11 (SIGSEGV)"),
    ],
    ids=["os._exit", "sigkill", "segfault"],
)
async def test_a_dead_kernel_is_reported_and_replaced(
    kernel: ManagedKernel, wait_gone: Callable[..., bool], code: str, reason: str
) -> None:
    await kernel.execute("y = 1")
    old_pid = kernel.pid
    assert old_pid is not None
    result = await kernel.execute(
        "print('before', flush=True)\nimport time\ntime.sleep(0.3)\n" + code
    )
    assert result.status == "died"
    assert result.restarted
    assert reason in result.note
    assert "variables defined by earlier steps are gone" in result.note
    assert result.stdout == "before\n"
    assert wait_gone(old_pid)
    after = await kernel.execute("'y' in dir()")
    assert after.status == "ok"
    assert after.outputs[0]["data"]["text/plain"] == "False"


async def test_a_segfault_leaves_its_python_stack_in_the_note(kernel: ManagedKernel) -> None:
    result = await kernel.execute("import ctypes\ndef crash():\n    ctypes.string_at(0)\ncrash()")
    assert result.status == "died"
    assert "Fatal Python error: Segmentation fault" in result.note
    assert "in crash" in result.note


async def test_interrupt_on_request(
    kernel: ManagedKernel, run_later: Callable[..., asyncio.Task[None]]
) -> None:
    run_later(0.5, kernel.interrupt)
    result = await kernel.execute("import time\ntime.sleep(30)")
    assert result.status == "interrupted"
    assert not result.restarted
    assert "interrupted on request" in result.note


async def test_a_cancelled_caller_leaves_no_step_running(kernel: ManagedKernel) -> None:
    step = asyncio.ensure_future(kernel.execute("import time\ntime.sleep(60)"))
    await asyncio.sleep(0.5)
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step
    # were the sleep still running, this would wait for it and time out
    result = await kernel.execute("'free'", timeout=10)
    assert result.status == "ok"
    assert result.outputs[0]["data"]["text/plain"] == "'free'"


async def test_cpu_time_limit(make_kernel: Callable[..., ManagedKernel]) -> None:
    kernel = make_kernel(cpu_time_limit=1)
    await kernel.execute("z = 5")
    result = await kernel.execute("try:\n    while True: pass\nexcept Exception:\n    pass")
    assert result.status == "timeout"
    assert "more than 1 s of CPU time" in result.note
    assert not result.restarted
    after = await kernel.execute("z")
    assert after.outputs[0]["data"]["text/plain"] == "5"
    # the limit is per step: the next step gets its own second
    busy = await kernel.execute("sum(range(10_000_000))")
    assert busy.status == "ok"


async def test_memory_limit(make_kernel: Callable[..., ManagedKernel]) -> None:
    kernel = make_kernel(memory_limit=2 * 2**30)
    result = await kernel.execute("big = bytearray(4 * 2**30)")
    assert result.status == "error"
    assert result.error is not None
    assert result.error["ename"] == "MemoryError"
    after = await kernel.execute("small = bytearray(10 * 2**20)\nlen(small)")
    assert after.status == "ok"

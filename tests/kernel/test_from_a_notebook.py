"""agentnb used from inside an ipykernel, as a notebook user's kernel does.

An outer managed kernel plays the user's notebook kernel: its cells create a
second managed kernel, pre-warm it, and await it with top-level await.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from agentnb import ManagedKernel


async def test_prewarm_and_await_from_notebook_cells(
    make_kernel: Callable[..., ManagedKernel], wait_gone: Callable[..., bool]
) -> None:
    notebook = make_kernel(sandbox=False)  # the user's own kernel is not sandboxed
    cells = [
        "from agentnb import KernelConfig, ManagedKernel\n"
        "agents = ManagedKernel(KernelConfig(preload=()))\n"
        "agents.prewarm()",  # returns at once; the start runs on the kernel's loop
        "import asyncio\nawait asyncio.sleep(0)",
        "step = await agents.execute('6 * 7')\nstep.outputs[0]['data']['text/plain']",
        "agents.pid",
    ]
    results = [await notebook.execute(cell) for cell in cells]
    assert [r.status for r in results] == ["ok"] * len(cells)
    # nothing of the managed kernel's own chatter reaches the user's cells
    assert all(r.outputs == () for r in results[:2])
    assert results[2].outputs[0]["data"]["text/plain"] == "'42'"
    inner_pid = int(results[3].outputs[0]["data"]["text/plain"])

    done = await notebook.execute("await agents.shutdown()")
    assert done.status == "ok"
    assert done.outputs == ()
    assert wait_gone(inner_pid, within=5)


async def test_sync_bridge_from_a_sync_notebook_cell(
    make_kernel: Callable[..., ManagedKernel],
) -> None:
    notebook = make_kernel(sandbox=False)  # the user's own kernel is not sandboxed
    result = await notebook.execute(
        "from agentnb import KernelConfig, ManagedKernel, SyncBridge\n"
        "bridge = SyncBridge()\n"
        "agents = ManagedKernel(KernelConfig(preload=()))\n"
        "step = bridge.run(agents.execute('sum(range(10))'))\n"
        "bridge.run(agents.shutdown())\n"
        "step.status, step.outputs[0]['data']['text/plain']"
    )
    assert result.status == "ok", result.to_model_text()
    assert ast.literal_eval(result.outputs[0]["data"]["text/plain"]) == ("ok", "45")

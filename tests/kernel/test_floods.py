"""Floods of output: caps apply to what is finally shown, in the order it came; the
kernel coalesces a flood before the IOPub socket; and a step whose last messages
were dropped anyway ends from its reply, with the kernel's state kept."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from agentnb import KernelConfig, ManagedKernel
from agentnb.kernel import LocalBackend
from agentnb.kernel.backend import Message
from agentnb.kernel.sandbox import SandboxSettings, default_memory_limit

CLEAR_LOOP = (
    "from IPython.display import clear_output\n"
    "for i in range(3000):\n"
    "    clear_output(wait=True)\n"
    "    print(f'step {i}')"
)


class Wire(LocalBackend):
    """The default (sandboxed, ipc) backend, counting what crosses the wire; with
    ``stall``, a client that falls behind: it reads no output of a step until the
    step's reply has come (and a moment more), as a loaded machine does."""

    def __init__(self) -> None:
        super().__init__(sandbox=SandboxSettings(memory_limit=default_memory_limit()))
        self.messages = 0
        self.stall = False
        self.replied = asyncio.Event()

    async def iopub(self) -> Message:
        if self.stall:
            await self.replied.wait()
            await asyncio.sleep(0.5)
            self.stall = False
        msg = await super().iopub()
        self.messages += 1
        return msg

    async def shell_reply(self) -> Message:
        msg = await super().shell_reply()
        self.replied.set()
        return msg

    def stalled(self) -> None:
        self.stall, self.messages = True, 0
        self.replied.clear()


@pytest.fixture
async def wire() -> AsyncIterator[tuple[ManagedKernel, Wire]]:
    backend = Wire()
    config = KernelConfig(preload=(), step_timeout=20, interrupt_grace=2, iopub_timeout=1)
    async with ManagedKernel(config, backend=backend) as kernel:
        yield kernel, backend


async def test_what_clear_output_cleared_does_not_come_back(
    wire: tuple[ManagedKernel, Wire],
) -> None:
    kernel, backend = wire
    backend.messages = 0
    result = await kernel.execute(CLEAR_LOOP)
    assert result.status == "ok"
    assert [o["text"] for o in result.outputs] == ["step 2999\n"]
    assert result.note == ""
    # coalesced in the kernel: not the 6,000 messages the loop makes
    assert backend.messages < 600


async def test_a_flood_cannot_make_a_finished_step_time_out(
    wire: tuple[ManagedKernel, Wire],
) -> None:
    kernel, backend = wire
    await kernel.execute("kept = 'state'")
    # the clear loop with a client that falls behind: coalesced, nothing is dropped
    backend.stalled()
    result = await kernel.execute(CLEAR_LOOP)
    assert (result.status, result.note, result.restarted) == ("ok", "", False)
    assert [o["text"] for o in result.outputs] == ["step 2999\n"]
    # a flood the kernel cannot coalesce (widget state, as a progress bar sends it):
    # the socket drops messages, the idle among them; the step ends from its reply
    backend.stalled()
    started = time.monotonic()
    flood = await kernel.execute(
        "import ipywidgets as widgets\nbar = widgets.IntProgress(max=30_000)\n"
        "for i in range(30_000):\n    bar.value = i\nprint('finished')"
    )
    assert time.monotonic() - started < 10  # not the step timeout (20 s) and more
    assert flood.status == "ok"
    assert not flood.restarted
    assert "output may be incomplete" in flood.note
    assert "kept its state" in flood.note
    after = await kernel.execute("kept, bar.value")
    assert after.outputs[0]["data"]["text/plain"] == "('state', 29999)"


async def test_a_stream_under_the_limit_keeps_its_order(shared_kernel: ManagedKernel) -> None:
    result = await shared_kernel.execute(
        "print('y' * 12000)\ndisplay('D')\nraise ValueError('boom')"
    )
    assert [o["output_type"] for o in result.outputs] == ["stream", "display_data", "error"]
    assert result.outputs[0]["text"] == "y" * 12000 + "\n"
    assert "dropped" not in result.note


async def test_a_stream_over_the_limit_keeps_its_order_too(shared_kernel: ManagedKernel) -> None:
    result = await shared_kernel.execute("print('a' * 30000)\ndisplay('D')\nprint('b' * 30000)\n42")
    kinds = [o["output_type"] for o in result.outputs]
    assert kinds == ["stream", "display_data", "stream", "execute_result"]
    first, _, second, _ = result.outputs
    for out, char in ((first, "a"), (second, "b")):
        assert out["text"].startswith(char * 10_000 + "\n… [agentnb: 10,001 characters")
        assert out["text"].endswith(char * 9_999 + "\n")


async def test_a_flood_of_displays_keeps_the_first_and_counts_the_rest(
    wire: tuple[ManagedKernel, Wire],
) -> None:
    kernel, backend = wire
    backend.messages = 0
    result = await kernel.execute("for i in range(5000):\n    display(i)")
    shown = [o["data"]["text/plain"] for o in result.outputs[:-1]]
    assert shown == [str(i) for i in range(100)]
    assert "4,900 more outputs dropped" in result.outputs[-1]["text"]
    assert backend.messages < 400


async def test_a_flood_of_updates_ends_with_the_last(wire: tuple[ManagedKernel, Wire]) -> None:
    kernel, backend = wire
    backend.messages = 0
    result = await kernel.execute(
        "bar = display('0', display_id=True)\nfor i in range(20_000):\n    bar.update(str(i))"
    )
    assert [o["data"]["text/plain"] for o in result.outputs] == ["'19999'"]
    assert backend.messages < 400

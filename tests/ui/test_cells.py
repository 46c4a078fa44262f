"""CellWriter in a real ipykernel, with the test playing the notebook frontend.

The test sends execute_requests carrying a cell id in their metadata, as
JupyterLab and Notebook 7 do, watches IOPub for the ``agentnb.cells`` comm, and
answers as the agentnb-cells extension would, or closes the comm as a frontend
without it does.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import zmq.asyncio
from jupyter_client.manager import AsyncKernelManager

from agentnb.ui.cells import (
    COMM_TARGET,
    DISCONNECTED,
    NO_ANSWER,
    NO_EXTENSION,
    NO_KERNEL,
    CellWriter,
    anchor_cell_id,
)

Message = dict[str, Any]

# The fixture below starts kernels of its own, outside the kernel fixtures that
# tests/conftest.py recognises.
kernel_tier = pytest.mark.kernel

SETUP = (
    "from agentnb.ui.cells import CellWriter, anchor_cell_id\n"
    "statuses = []\n"
    "writer = CellWriter(run_id='run-1', anchor=anchor_cell_id(), "
    "on_status=statuses.append, ready_timeout={timeout})\n"
    "writer.open()\n"
)


class Frontend:
    """One client of a kernel, speaking the messaging protocol as a browser does."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.session: str = client.session.session
        self.iopub: list[Message] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            self.iopub.append(await self.client.get_iopub_msg())
            self._arrived.set()

    async def wait_for(self, match: Callable[[Message], bool], timeout: float = 10.0) -> Message:
        deadline = time.monotonic() + timeout
        while True:
            found = next((m for m in self.iopub if match(m)), None)
            if found is not None:
                return found
            self._arrived.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no such IOPub message arrived")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def send_execute(self, code: str, cell_id: str | None = None) -> str:
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        metadata = {"cellId": cell_id, "deletedCells": [], "trusted": False} if cell_id else {}
        msg = self.client.session.msg("execute_request", content, metadata=metadata)
        self.client.shell_channel.send(msg)
        return str(msg["header"]["msg_id"])

    async def finished(self, msg_id: str, timeout: float = 20.0) -> Message:
        """The execute_reply of a request, after its outputs (status ok asserted)."""
        while True:
            reply: Message = await self.client.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        await self.wait_for(
            lambda m: (
                m["msg_type"] == "status"
                and m["parent_header"].get("msg_id") == msg_id
                and m["content"]["execution_state"] == "idle"
            )
        )
        assert reply["content"]["status"] == "ok", "\n".join(reply["content"].get("traceback", []))
        return reply

    async def execute(self, code: str, cell_id: str | None = None) -> str:
        msg_id = self.send_execute(code, cell_id)
        await self.finished(msg_id)
        return msg_id

    async def evaluate(self, expression: str) -> Any:
        msg_id = await self.execute(expression)
        result = await self.wait_for(
            lambda m: (
                m["msg_type"] == "execute_result" and m["parent_header"].get("msg_id") == msg_id
            )
        )
        return ast.literal_eval(result["content"]["data"]["text/plain"])

    async def comm_open(self) -> Message:
        return await self.wait_for(
            lambda m: m["msg_type"] == "comm_open" and m["content"]["target_name"] == COMM_TARGET
        )

    def comm_messages(self, comm_id: str, msg_type: str = "comm_msg") -> list[Message]:
        return [
            m["content"]["data"]
            for m in self.iopub
            if m["msg_type"] == msg_type and m["content"]["comm_id"] == comm_id
        ]

    async def inserts(self, comm_id: str, count: int) -> list[Message]:
        await self.wait_for(lambda _m: len(self.comm_messages(comm_id)) >= count)
        return self.comm_messages(comm_id)

    def reply(self, comm_id: str, data: Message) -> None:
        msg = self.client.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        self.client.shell_channel.send(msg)

    def close(self, comm_id: str) -> None:
        msg = self.client.session.msg("comm_close", {"comm_id": comm_id, "data": {}})
        self.client.shell_channel.send(msg)


@pytest.fixture
async def frontend(tmp_path: Path) -> AsyncIterator[Frontend]:
    context = zmq.asyncio.Context()
    manager = AsyncKernelManager(
        context=context, transport="ipc", connection_file=str(tmp_path / "kernel.json")
    )
    await manager.start_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = manager.client()
    client.start_channels()
    frontend = None
    try:
        await client.wait_for_ready(timeout=30)
        frontend = Frontend(client)
        yield frontend
    finally:
        if frontend is not None:
            frontend._reader.cancel()
        client.stop_channels()
        await manager.shutdown_kernel(now=True)
        context.destroy(linger=0)


def cell(step: int, code: str, outputs: list[Message], **tags: Any) -> Message:
    """The cell JSON an insert of this step must carry."""
    key = f"run-1:{step}"
    return {
        "action": "insert",
        "key": key,
        "cell": {
            "cell_type": "code",
            "execution_count": None,
            "source": code,
            "outputs": outputs,
            "metadata": {
                "agentnb": {**tags, "key": key, "run_id": "run-1", "step": step},
                "trusted": True,
            },
        },
    }


@kernel_tier
async def test_steps_reach_the_frontend_in_order_once_it_is_ready(frontend: Frontend) -> None:
    cell_msg = await frontend.execute(
        SETUP.format(timeout=30)
        + "writer.insert(step=1, code='x = 1', outputs=[], metadata={'title': 'load'})",
        cell_id="agents-cell",
    )
    opened = await frontend.comm_open()
    assert opened["content"]["data"] == {"anchor": "agents-cell", "run_id": "run-1", "version": 1}
    # the open belongs to the %%agents cell's request: only the browser that sent
    # it (its session) acts on it
    assert opened["parent_header"]["msg_id"] == cell_msg
    assert opened["parent_header"]["session"] == frontend.session
    comm_id = opened["content"]["comm_id"]

    # nothing goes out before the frontend said it is there
    assert await frontend.evaluate("writer.state") == "connecting"
    assert frontend.comm_messages(comm_id) == []

    frontend.reply(comm_id, {"event": "ready", "client": "lab", "version": 1})
    assert await frontend.evaluate("writer.state, writer.client") == ("active", "lab")
    await frontend.execute(
        "out = [{'output_type': 'stream', 'name': 'stdout', 'text': '2\\n'}]\n"
        "writer.insert(step=2, code='print(x + 1)', outputs=out, metadata={})\n"
        "import asyncio\n"
        "async def later():\n"
        "    await asyncio.sleep(0.2)\n"
        "    writer.insert(step=3, code='x', outputs=[], metadata={'critic': 'APPROVE'})\n"
        "task = asyncio.ensure_future(later())",
    )
    # step 3 comes from a background task, after its cell has returned
    sent = await frontend.inserts(comm_id, 3)
    assert sent == [
        cell(1, "x = 1", [], title="load"),
        cell(2, "print(x + 1)", [{"output_type": "stream", "name": "stdout", "text": "2\n"}]),
        cell(3, "x", [], critic="APPROVE"),
    ]

    frontend.reply(comm_id, {"event": "inserted", "key": "run-1:1", "cell_id": "c1", "index": 1})
    frontend.reply(comm_id, {"event": "inserted", "key": "run-1:2", "cell_id": "c2", "index": 2})
    frontend.reply(comm_id, {"event": "error", "key": "run-1:3", "message": "read-only"})
    assert await frontend.evaluate("writer.inserted, writer.errors, statuses") == (
        {"run-1:1": "c1", "run-1:2": "c2"},
        ["run-1:3: read-only"],
        ["Step run-1:3 was not inserted: read-only."],
    )

    await frontend.execute(
        "writer.close()\nwriter.insert(step=4, code='y', outputs=[], metadata={})"
    )
    await frontend.wait_for(lambda _m: frontend.comm_messages(comm_id, "comm_close") != [])
    assert len(frontend.comm_messages(comm_id)) == 3  # nothing after close


@kernel_tier
async def test_an_awaiting_cell_learns_the_frontend_is_ready(frontend: Frontend) -> None:
    await frontend.execute(SETUP.format(timeout=30), cell_id="agents-cell")
    comm_id = (await frontend.comm_open())["content"]["comm_id"]
    # the %%agents cell awaits the answer; the comm message must get through meanwhile
    waiting = frontend.send_execute("ok = await writer.ready()")
    await asyncio.sleep(0.3)
    started = time.monotonic()
    frontend.reply(comm_id, {"event": "ready", "client": "notebook", "version": 1})
    await frontend.finished(waiting)
    assert time.monotonic() - started < 5
    assert await frontend.evaluate("ok, writer.state, statuses") == (True, "active", [])


@kernel_tier
async def test_a_frontend_without_the_extension_closes_the_comm(frontend: Frontend) -> None:
    await frontend.execute(
        SETUP.format(timeout=30) + "writer.insert(step=1, code='x', outputs=[], metadata={})",
        cell_id="agents-cell",
    )
    comm_id = (await frontend.comm_open())["content"]["comm_id"]
    frontend.close(comm_id)  # what Lab does for a comm target nobody registered
    started = time.monotonic()
    assert await frontend.evaluate("await writer.ready(), writer.state, statuses") == (
        False,
        "unavailable",
        [NO_EXTENSION],
    )
    assert time.monotonic() - started < 5  # told at once, not after the timeout
    await frontend.execute("writer.insert(step=2, code='y', outputs=[], metadata={})")
    assert frontend.comm_messages(comm_id) == []


@kernel_tier
async def test_the_frontend_going_away_mid_run_is_reported(frontend: Frontend) -> None:
    await frontend.execute(SETUP.format(timeout=30), cell_id="agents-cell")
    comm_id = (await frontend.comm_open())["content"]["comm_id"]
    frontend.reply(comm_id, {"event": "ready", "client": "lab", "version": 1})
    assert await frontend.evaluate("writer.state") == "active"
    frontend.close(comm_id)
    assert await frontend.evaluate("writer.state, statuses") == ("unavailable", [DISCONNECTED])


@kernel_tier
async def test_no_answer_gives_up_after_the_timeout(frontend: Frontend) -> None:
    await frontend.execute(
        SETUP.format(timeout=0.5) + "writer.insert(step=1, code='x', outputs=[], metadata={})",
        cell_id="agents-cell",
    )
    comm_id = (await frontend.comm_open())["content"]["comm_id"]
    started = time.monotonic()
    assert await frontend.evaluate("await writer.ready(), writer.state, statuses") == (
        False,
        "unavailable",
        [NO_ANSWER],
    )
    assert time.monotonic() - started < 5
    # closed on the kernel side, so a frontend answering late inserts nothing
    await frontend.wait_for(lambda _m: frontend.comm_messages(comm_id, "comm_close") != [])
    frontend.reply(comm_id, {"event": "ready", "client": "lab", "version": 1})
    assert await frontend.evaluate("writer.state") == "unavailable"
    assert frontend.comm_messages(comm_id) == []


@kernel_tier
async def test_an_extension_of_another_protocol_version_is_not_used(frontend: Frontend) -> None:
    await frontend.execute(SETUP.format(timeout=30), cell_id="agents-cell")
    comm_id = (await frontend.comm_open())["content"]["comm_id"]
    frontend.reply(comm_id, {"event": "ready", "client": "lab", "version": 2})
    state, statuses = await frontend.evaluate("writer.state, statuses")
    assert state == "unavailable"
    assert "protocol version 2" in statuses[0]


@kernel_tier
async def test_the_anchor_is_the_running_cells_id(frontend: Frontend) -> None:
    await frontend.execute("from agentnb.ui.cells import anchor_cell_id")
    msg_id = await frontend.execute("anchor_cell_id()", cell_id="abc123")
    result = await frontend.wait_for(
        lambda m: m["msg_type"] == "execute_result" and m["parent_header"]["msg_id"] == msg_id
    )
    assert result["content"]["data"]["text/plain"] == "'abc123'"
    # nbclient and papermill send no cell id
    assert await frontend.evaluate("[anchor_cell_id()]") == [None]


async def test_outside_a_kernel_there_is_nothing_to_insert_into() -> None:
    statuses: list[str] = []
    writer = CellWriter(run_id="run-1", anchor=None, on_status=statuses.append)
    assert anchor_cell_id() is None
    writer.open()
    assert await writer.ready() is False
    assert writer.state == "unavailable"
    assert statuses == [NO_KERNEL]
    writer.insert(step=1, code="x", outputs=[], metadata={})  # dropped, no error


async def test_ready_before_open_is_a_mistake() -> None:
    with pytest.raises(RuntimeError, match="before open"):
        await CellWriter(run_id="run-1", anchor=None).ready()

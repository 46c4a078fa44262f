"""CellWriter in a real ipykernel, with the test playing the notebook frontend.

The test sends execute_requests carrying a cell id in their metadata, as
JupyterLab and Notebook 7 do, watches IOPub for the ``agentnb.cells`` comm, and
answers as the agentnb-cells extension would, or closes the comm as a frontend
without it does. A second client of the same kernel plays a page opened later
(the tab was closed and the notebook opened again), which opens a comm itself.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import re
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import zmq.asyncio
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.session import Session

from agentnb.jupyter.cells import (
    COMM_TARGET,
    DISCONNECTED,
    NO_ANSWER,
    NO_EXTENSION,
    NO_KERNEL,
    PROTOCOL_VERSION,
    CellWriter,
    anchor_cell_id,
)

Message = dict[str, Any]

# The fixture below starts kernels of its own, outside the kernel fixtures that
# tests/conftest.py recognises.
kernel_tier = pytest.mark.kernel

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
DISPLAY = {WIDGET_VIEW: {"model_id": "m1", "version_major": 2, "version_minor": 0}}


def setup(timeout: float) -> str:
    """The cell that makes the writer, as the magic does, with callbacks to look at."""
    return (
        "from agentnb.jupyter.cells import CellWriter, anchor_cell_id, register_target\n"
        "register_target()\n"
        "statuses, marked = [], []\n"
        "writer = CellWriter(run_id='run-1', anchor=anchor_cell_id(), "
        f"on_status=statuses.append, ready_timeout={timeout}, "
        "on_inserted=lambda step, cell_id: marked.append((step, cell_id)), "
        f"display=lambda: {DISPLAY!r})\n"
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

    def ready(self, comm_id: str) -> None:
        """Answer the writer's comm as JupyterLab's extension does."""
        self.reply(comm_id, {"event": "ready", "client": "lab", "version": PROTOCOL_VERSION})

    async def accept(self) -> str:
        """The writer's comm, opened from the kernel and answered ready."""
        comm_id = str((await self.comm_open())["content"]["comm_id"])
        self.ready(comm_id)
        return comm_id

    def close(self, comm_id: str) -> None:
        msg = self.client.session.msg("comm_close", {"comm_id": comm_id, "data": {}})
        self.client.shell_channel.send(msg)

    def open_comm(self, data: Message) -> str:
        """Open a comm on the kernel's ``agentnb.cells`` target, as a reopened page does."""
        comm_id = uuid.uuid4().hex
        content = {"comm_id": comm_id, "target_name": COMM_TARGET, "data": data}
        self.client.shell_channel.send(self.client.session.msg("comm_open", content))
        return comm_id

    async def closed(self, comm_id: str) -> None:
        await self.wait_for(lambda _m: self.comm_messages(comm_id, "comm_close") != [])


async def connect(manager: AsyncKernelManager) -> tuple[Any, Frontend]:
    """Another client of the kernel: a browser page with a session of its own."""
    # not the manager's Session: one Session refuses a message it already verified,
    # and every client receives every IOPub message
    own = Session(key=manager.session.key, signature_scheme=manager.session.signature_scheme)
    client = manager.client(session=own)
    client.start_channels()
    await client.wait_for_ready(timeout=30)
    return client, Frontend(client)


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[AsyncKernelManager]:
    context = zmq.asyncio.Context()
    started = AsyncKernelManager(
        context=context, transport="ipc", connection_file=str(tmp_path / "kernel.json")
    )
    await started.start_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield started
    finally:
        await started.shutdown_kernel(now=True)
        context.destroy(linger=0)


Pages = Callable[[], Awaitable[Frontend]]


@pytest.fixture
async def pages(manager: AsyncKernelManager) -> AsyncIterator[Pages]:
    """``await pages()``: one more browser page connected to the kernel."""
    opened: list[tuple[Any, Frontend]] = []

    async def page() -> Frontend:
        opened.append(await connect(manager))
        return opened[-1][1]

    yield page
    for client, frontend in opened:
        frontend._reader.cancel()
        client.stop_channels()


@pytest.fixture
async def frontend(pages: Pages) -> Frontend:
    """The page that runs the ``%%agents`` cell."""
    return await pages()


def cell(step: int, code: str, outputs: list[Message], **tags: Any) -> Message:
    """The cell JSON an insert of this step must carry."""
    key = f"run-1:{step}"
    return {
        "action": "insert",
        "run_id": "run-1",
        "key": key,
        "cell": {
            "cell_type": "code",
            "execution_count": None,
            "source": code,
            "outputs": outputs,
            "metadata": {"agentnb": {**tags, "key": key, "run_id": "run-1", "step": step}},
        },
    }


@kernel_tier
async def test_steps_reach_the_frontend_in_order_once_it_is_ready(frontend: Frontend) -> None:
    cell_msg = await frontend.execute(
        setup(30) + "writer.insert(step=1, code='x = 1', outputs=[], metadata={'title': 'load'})",
        cell_id="agents-cell",
    )
    opened = await frontend.comm_open()
    assert opened["content"]["data"] == {
        "anchor": "agents-cell",
        "run_id": "run-1",
        "version": PROTOCOL_VERSION,
    }
    # the open belongs to the %%agents cell's request: only the browser that sent
    # it (its session) acts on it
    assert opened["parent_header"]["msg_id"] == cell_msg
    assert opened["parent_header"]["session"] == frontend.session
    comm_id = opened["content"]["comm_id"]

    # nothing goes out before the frontend said it is there
    assert await frontend.evaluate("writer.state") == "connecting"
    assert frontend.comm_messages(comm_id) == []

    frontend.ready(comm_id)
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
async def test_inserted_cells_are_never_trusted_and_carry_no_script(frontend: Frontend) -> None:
    await frontend.execute(
        setup(30) + "out = [\n"
        "    {'output_type': 'display_data', 'metadata': {},\n"
        "     'data': {'application/javascript': 'window.__pwned = 1', 'text/plain': 'JS'}},\n"
        "    {'output_type': 'display_data', 'metadata': {},\n"
        "     'data': {'text/html': '<b>ok</b><img src=x onerror=\"window.__pwned = 2\">'}},\n"
        "]\n"
        "writer.insert(step=1, code='show()', outputs=out, metadata={})",
        cell_id="agents-cell",
    )
    comm_id = await frontend.accept()
    (sent,) = await frontend.inserts(comm_id, 1)
    assert "trusted" not in sent["cell"]["metadata"]
    outputs = sent["cell"]["outputs"]
    assert "__pwned" not in str(outputs)
    assert "application/javascript" not in [m for o in outputs for m in o.get("data", {})]
    assert outputs[1]["text"].startswith("agentnb removed application/javascript")
    assert outputs[2]["data"] == {"text/html": "<b>ok</b>"}


@kernel_tier
async def test_a_steps_note_goes_above_its_code_and_the_report_after_them(
    frontend: Frontend,
) -> None:
    await frontend.execute(
        setup(30) + "result = [{'output_type': 'execute_result', 'execution_count': 7,\n"
        "           'metadata': {}, 'data': {'text/plain': '42'}}]\n"
        "writer.insert_markdown(key='1:reason', source='## Step 1\\n\\nWhy <script>x</script>',\n"
        "                       metadata={'step': 1, 'kind': 'reason'})\n"
        "writer.insert(step=1, code='6 * 7', outputs=result, metadata={})\n"
        "writer.insert_markdown(key='report', source='## Final report\\n\\n![x](https://e.x/a.png)',\n"
        "                       metadata={'kind': 'report'})",
        cell_id="agents-cell",
    )
    comm_id = await frontend.accept()
    note, code, report = await frontend.inserts(comm_id, 3)
    assert [m["key"] for m in (note, code, report)] == ["run-1:1:reason", "run-1:1", "run-1:report"]
    assert note["cell"] == {
        "cell_type": "markdown",
        "source": "## Step 1\n\nWhy &lt;script>x&lt;/script>",  # model text: no raw HTML
        "metadata": {
            "agentnb": {"step": 1, "kind": "reason", "key": "run-1:1:reason", "run_id": "run-1"}
        },
    }
    assert report["cell"]["source"] == "## Final report\n\n\\![x](https://e.x/a.png)"
    # no execution count borrowed from the managed kernel, on the cell or its result
    assert code["cell"]["execution_count"] is None
    assert code["cell"]["outputs"][0]["execution_count"] is None
    for message, cell_id in ((note, "n1"), (code, "c1"), (report, "r1")):
        frontend.reply(
            comm_id, {"event": "inserted", "key": message["key"], "cell_id": cell_id, "index": 3}
        )
    await frontend.execute("writer.finish()")
    await frontend.closed(comm_id)  # every cell acknowledged, notes and report included
    assert await frontend.evaluate("marked, statuses") == ([(1, "c1")], [])


PERCENT = (
    "def shown(text, count=None):\n"
    "    if count is None:\n"
    "        return {'output_type': 'display_data', 'metadata': {},\n"
    "                'data': {'text/plain': repr(text)}}\n"
    "    return {'output_type': 'execute_result', 'metadata': {}, 'execution_count': count,\n"
    "            'data': {'text/plain': repr(text)}}\n"
)


def percent(text: str) -> Message:
    return {"output_type": "display_data", "metadata": {}, "data": {"text/plain": repr(text)}}


@kernel_tier
async def test_a_later_step_that_updates_a_display_changes_the_inserted_cell(
    frontend: Frontend,
) -> None:
    # step 1: h = display('0 %', display_id=True); step 2: h.update('100 %'); in a
    # notebook cell 1 then shows 100 %, and so does the cell step 1 was inserted as
    await frontend.execute(
        setup(30) + PERCENT + "writer.insert(step=1, code='h = ...', outputs=[shown('0 %')], "
        "metadata={})\n"
        "writer.insert(step=2, code='h.update(...)', outputs=[], metadata={})",
        cell_id="agents-cell",
    )
    comm_id = await frontend.accept()
    await frontend.inserts(comm_id, 2)
    frontend.reply(comm_id, inserted(1, "c1"))
    frontend.reply(comm_id, inserted(2, "c2"))
    await frontend.execute(
        "hostile = {'output_type': 'display_data', 'metadata': {},\n"
        "           'data': {'application/javascript': 'window.__pwned = 1'}}\n"
        "writer.update_outputs(step=1, outputs=[shown('100 %', count=5), hostile])\n"
        # the same outputs again (the step's ExecutionFinished and StepResult), a step
        # never sent as a cell: nothing more goes out
        "writer.update_outputs(step=1, outputs=[shown('100 %', count=5), hostile])\n"
        "writer.update_outputs(step=7, outputs=[shown('100 %')])"
    )
    sent = await frontend.inserts(comm_id, 3)
    assert len(frontend.comm_messages(comm_id)) == 3
    update = sent[2]
    assert {k: v for k, v in update.items() if k != "outputs"} == {
        "action": "outputs",
        "run_id": "run-1",
        "key": "run-1:1",
    }
    result, note = update["outputs"]
    # uncounted as every inserted output; sanitised: no script reaches the page
    assert result == {
        "output_type": "execute_result",
        "metadata": {},
        "execution_count": None,
        "data": {"text/plain": "'100 %'"},
    }
    assert "__pwned" not in str(update)
    assert note["text"].startswith("agentnb removed application/javascript")

    frontend.reply(comm_id, {"event": "updated", "key": "run-1:1", "cell_id": "c1", "index": 2})
    frontend.reply(
        comm_id,
        {"event": "error", "key": "run-1:1", "action": "outputs", "message": "read-only"},
    )
    assert await frontend.evaluate("writer.errors, statuses, writer.state") == (
        ["run-1:1: read-only"],
        ["The outputs of step run-1:1 were not updated: read-only."],
        "active",
    )
    await frontend.execute("writer.finish()")
    await frontend.closed(comm_id)  # the inserts were all answered: nothing else is awaited
    await frontend.execute("writer.update_outputs(step=1, outputs=[shown('50 %')])")
    assert len(frontend.comm_messages(comm_id)) == 3  # nothing after close


@kernel_tier
async def test_a_page_opened_later_gets_the_outputs_as_a_later_step_left_them(
    frontend: Frontend, pages: Pages
) -> None:
    await ran_and_left(frontend)
    # the tab is closed; a later step of the run updates step 1's display meanwhile
    await frontend.execute(
        PERCENT + "writer.update_outputs(step=1, outputs=[shown('100 %')])\n"
        "writer.insert(step=2, code='h.update(...)', outputs=[], metadata={})"
    )
    page = await pages()
    comm_id = page.open_comm(hello("agents-cell"))
    sent = await page.inserts(comm_id, 4)
    # the insert kept for a page carries the outputs as they now are (an unsaved tab
    # lost the cell), and an outputs follows (a saved notebook has the cell, with the
    # outputs it had then, and skips the insert)
    assert sent[:3] == [
        attach_message(),
        cell(1, "x = 1", [percent("100 %")]),
        cell(2, "h.update(...)", []),
    ]
    assert sent[3] == {
        "action": "outputs",
        "run_id": "run-1",
        "key": "run-1:1",
        "outputs": [percent("100 %")],
    }
    page.reply(comm_id, inserted(1, "b1", duplicate=True))
    page.reply(comm_id, inserted(2, "b2"))
    page.reply(comm_id, {"event": "updated", "key": "run-1:1", "cell_id": "b1", "index": 2})
    await page.execute("writer.finish()")
    await page.closed(comm_id)
    assert await page.evaluate("writer.errors, statuses") == ([], [])


@kernel_tier
async def test_the_frontends_answers_are_handled_under_the_agents_cells_request(
    frontend: Frontend,
) -> None:
    # what the callbacks change (the widget: a step's card folds, with a "show" button)
    # is published under the %%agents cell's request, as the run's other widget updates:
    # ipykernel sends a widget's clicks to the subshell of the request it last published
    # under, and JupyterLab's subshell for the agentnb.cells comm goes with that comm
    cell_msg = await frontend.execute(
        "from agentnb.jupyter.cells import CellWriter, anchor_cell_id\n"
        "from IPython import get_ipython\n"
        "def parent():\n"
        "    return get_ipython().kernel.get_parent()['header']['msg_id']\n"
        "parents = []\n"
        "writer = CellWriter(run_id='run-1', anchor=anchor_cell_id(), ready_timeout=30,\n"
        "                    on_inserted=lambda step, cell_id: parents.append(parent()))\n"
        "writer.open()\n"
        "writer.insert(step=1, code='x = 1', outputs=[], metadata={})",
        cell_id="agents-cell",
    )
    comm_id = await frontend.accept()
    await frontend.inserts(comm_id, 1)
    frontend.reply(comm_id, inserted(1, "c1"))
    assert await frontend.evaluate("parents") == [cell_msg]


def test_the_extension_speaks_the_kernels_protocol_version() -> None:
    # the extension ships in the same wheel: the version it opens a page's comm with is
    # the one this kernel insists on, and it answers a kernel's open of that version
    source = (Path(__file__).parents[2] / "widgets" / "src" / "index.ts").read_text()
    version = re.search(r"^const VERSION = (\d+);$", source, re.MULTILINE)
    spoken = re.search(r"^const SPOKEN = \[([\d, ]+)\];$", source, re.MULTILINE)
    assert version is not None
    assert spoken is not None
    assert int(version.group(1)) == PROTOCOL_VERSION
    assert PROTOCOL_VERSION in [int(v) for v in spoken.group(1).split(",")]


@kernel_tier
async def test_an_awaiting_cell_learns_the_frontend_is_ready(frontend: Frontend) -> None:
    await frontend.execute(setup(30), cell_id="agents-cell")
    comm_id = (await frontend.comm_open())["content"]["comm_id"]
    # the %%agents cell awaits the answer; the comm message must get through meanwhile
    waiting = frontend.send_execute("ok = await writer.ready()")
    await asyncio.sleep(0.3)
    started = time.monotonic()
    frontend.reply(comm_id, {"event": "ready", "client": "notebook", "version": PROTOCOL_VERSION})
    await frontend.finished(waiting)
    assert time.monotonic() - started < 5
    assert await frontend.evaluate("ok, writer.state, statuses") == (True, "active", [])


@kernel_tier
async def test_a_frontend_without_the_extension_closes_the_comm(frontend: Frontend) -> None:
    await frontend.execute(
        setup(30) + "writer.insert(step=1, code='x', outputs=[], metadata={})",
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
    await frontend.execute(setup(30), cell_id="agents-cell")
    comm_id = await frontend.accept()
    assert await frontend.evaluate("writer.state") == "active"
    frontend.close(comm_id)
    # the steps after that wait for a page to attach (see the tests below)
    await frontend.execute("writer.insert(step=1, code='x', outputs=[], metadata={})")
    assert await frontend.evaluate("writer.state, statuses") == ("detached", [DISCONNECTED])
    assert frontend.comm_messages(comm_id) == []


@kernel_tier
async def test_no_answer_gives_up_after_the_timeout(frontend: Frontend) -> None:
    await frontend.execute(
        setup(0.5) + "writer.insert(step=1, code='x', outputs=[], metadata={})",
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
    frontend.ready(comm_id)
    assert await frontend.evaluate("writer.state") == "unavailable"
    assert frontend.comm_messages(comm_id) == []


@kernel_tier
async def test_an_extension_of_another_protocol_version_is_not_used(frontend: Frontend) -> None:
    await frontend.execute(setup(30), cell_id="agents-cell")
    comm_id = (await frontend.comm_open())["content"]["comm_id"]
    frontend.reply(comm_id, {"event": "ready", "client": "lab", "version": 1})
    state, statuses = await frontend.evaluate("writer.state, statuses")
    assert state == "unavailable"
    assert f"protocol version 1, this kernel {PROTOCOL_VERSION}" in statuses[0]


# --- a page that did not run the cell ---------------------------------------------------


def hello(*cells: str, version: int = PROTOCOL_VERSION) -> Message:
    """What a page opens the comm with when its kernel connection comes up."""
    return {"version": version, "client": "notebook", "cells": list(cells)}


def attach_message() -> Message:
    return {
        "action": "attach",
        "run_id": "run-1",
        "anchor": "agents-cell",
        "display": DISPLAY,
        "chat": None,
    }


def show_message() -> Message:
    return {
        "action": "show",
        "run_id": "run-1",
        "anchor": "agents-cell",
        "display": DISPLAY,
        "chat": None,
    }


def inserted(step: int, cell_id: str, **extra: Any) -> Message:
    return {"event": "inserted", "key": f"run-1:{step}", "cell_id": cell_id, "index": 2, **extra}


async def ran_and_left(frontend: Frontend) -> str:
    """The page runs the cell, inserts step 1, and is closed while step 2 runs (no
    comm_close: a closed tab sends nothing). Returns its comm's id."""
    await frontend.execute(
        setup(30) + "writer.insert(step=1, code='x = 1', outputs=[], metadata={})",
        cell_id="agents-cell",
    )
    comm_id = await frontend.accept()
    await frontend.inserts(comm_id, 1)
    frontend.reply(comm_id, inserted(1, "a1"))
    assert await frontend.evaluate("writer.inserted") == {"run-1:1": "a1"}
    return comm_id


@kernel_tier
async def test_a_reopened_page_gets_the_whole_run_and_what_follows(
    frontend: Frontend, pages: Pages
) -> None:
    first = await ran_and_left(frontend)
    await frontend.execute("writer.insert(step=2, code='x + 1', outputs=[], metadata={})")
    assert len(frontend.comm_messages(first)) == 2  # step 2 went to a page that is gone

    page = await pages()
    comm_id = page.open_comm(hello("setup-cell", "agents-cell"))
    # the run, then every step: step 1 again, as the page may have lost it unsaved
    sent = await page.inserts(comm_id, 3)
    assert sent == [attach_message(), cell(1, "x = 1", []), cell(2, "x + 1", [])]
    page.reply(comm_id, inserted(1, "b1", duplicate=True))
    page.reply(comm_id, inserted(2, "b2"))
    assert await page.evaluate("writer.state, writer.client, writer.attached, statuses") == (
        "active",
        "notebook",
        1,
        [],
    )
    # each step's card is marked once, when it first landed
    assert await page.evaluate("writer.inserted, marked") == (
        {"run-1:1": "b1", "run-1:2": "b2"},
        [(1, "a1"), (2, "b2")],
    )

    await page.execute("writer.insert(step=3, code='x + 2', outputs=[], metadata={})")
    assert (await page.inserts(comm_id, 4))[3] == cell(3, "x + 2", [])
    assert len(frontend.comm_messages(first)) == 2  # nothing more to the page that left
    # the old comm is left, not closed: the page now attached never saw it open, and
    # JupyterLab logs an error for the close of a comm it does not know
    assert page.comm_messages(first, "comm_close") == []

    # the run ends; once the page has every step the writer is done with it
    await page.execute("writer.finish()")
    assert await page.evaluate("writer.state") == "active"
    page.reply(comm_id, inserted(3, "b3"))
    await page.closed(comm_id)
    assert await page.evaluate("writer.state, statuses") == ("unavailable", [])
    again = page.open_comm(hello("agents-cell"))
    await page.closed(again)  # nothing going on in that notebook any more
    # but the widget its cell shows is this kernel's: the page may render it (trusted)
    # in a notebook that opened unsigned; no step is sent again
    assert page.comm_messages(again) == [show_message()]


@kernel_tier
async def test_a_page_attaches_while_the_agents_cell_awaits(
    frontend: Frontend, pages: Pages
) -> None:
    await ran_and_left(frontend)
    # connected before the cell runs: wait_for_ready's kernel_info_request would queue
    # behind it (a browser goes on after a few seconds without the reply)
    page = await pages()
    # the %%agents cell awaits its run, as the magic does; the page's comm_open must get
    # through meanwhile
    waiting = frontend.send_execute(
        "import asyncio\n"
        "for _ in range(200):\n"
        "    if writer.attached:\n"
        "        break\n"
        "    await asyncio.sleep(0.05)\n"
        "seen = writer.attached"
    )
    await frontend.wait_for(
        lambda m: m["msg_type"] == "execute_input" and m["parent_header"]["msg_id"] == waiting
    )
    started = time.monotonic()
    comm_id = page.open_comm(hello("agents-cell"))
    assert (await page.inserts(comm_id, 2))[0] == attach_message()
    assert time.monotonic() - started < 5
    await frontend.finished(waiting)
    assert await page.evaluate("seen") == 1


@kernel_tier
async def test_steps_that_ran_while_no_page_was_open_wait_for_one(
    frontend: Frontend, pages: Pages
) -> None:
    await ran_and_left(frontend)
    # the run goes on and ends with no page open
    await frontend.execute(
        "writer.insert(step=2, code='y = 2', outputs=[], metadata={})\nwriter.finish()"
    )
    page = await pages()
    comm_id = page.open_comm(hello("agents-cell"))
    sent = await page.inserts(comm_id, 3)
    assert sent[2] == cell(2, "y = 2", [])
    page.reply(comm_id, inserted(1, "b1", duplicate=True))
    page.reply(comm_id, {"event": "error", "key": "run-1:2", "message": "read-only"})
    await page.closed(comm_id)  # every step answered: nothing is kept any more
    assert await page.evaluate("statuses") == ["Step run-1:2 was not inserted: read-only."]


@kernel_tier
async def test_a_page_opened_after_the_runs_ended_is_told_of_the_last_widget_only(
    frontend: Frontend, pages: Pages
) -> None:
    first = await ran_and_left(frontend)
    await frontend.execute("writer.finish()")
    await frontend.closed(first)  # ended, and its one step acknowledged
    # the %%agents cell runs again: a second run, with a widget of its own
    display = {WIDGET_VIEW: {"model_id": "m2", "version_major": 2, "version_minor": 0}}
    # the static copy of its chat, which the page keeps beside the widget it puts back
    chat = {
        "output_type": "display_data",
        "data": {"text/html": "<div>the chat</div>", "text/plain": "the chat"},
        "metadata": {"agentnb": {"run_id": "run-2", "view": "static"}},
    }
    await frontend.execute(
        "again = CellWriter(run_id='run-2', anchor=anchor_cell_id(), ready_timeout=30, "
        f"display=lambda: {display!r}, chat=lambda: {chat!r})\n"
        "again.open()",
        cell_id="agents-cell",
    )
    second = (
        await frontend.wait_for(
            lambda m: m["msg_type"] == "comm_open" and m["content"]["data"].get("run_id") == "run-2"
        )
    )["content"]["comm_id"]
    frontend.ready(second)
    await frontend.execute("again.finish()")
    await frontend.closed(second)

    page = await pages()
    comm_id = page.open_comm(hello("setup-cell", "agents-cell"))
    await page.closed(comm_id)
    assert page.comm_messages(comm_id) == [
        {
            "action": "show",
            "run_id": "run-2",
            "anchor": "agents-cell",
            "display": display,
            "chat": chat,
        }
    ]
    elsewhere = page.open_comm(hello("another-cell"))
    await page.closed(elsewhere)
    assert page.comm_messages(elsewhere) == []


@kernel_tier
async def test_pages_without_a_run_going_on_are_closed(frontend: Frontend, pages: Pages) -> None:
    await ran_and_left(frontend)
    page = await pages()
    other = page.open_comm(hello("some-cell", "another-cell"))
    old = page.open_comm(hello("agents-cell", version=1))
    await page.closed(other)
    await page.closed(old)
    assert page.comm_messages(other) == page.comm_messages(old) == []
    assert await page.evaluate("writer.state, writer.attached") == ("active", 0)


@kernel_tier
async def test_the_anchor_is_the_running_cells_id(frontend: Frontend) -> None:
    await frontend.execute("from agentnb.jupyter.cells import anchor_cell_id")
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

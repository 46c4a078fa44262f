"""User-side faults: stopping at the wrong moment, two cells at once, data that cannot
travel, a save that cannot be written. (Flags, --data names and empty tasks:
``tests/test_magics.py``; closing the browser tab: ``tests/browser/test_reopen.py``.)"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import AsyncKernelManager

from agentnb.models.server import Reply, ScriptedServer

from ..conftest import text, usage_error, value
from .conftest import REPORT, Agents, step

SLOW_STEP = step("x = 7\nimport time\ntime.sleep(60)", "Wait for the data.")


async def stop_soon(agents: Agents, line: str, after: str) -> tuple[float, object]:
    """Start ``%%agents --background line``, wait until the status says ``after``,
    then ``%agents stop``: the seconds the stop took, and the outcome."""
    started = await agents.cell(f"%%agents --background {line}\nWhich region sold most?")
    assert started.status == "ok", started.to_model_text()
    deadline = time.monotonic() + 30
    while after not in text(await agents.cell("%agents status")):
        assert time.monotonic() < deadline, text(await agents.cell("%agents status"))
        await asyncio.sleep(0.2)
    began = time.monotonic()
    stopped = await agents.cell("%agents stop")
    took = time.monotonic() - began
    assert "stopped" in text(stopped)
    done = await agents.outcome(started)
    await agents.responsive()
    return took, done


async def test_stop_during_a_model_call_ends_it_at_once(
    agents: Agents, server: Callable[..., ScriptedServer]
) -> None:
    # the analyst's reply trickles in over a minute
    srv = server(Reply("I am thinking " * 60, delay=1.0, chunk=14))
    line = f"--data sales --approve never --model scripted --base-url {srv.base_url}"
    took, done = await stop_soon(agents, line, "phase: analyst thinking")
    assert took < 5
    assert done.kind == "user_stop"
    assert done.statuses == []
    assert done.phase == "stopped"
    assert done.transcript_complete()


async def test_stop_during_a_step_interrupts_it_and_keeps_the_state(agents: Agents) -> None:
    line = f"--data sales --approve never {agents.script([SLOW_STEP, REPORT])}"
    took, done = await stop_soon(agents, line, "phase: running step 1")
    assert took < 10
    assert done.kind == "user_stop"
    assert done.statuses == ["interrupted"]
    assert done.transcript_complete()
    # interrupted, not restarted: the step's first line stays done
    assert value(await agents.cell("%agents pull x\nx")) == 7


async def test_a_second_cell_while_one_runs_in_the_background_is_refused(agents: Agents) -> None:
    line = f"--data sales --approve never {agents.script([SLOW_STEP, REPORT])}"
    first = await agents.cell(f"%%agents --background {line}\nWait.")
    assert first.status == "ok"
    second = await agents.cell(f"%%agents {line}\nSomething else?")
    assert "an analysis is still running in this kernel" in usage_error(second)
    assert "analyses in this session: 1" in text(await agents.cell("%agents status"))
    await agents.cell("%agents stop")


@pytest.fixture
async def frontend(tmp_path: Path) -> AsyncIterator[Any]:
    """A notebook kernel driven as a frontend drives it: requests are sent without
    waiting for the previous cell to end (``frontend.send(code)`` → msg_id)."""
    manager = AsyncKernelManager()
    await manager.start_kernel(cwd=str(tmp_path))
    client = manager.client()
    client.start_channels()
    await client.wait_for_ready(timeout=60)
    try:
        yield client
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(now=True)


@pytest.mark.kernel
async def test_two_cells_started_at_once_run_one_after_the_other(
    frontend: Any, tmp_path: Path
) -> None:
    client = frontend
    replies = tmp_path / "r.json"
    replies.write_text(
        json.dumps(
            {
                "analyst": [step("import time\ntime.sleep(2)\na = 1"), "A done."] * 2,
                "critic": ["APPROVE"] * 4,
            }
        )
    )
    setup = "%load_ext agentnb\nimport pandas as pd\nsales = pd.DataFrame({'v': [1, 2]})"
    cell = f"%%agents --data sales --approve never --model scripted:{replies}\n"
    # all three sent before the first is done, as Run All does
    sent = [
        client.execute(setup),
        client.execute(cell + "First?"),
        client.execute(cell + "Second?"),
    ]
    statuses = {}
    while len(statuses) < 3:
        reply = await client.get_shell_msg(timeout=120)
        statuses[reply["parent_header"]["msg_id"]] = reply["content"]["status"]
    assert [statuses[m] for m in sent] == ["ok", "ok", "ok"]
    check = client.execute(
        "from agentnb.jupyter import magics\n"
        "[(a.task, a.events[0].time, a.events[-1].time, a.result.stop_reason.kind) "
        "for a in magics._session.analyses]",
        store_history=False,
    )
    while True:
        message = await client.get_iopub_msg(timeout=30)
        if (
            message["parent_header"].get("msg_id") == check
            and message["msg_type"] == "execute_result"
        ):
            break
    (first, _, a_end, a_kind), (second, b_start, _, b_kind) = ast.literal_eval(
        message["content"]["data"]["text/plain"]
    )
    assert (first, second) == ("First?", "Second?")
    assert (a_kind, b_kind) == ("approved", "approved")
    assert a_end <= b_start  # queued, never interleaved


@pytest.mark.parametrize(
    ("definition", "said"),
    [
        ("gen = (n for n in range(3))", "a generator cannot be pickled"),
        ("import threading\ngen = threading.Lock()", "cannot be pickled"),
        (
            "class Point:\n    pass\ngen = Point()",
            "Its class is not importable there (classes defined in a notebook cell are not)",
        ),
    ],
    ids=["generator", "lock", "class-from-a-cell"],
)
async def test_data_that_cannot_travel_fails_the_cell_before_any_model_call(
    agents: Agents, server: Callable[..., ScriptedServer], definition: str, said: str
) -> None:
    srv = server("never used")
    await agents.cell(definition)
    done = await agents(f"--data gen --approve never --model scripted --base-url {srv.base_url}")
    assert done.error.startswith("AgentsError: ")
    assert "gen" in done.error
    assert said in done.error
    assert srv.requests == []  # no tokens spent
    assert done.kind is None  # nothing started
    # and the variable is still the user's
    assert value(await agents.cell("type(gen).__name__")) in {"generator", "lock", "Point"}


# --- saving ---------------------------------------------------------------------------


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[tuple[Path, Callable[[], None]]]:
    """A folder on a disk that can be filled: ``(folder, fill)``. A real 1 MiB tmpfs
    where this machine lets us mount one, which ``fill()`` fills (ENOSPC); elsewhere a
    plain folder and ``fill()`` does nothing: the test then lowers the notebook
    kernel's file-size limit instead (EFBIG)."""
    folder = tmp_path / "disk"
    mounted = _mount_tmpfs(folder, "1m")

    def fill() -> None:
        if not mounted:
            return
        with contextlib.suppress(OSError), (folder / "filler").open("wb") as f:
            while True:
                f.write(b"\0" * 65536)
                f.flush()

    try:
        yield folder, fill
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


async def test_a_save_that_cannot_be_written_says_why_and_keeps_the_previous_file(
    agents: Agents, small_disk: tuple[Path, Callable[[], None]]
) -> None:
    folder, fill = small_disk
    target = folder / "analysis.ipynb"
    script = agents.script(
        [step('totals = sales.groupby("region")["revenue"].sum()\ntotals'), REPORT]
    )
    done = await agents(f"--data sales --approve never {script} --out {target}")
    assert done.kind == "approved", done.message
    before = target.read_bytes()
    assert json.loads(before)["cells"]

    fill()
    if not (folder / "filler").exists():  # no tmpfs here: the kernel may write 0 bytes
        await agents.cell("import resource\nresource.setrlimit(resource.RLIMIT_FSIZE, (1, -1))")
    failed = await agents.cell(f"%agents save {target}")
    await agents.cell("import resource\nresource.setrlimit(resource.RLIMIT_FSIZE, (-1, -1))")
    message = usage_error(failed)
    assert message.startswith(f"cannot write the notebook {target}: ")
    assert "No space left on device" in message or "File too large" in message
    assert target.read_bytes() == before  # the previous file, whole
    assert sorted(p.name for p in folder.iterdir() if p.name != "filler") == ["analysis.ipynb"]


async def test_saving_to_an_unwritable_place_says_where_and_what_to_do(agents: Agents) -> None:
    done = await agents(f"--data sales --approve never {agents.script([step('1 + 1'), REPORT])}")
    assert done.kind == "approved"
    # /sys and /proc refuse new files even to root
    for place, said in [
        ("/sys/analysis.ipynb", "cannot write the notebook /sys/analysis.ipynb: Permission denied"),
        ("/proc/self/analysis.ipynb", "%agents save /proc/self/analysis.ipynb: cannot write into"),
    ]:
        message = usage_error(await agents.cell(f"%agents save {place}"))
        assert message.startswith(said)
        assert "choose a" in message
        assert "writable" in message
        assert not os.path.exists(place)
    await agents.responsive()

"""Kernel-side faults: code the agents wrote that does terrible things in the managed
kernel. Each analysis runs the bad step, then a step that checks the kernel is usable,
then reports; the critic approves everything."""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from ..conftest import host_pids, value
from .conftest import REPORT, Agents, step

CHECK = step("print('kernel ok', int(sales['revenue'].sum()))", "Check the kernel.")
"""A second step: the kernel answers and the pushed data is there."""


async def run_bad_step(agents: Agents, code: str, flags: str = "") -> object:
    return await agents(
        f"--data sales --approve never {agents.script([step(code), CHECK, REPORT])} {flags}"
    )


async def test_an_infinite_loop_times_out_and_the_kernel_keeps_its_state(agents: Agents) -> None:
    done = await agents(
        "--data sales --approve never --step-timeout 2 "
        + agents.script([step("x = 5\nwhile True:\n    pass"), step("print('x is', x)"), REPORT])
    )
    assert done.kind == "approved", done.message
    assert done.statuses == ["timeout", "ok"]
    assert "2 s" in done.steps[0][1]  # the analyst is told it timed out
    assert "x is 5" in done.steps[1][1]  # interrupted, not restarted: x survived
    assert done.transcript_complete()


async def test_os_exit_is_reported_and_a_new_kernel_gets_the_data_again(agents: Agents) -> None:
    done = await run_bad_step(agents, "import os\nos._exit(3)")
    assert done.kind == "approved", done.message
    assert done.statuses == ["died", "ok"]
    assert "exited with code 3" in done.steps[0][1]
    assert "loaded again (sales)" in done.steps[0][1]
    assert "kernel ok 42" in done.steps[1][1]
    assert done.transcript_complete()


async def test_a_segfault_is_reported_with_its_python_stack(agents: Agents) -> None:
    done = await run_bad_step(
        agents, "import ctypes\ndef read_null():\n    ctypes.string_at(0)\nread_null()"
    )
    assert done.statuses == ["died", "ok"]
    assert "SIGSEGV" in done.steps[0][1]
    assert "in read_null" in done.steps[0][1]
    assert done.transcript_complete()


async def test_a_memory_bomb_hits_the_memory_limit_not_the_machine(
    make_agents: Callable[..., Awaitable[Agents]],
) -> None:
    agents = await make_agents(env={"AGENTNB_MEMORY_LIMIT": "2G"})
    done = await run_bad_step(
        agents, "hoard = []\nwhile True:\n    hoard.append(bytearray(256 * 2**20))"
    )
    assert done.kind == "approved", done.message
    assert done.statuses[0] in {"error", "died"}
    assert "MemoryError" in done.steps[0][1] or "memory" in done.steps[0][1].lower()
    assert done.statuses[-1] == "ok"
    assert done.transcript_complete()


async def test_processes_left_running_are_ended_after_the_step(agents: Agents) -> None:
    done = await run_bad_step(
        agents,
        "import subprocess\nserver = subprocess.Popen(['sleep', '300.75'])\n"
        "daemon = subprocess.Popen(['sleep', '300.5'], start_new_session=True)\n"
        "import time\ntime.sleep(0.5)  # both have started",
    )
    assert done.statuses == ["ok", "ok"]
    said = done.steps[0][1]
    # both are the step's, a daemon that left the kernel's process group included
    assert "ended 2 processes this step left running: sleep 300.75" in said
    assert "sleep 300.5" in said
    # the sandbox shows the code pids of its own; on this machine, none is left
    assert not host_pids("sleep", "300.75")
    assert not host_pids("sleep", "300.5")
    assert done.transcript_complete()


async def test_100_mb_of_output_is_cut_and_nothing_chokes(agents: Agents) -> None:
    done = await run_bad_step(
        agents, "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 2**20)\nprint('end')"
    )
    assert done.statuses == ["ok", "ok"]
    said = done.steps[0][1]
    assert said.rstrip().endswith("end")  # the tail is kept
    assert "characters" in said  # the cut is marked
    assert len(said) < 20_000
    assert done.transcript_path is not None
    assert os.path.getsize(done.transcript_path) < 5 * 2**20  # the flood is not logged whole
    assert done.transcript_complete()


async def test_bytes_that_are_not_utf8_arrive_replaced(agents: Agents) -> None:
    done = await run_bad_step(
        agents,
        "import os\nos.write(1, b'raw \\xff\\xfe bytes\\n')\nprint('lone \\udcff surrogate')",
    )
    assert done.statuses == ["ok", "ok"]
    assert "raw \ufffd\ufffd bytes" in done.steps[0][1]
    assert "lone \ufffd surrogate" in done.steps[0][1]
    assert done.transcript_complete()  # every line of it parsed as JSON


async def test_a_huge_image_is_replaced_by_a_note(agents: Agents) -> None:
    done = await run_bad_step(
        agents,
        "import io, numpy as np, matplotlib.pyplot as plt\n"
        "from IPython.display import Image, display\n"
        "buf = io.BytesIO()\n"
        "plt.imsave(buf, np.random.default_rng(0).random((2000, 2000, 3)), format='png')\n"
        "display(Image(buf.getvalue()))",
    )
    assert done.statuses == ["ok", "ok"]
    assert (
        re.search(r"image/png of [\d.,]+ MB", done.steps[0][1]) or "too large" in done.steps[0][1]
    )
    assert done.transcript_path is not None
    assert os.path.getsize(done.transcript_path) < 2 * 2**20
    assert done.transcript_complete()


async def test_a_step_that_deletes_its_working_directory_leaves_the_next_one_working(
    agents: Agents, tmp_path: Path
) -> None:
    done = await run_bad_step(
        agents,
        # in the temporary folder: the sandboxed kernel's working folder is read-only
        "import os, tempfile\n"
        "scratch = os.path.abspath(tempfile.mkdtemp())\n"
        "os.chdir(scratch)\n"
        "os.rmdir(scratch)",
    )
    assert done.statuses == ["ok", "ok"]
    assert "working directory was deleted" in done.steps[0][1]
    assert f"steps run in {tmp_path}" in done.steps[0][1]
    assert done.transcript_complete()


async def test_a_chdir_is_undone_and_said(agents: Agents, tmp_path: Path) -> None:
    done = await agents(
        "--data sales --approve never "
        + agents.script([step("import os\nos.chdir('/')"), step("print(os.getcwd())"), REPORT])
    )
    assert done.statuses == ["ok", "ok"]
    assert "changed the working directory to /;" in done.steps[0][1]
    assert done.steps[1][1].strip().endswith(str(tmp_path))
    assert done.transcript_complete()


SECRETS = {
    "OPENAI_API_KEY": "sk-user-secret-0123456789",
    "DATABASE_PASSWORD": "hunter2-db-secret",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-abcdefgh",
    "GITHUB_TOKEN": "ghp_secret_token_value",
}


async def test_code_looking_for_secrets_finds_none(
    make_agents: Callable[..., Awaitable[Agents]],
) -> None:
    agents = await make_agents(env=SECRETS)
    # the notebook's kernel has them: the user put them there
    assert (
        value(await agents.cell("import os\nos.environ['DATABASE_PASSWORD']"))
        == (SECRETS["DATABASE_PASSWORD"])
    )
    done = await run_bad_step(
        agents,
        "import os\nprint(dict(os.environ))\nprint(open('/proc/self/environ', 'rb').read())",
    )
    assert done.statuses == ["ok", "ok"]
    for secret in SECRETS.values():
        assert secret not in done.steps[0][1]
    assert "PATH" in done.steps[0][1]  # the environment is there, only scrubbed
    assert done.transcript_path is not None
    logged = Path(done.transcript_path).read_text()
    for secret in SECRETS.values():
        assert secret not in logged
    assert done.transcript_complete()


async def test_a_step_that_ignores_interrupts_gets_a_new_kernel(agents: Agents) -> None:
    done = await run_bad_step(
        agents,
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "while True:\n    time.sleep(0.1)",
        "--step-timeout 2",
    )
    assert done.kind == "approved", done.message
    assert done.statuses == ["timeout", "ok"]
    assert "did not stop when interrupted" in done.steps[0][1]
    assert "loaded again (sales)" in done.steps[0][1]
    assert "kernel ok 42" in done.steps[1][1]
    assert done.transcript_complete()

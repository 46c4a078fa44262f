"""Managed kernels on a real Jupyter Kernel Gateway, started on 127.0.0.1 for the session.

The gateway runs this interpreter's ``python3`` kernelspec, so its kernels have the
same packages as the tests; they are still remote in every way agentnb can tell:
started, interrupted and ended over REST, spoken to over one websocket, with an
environment the gateway decides. Connection drops are real: a TCP proxy between
agentnb and the gateway cuts the connections mid-step.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from agentnb import ConfigError, KernelConfig, KernelStartError, ManagedKernel
from agentnb.chat.events import ExecutionStarted
from agentnb.chat.transcript import read_transcript
from agentnb.cli import main
from agentnb.jupyter.session import Agents, parse_line, resolve_settings
from agentnb.kernel import GatewayBackend
from agentnb.run import arun

from ..conftest import step
from ..processes import free_port
from .gateway import Gateway, running_gateway

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("kernel_gateway") is None,
    reason="jupyter_kernel_gateway is not installed (pip install -e '.[test]')",
)

# small kernels, short limits: failure paths finish in seconds
FAST = {"step_timeout": 20.0, "interrupt_grace": 2.0, "preload": ()}


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A ``jupyter kernelgateway`` on 127.0.0.1 with a random token; killed afterwards,
    kernels included."""
    with running_gateway(tmp_path_factory.mktemp("gateway")) as started:
        yield started


@pytest.fixture(autouse=True)
def no_kernel_left(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Every test leaves the gateway without kernels, and no test sees the caller's
    gateway settings."""
    for name in ("GATEWAY", "GATEWAY_TOKEN", "GATEWAY_KERNEL", "MODEL"):
        monkeypatch.delenv(f"AGENTNB_{name}", raising=False)
    yield
    if "gateway" not in request.fixturenames:
        return
    gateway: Gateway = request.getfixturevalue("gateway")
    deadline = time.monotonic() + 10
    while gateway.kernels() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gateway.kernels() == [], "a kernel was left running on the gateway"


@pytest.fixture
async def remote(gateway: Gateway) -> AsyncIterator[Callable[..., ManagedKernel]]:
    """Build gateway kernels with any config (not started), on the ``backend`` given (to
    watch it: ``gateway.backend()``); all are shut down afterwards."""
    made: list[ManagedKernel] = []

    def make(backend: GatewayBackend | None = None, **options: Any) -> ManagedKernel:
        kernel = ManagedKernel(gateway.config(**{**FAST, **options}), backend=backend)
        made.append(kernel)
        return kernel

    yield make
    for kernel in made:
        await kernel.shutdown()


class Proxy:
    """A TCP proxy in front of the gateway that can cut every connection at once."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.refuse = False
        self.dropped = 0
        self.url = ""
        self._transports: list[asyncio.WriteTransport] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def drop(self) -> None:
        """Reset every open connection, as a network failure would."""
        for transport in self._transports:
            transport.abort()
        self.dropped += len(self._transports)
        self._transports.clear()

    async def close(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._transports += [writer.transport, up_writer.transport]  # type: ignore[list-item]
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


@pytest.fixture
async def proxy(gateway: Gateway) -> AsyncIterator[Proxy]:
    through = Proxy(int(gateway.url.rsplit(":", 1)[1]))
    await through.start()
    yield through
    await through.close()


def text_of(step: Any) -> str:
    return "".join(
        o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in step.outputs
    )


# --- a whole analysis ---------------------------------------------------------------


async def test_a_scripted_analysis_runs_on_the_gateway(gateway: Gateway, tmp_path: Path) -> None:
    replies = tmp_path / "replies.yaml"
    replies.write_text(
        yaml.safe_dump(
            {
                "analyst": [
                    step(
                        "import os\n"
                        "print('remote:', os.environ.get('KERNEL_GATEWAY'))\n"
                        "totals = sales.groupby('region')['revenue'].sum()\n"
                        "totals.to_frame()",
                        "Totals per region.",
                    ),
                    step(
                        "import matplotlib.pyplot as plt\n"
                        "totals.plot.bar(title='Revenue by region')\n"
                        "plt.show()",
                        "A bar chart.",
                    ),
                    "North sold most: 30 against 12.",
                ],
                "critic": ["APPROVE", "APPROVE", "APPROVE"],
            }
        )
    )
    sales = pd.DataFrame({"region": ["North", "South", "North"], "revenue": [10, 12, 20]})
    result = await arun(
        "Which region sold most? Plot it.",
        data={"sales": sales},
        model=f"scripted:{replies}",
        gateway=gateway.url,
        gateway_token=gateway.token,
        transcript=tmp_path / "run.jsonl",
        out=tmp_path / "analysis.ipynb",
    )
    assert result.ok, result.stop_reason
    first, chart = result.steps
    assert first.status == "ok"
    assert "remote: 1" in text_of(first)  # the gateway marks its kernels' environment
    assert any("text/html" in o.get("data", {}) for o in first.outputs)  # the table
    assert chart.status == "ok"
    assert any("image/png" in o.get("data", {}) for o in chart.outputs)
    assert result.notebook is not None
    assert result.notebook.exists()


# --- a kernel on the gateway ----------------------------------------------------------


async def test_outputs_tables_plots_and_errors_come_back(
    remote: Callable[..., ManagedKernel], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTNB_TEST_LOCAL_ONLY", "here")  # the caller's environment …
    monkeypatch.setenv("KERNEL_AGENTNB_TEST", "passed")  # … and a gateway parameter
    kernel = remote(preload=("pandas", "matplotlib.pyplot"), env={"KERNEL_EXTRA": "set"})
    await kernel.start()
    assert kernel.pid is None  # nothing of it is local
    assert kernel.log_path is None
    assert kernel.preloaded == ("pandas", "matplotlib.pyplot")

    where = await kernel.execute(
        "import os, sys\n"
        "print(sys.prefix)\n"
        "sorted(k for k in os.environ if 'AGENTNB' in k or k.startswith('KERNEL_'))"
    )
    assert where.status == "ok"
    assert where.outputs[0]["text"].strip() == sys.prefix  # this venv's kernelspec
    names = where.outputs[1]["data"]["text/plain"]
    assert "AGENTNB_TEST_LOCAL_ONLY" not in names  # the user's environment stays here
    assert "'KERNEL_AGENTNB_TEST'" in names
    assert "'KERNEL_EXTRA'" in names

    table = await kernel.execute("import pandas as pd\npd.DataFrame({'a': [1, 2]})")
    assert "<table" in table.outputs[0]["data"]["text/html"]

    plot = await kernel.execute(
        "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()\nprint('drawn')"
    )
    assert plot.status == "ok"
    assert [o["output_type"] for o in plot.outputs] == ["display_data", "stream"]
    assert plot.outputs[0]["data"]["image/png"]

    error = await kernel.execute("def f():\n    return 1 / 0\nf()")
    assert error.status == "error"
    (failure,) = error.outputs
    assert failure["ename"] == "ZeroDivisionError"
    assert any("return 1 / 0" in line for line in failure["traceback"])
    assert "ZeroDivisionError" in error.to_model_text()


async def test_the_stream_cap_and_the_cpu_limit_apply_in_the_remote_kernel(
    remote: Callable[..., ManagedKernel],
) -> None:
    # both are enforced inside the kernel, so they hold wherever it runs
    kernel = remote(cpu_time_limit=1)
    flood = await kernel.execute("print('x' * 5_000_000)")
    assert flood.status == "ok"
    assert len(flood.outputs[0]["text"]) < 30_000
    assert "Output was cut" in flood.note
    spin = await kernel.execute("n = 1\nwhile True:\n    n += 1")
    assert spin.status == "timeout"
    assert "CPU time" in spin.note
    assert (await kernel.execute("n > 1")).outputs[0]["data"]["text/plain"] == "True"


async def test_a_step_over_its_time_is_interrupted_remotely_and_the_kernel_keeps_its_state(
    remote: Callable[..., ManagedKernel], gateway: Gateway
) -> None:
    backend = gateway.backend()
    kernel = remote(backend=backend, step_timeout=1.5)
    await kernel.execute("x = 41")
    kernel_id = backend.kernel_id
    slow = await kernel.execute("import time\nprint('started', flush=True)\ntime.sleep(60)")
    assert slow.status == "timeout"
    assert not slow.restarted
    assert slow.duration < 5
    assert "started" in text_of(slow)
    assert any(o.get("ename") == "KeyboardInterrupt" for o in slow.outputs)
    after = await kernel.execute("x + 1")
    assert after.outputs[0]["data"]["text/plain"] == "42"
    assert backend.kernel_id == kernel_id


async def test_interrupt_stops_a_remote_step_on_request(
    remote: Callable[..., ManagedKernel], run_later: Callable[..., asyncio.Task[None]]
) -> None:
    kernel = remote()
    await kernel.start()
    run_later(0.5, kernel.interrupt)
    result = await kernel.execute("import time\ntime.sleep(30)")
    assert result.status == "interrupted"
    assert result.duration < 5


async def test_push_and_pull_go_through_the_kernel(remote: Callable[..., ManagedKernel]) -> None:
    kernel = remote()
    sales = pd.DataFrame(
        {
            "region": ["North", "South"] * 3,
            "revenue": np.arange(6.0),
            "when": pd.date_range("2024-01-01", periods=6),
        }
    )
    assert await kernel.push("sales", sales) == "DataFrame 6×3"
    total = await kernel.execute("float(sales.revenue.sum())")
    assert total.outputs[0]["data"]["text/plain"] == "15.0"
    await kernel.execute("by_region = sales.groupby('region').revenue.sum()")
    back = await kernel.pull("by_region")
    assert back.to_dict() == {"North": 6.0, "South": 9.0}
    pd.testing.assert_frame_equal(await kernel.pull("sales"), sales)
    assert await kernel.pull("__name__") == "__main__"  # JSON values too


async def test_a_push_larger_than_a_websocket_message_travels_in_parts(
    remote: Callable[..., ManagedKernel],
) -> None:
    # the gateway closes its websocket on a message over 10 MiB
    kernel = remote()
    big = pd.DataFrame({"a": np.arange(3_000_000, dtype="float64"), "b": np.ones(3_000_000)})
    assert await kernel.push("big", big) == "DataFrame 3000000×2"  # 48 MB
    check = await kernel.execute("float(big.a.sum()), float(big.b.sum())")
    assert check.outputs[0]["data"]["text/plain"] == f"({float(big.a.sum())}, 3000000.0)"
    pd.testing.assert_frame_equal(await kernel.pull("big"), big)
    small = await kernel.push("small", [1, 2, 3])  # the ordinary path still works after
    assert small == "list"


async def test_restart_gives_a_fresh_remote_kernel_with_the_pushed_data(
    remote: Callable[..., ManagedKernel], gateway: Gateway
) -> None:
    backend = gateway.backend()
    kernel = remote(backend=backend)
    await kernel.push("sales", pd.DataFrame({"n": [1, 2, 3]}))
    await kernel.execute("made = 1")
    before = backend.kernel_id
    await kernel.restart()
    after = backend.kernel_id
    assert after != before
    result = await kernel.execute("('made' in dir(), int(sales.n.sum()))")
    assert result.outputs[0]["data"]["text/plain"] == "(False, 6)"
    for _ in range(50):  # the old kernel is deleted in the background
        if [k["id"] for k in gateway.kernels()] == [after]:
            break
        await asyncio.sleep(0.1)
    assert [k["id"] for k in gateway.kernels()] == [after]


async def test_a_kernel_that_dies_remotely_is_replaced(
    remote: Callable[..., ManagedKernel], gateway: Gateway
) -> None:
    backend = gateway.backend()
    kernel = remote(backend=backend)
    await kernel.push("sales", [1, 2])
    before = backend.kernel_id
    died = await kernel.execute(
        "print('going', flush=True)\nimport os, time\ntime.sleep(0.3)\nos._exit(1)"
    )
    assert died.status == "died"
    assert died.restarted
    assert "going" in text_of(died)  # what it printed first is kept
    assert f"ended on the gateway {gateway.url}" in died.note
    assert "the data given to the agents was loaded again (sales)" in died.note
    assert backend.kernel_id != before
    after = await kernel.execute("sales")
    assert after.status == "ok"
    assert after.outputs[0]["data"]["text/plain"] == "[1, 2]"
    assert [k["id"] for k in gateway.kernels()] == [backend.kernel_id]


async def test_shutdown_leaves_no_kernel_on_the_gateway(
    gateway: Gateway, wait_gone: Callable[..., bool]
) -> None:
    backend = gateway.backend()
    async with ManagedKernel(gateway.config(**FAST), backend=backend) as kernel:
        await kernel.execute("x = 1")
        [model] = gateway.kernels()
        assert model["id"] == backend.kernel_id
        (pid,) = gateway.children()
    assert gateway.kernels() == []
    assert wait_gone(pid, zombie_ok=True)


def test_a_kernel_dropped_without_an_event_loop_is_deleted(gateway: Gateway) -> None:
    # interpreter exit: no loop to run the shutdown on, so the DELETE is sent blocking
    code = textwrap.dedent(
        f"""
        import asyncio
        from agentnb import KernelConfig, ManagedKernel
        from agentnb.kernel import GatewayBackend
        backend = GatewayBackend({gateway.url!r})
        kernel = ManagedKernel(KernelConfig(gateway={gateway.url!r}, preload=()), backend=backend)
        async def main():
            await kernel.start()
            print(backend.kernel_id, flush=True)
        asyncio.run(main())
        """
    )
    env = {**os.environ, "AGENTNB_GATEWAY_TOKEN": gateway.token}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert gateway.kernels() == []


# --- what goes wrong --------------------------------------------------------------------


async def test_a_wrong_token_is_named_and_never_shown(gateway: Gateway) -> None:
    kernel = ManagedKernel(KernelConfig(gateway=gateway.url, gateway_token="not-the-token"))
    with pytest.raises(KernelStartError) as caught:
        await kernel.start()
    message = str(caught.value)
    assert "rejected the token (HTTP 401)" in message
    assert "AGENTNB_GATEWAY_TOKEN" in message
    assert "not-the-token" not in message
    assert gateway.token not in message
    assert "not-the-token" not in repr(kernel.config)
    await kernel.shutdown()


async def test_no_token_says_so(gateway: Gateway) -> None:
    kernel = ManagedKernel(KernelConfig(gateway=gateway.url))
    with pytest.raises(
        KernelStartError, match=r"agentnb sent no token\. Set AGENTNB_GATEWAY_TOKEN"
    ):
        await kernel.start()
    await kernel.shutdown()


async def test_the_token_comes_from_the_environment(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTNB_GATEWAY_TOKEN", gateway.token)
    async with ManagedKernel(KernelConfig(gateway=gateway.url, preload=())) as kernel:
        assert (await kernel.execute("6 * 7")).outputs[0]["data"]["text/plain"] == "42"


async def test_an_unreachable_gateway_is_named_with_what_to_check() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    kernel = ManagedKernel(KernelConfig(gateway=url, gateway_token="t"))
    with pytest.raises(KernelStartError) as caught:
        await kernel.start()
    message = str(caught.value)
    assert f"cannot reach the gateway at {url}" in message
    assert "check that it is running" in message
    assert "AGENTNB_GATEWAY" in message
    await kernel.shutdown()


async def test_an_unknown_kernel_name_is_reported(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTNB_GATEWAY_KERNEL", "no-such-kernel")
    kernel = ManagedKernel(gateway.config(**FAST))
    with pytest.raises(KernelStartError, match="has no kernel named 'no-such-kernel'") as caught:
        await kernel.start()
    assert "it has: python3" in str(caught.value)
    await kernel.shutdown()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:8888", "starting with http:// or https://"),
        ("ftp://host", "starting with http:// or https://"),
        ("http://host:port", "not a URL"),
        ("http://host:8888/?token=abc", "put the token in AGENTNB_GATEWAY_TOKEN"),
        ("http://me:secret@host:8888", "without credentials"),
    ],
)
def test_a_malformed_gateway_url_is_a_config_error(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        KernelConfig(gateway=url)
    assert "secret" not in str(caught.value)
    assert "abc" not in str(caught.value)


def test_gateway_settings_come_from_flags_configuration_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = Agents()
    assert resolve_settings(config, {}).options.gateway is None
    monkeypatch.setenv("AGENTNB_GATEWAY", "http://from-env:1")
    settings = resolve_settings(config, {})
    assert (settings.options.gateway, settings.sources["gateway"]) == (
        "http://from-env:1",
        "$AGENTNB_GATEWAY",
    )
    config.gateway = "http://from-config:1"
    assert resolve_settings(config, {}).options.gateway == "http://from-config:1"
    flags = vars(parse_line("--gateway http://from-flag:1/"))
    assert resolve_settings(config, flags).options.gateway == "http://from-flag:1"


async def test_run_refuses_contradictory_gateway_arguments() -> None:
    with pytest.raises(ConfigError, match="gateway_token was given without a gateway URL"):
        await arun("Q?", model="scripted:none.yaml", gateway_token="t")
    with pytest.raises(ConfigError, match="give a kernel, or where and how to start one"):
        await arun("Q?", model="scripted:none.yaml", kernel=ManagedKernel(), gateway="http://h:1")
    with pytest.raises(ConfigError, match="starting with http://"):
        await arun("Q?", model="scripted:none.yaml", gateway="h:1")


def test_the_url_is_kept_without_a_trailing_slash() -> None:
    assert KernelConfig(gateway="https://gw.example.org/base/").gateway == (
        "https://gw.example.org/base"
    )
    assert GatewayBackend("http://h:1/").url == "http://h:1"


# --- dropped connections ------------------------------------------------------------------


async def test_a_dropped_websocket_is_reconnected_and_no_output_is_lost(
    gateway: Gateway, proxy: Proxy
) -> None:
    backend = gateway.backend(proxy.url)
    kernel = ManagedKernel(gateway.config(**FAST, gateway=proxy.url), backend=backend)
    try:
        await kernel.execute("x = 1")
        loop = asyncio.get_running_loop()
        loop.call_later(0.6, proxy.drop)
        result = await kernel.execute(
            "import time\n"
            "for i in range(30):\n    print(i, flush=True)\n    time.sleep(0.05)\n"
            "'done'"
        )
        assert proxy.dropped, "the connection was not cut while the step ran"
        assert result.status == "ok", result.note
        assert backend.reconnects == 1
        numbers = [int(n) for n in text_of(result).split() if n.isdigit()]
        assert numbers == list(range(30))  # the gateway kept what came meanwhile
        assert result.outputs[-1]["data"]["text/plain"] == "'done'"
        proxy.drop()  # between steps, too
        await asyncio.sleep(0.5)
        assert (await kernel.execute("x")).outputs[0]["data"]["text/plain"] == "1"
        assert backend.reconnects == 2
    finally:
        await kernel.shutdown()


async def test_a_websocket_that_cannot_reconnect_is_reported_as_a_kernel_error(
    gateway: Gateway, proxy: Proxy
) -> None:
    backend = gateway.backend(proxy.url)
    kernel = ManagedKernel(gateway.config(**FAST, gateway=proxy.url), backend=backend)
    try:
        await kernel.start()
        kernel_id = backend.kernel_id

        def cut() -> None:
            proxy.refuse = True
            proxy.drop()

        asyncio.get_running_loop().call_later(0.5, cut)
        # the one reconnection fails, so the kernel is given up and a new one cannot
        # be started either: the request fails with the reason and what to check
        with pytest.raises(KernelStartError, match=f"cannot reach the gateway at {proxy.url}"):
            await kernel.execute("import time\ntime.sleep(3)")
        assert backend.reconnects == 0
        # the gateway itself is fine: the next request works once the network does
        proxy.refuse = False
        again = await kernel.execute("6 * 7")
        assert again.outputs[0]["data"]["text/plain"] == "42"
        # the kernel that was cut off could not be deleted then; it is at the shutdown
        assert kernel_id in [k["id"] for k in gateway.kernels()]
    finally:
        await kernel.shutdown()
    assert gateway.kernels() == []


# --- the command line and the notebook --------------------------------------------------


def test_the_cli_runs_on_the_gateway_and_pushes_the_data_files(
    gateway: Gateway,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AGENTNB_GATEWAY_TOKEN", gateway.token)
    monkeypatch.setenv("COLUMNS", "200")
    (tmp_path / "sales.csv").write_text("region,amount\nnorth,10\nsouth,20\neast,30\n")
    replies = tmp_path / "replies.yaml"
    code = "import os\nprint('total', sales['amount'].sum(), os.environ.get('KERNEL_GATEWAY'))"
    replies.write_text(
        yaml.safe_dump(
            {"analyst": [step(code), "The total is **60**."], "critic": ["APPROVE", "APPROVE"]}
        )
    )
    status = main(
        [
            "run",
            "Total?",
            "--data",
            "sales.csv",
            "--model",
            f"scripted:{replies}",
            "--gateway",
            gateway.url,
            "--approve",
            "never",
            "--transcript",
            "run.jsonl",
            "--out",
            "a.ipynb",
        ]
    )
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "total 60 1" in captured.err
    events = read_transcript(tmp_path / "run.jsonl")
    # a remote kernel cannot open this machine's files: the CSV was read here and
    # pushed, so no step 0 loaded it in the kernel
    assert not [e for e in events if isinstance(e, ExecutionStarted) and e.step == 0]
    assert "pd.read_csv(" in (tmp_path / "a.ipynb").read_text()  # the notebook still does


def test_the_cli_rejects_a_malformed_gateway(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "Q?", "--gateway", "localhost:8888", "--model", "scripted:x"]) == 2
    assert "--gateway: give the gateway's base URL" in capsys.readouterr().err


async def test_a_notebook_cell_runs_on_the_gateway_and_back_here(
    gateway: Gateway, make_kernel: Callable[..., ManagedKernel], tmp_path: Path
) -> None:
    (tmp_path / "replies.yaml").write_text(
        yaml.safe_dump(
            {
                "analyst": [
                    step("import os\nprint('remote:', os.environ.get('KERNEL_GATEWAY'))"),
                    "Done.",
                    step("import os\nprint('remote:', os.environ.get('KERNEL_GATEWAY'))"),
                    "Done.",
                ],
                "critic": ["APPROVE"] * 4,
            }
        )
    )
    notebook = make_kernel(step_timeout=90, cwd=str(tmp_path), sandbox=False)  # the user's
    setup = await notebook.execute(
        "%load_ext agentnb\n"
        f"%config Agents.gateway_token = {gateway.token!r}\n"
        "from agentnb.jupyter import magics"
    )
    assert setup.status == "ok", setup.to_model_text()
    flags = "--approve never --model scripted:replies.yaml"

    bad = await notebook.execute(f"%%agents {flags} --gateway localhost:1\nQ?")
    assert "--gateway: give the gateway's base URL" in text_of(bad)

    there = await notebook.execute(f"%%agents {flags} --gateway {gateway.url}\nWhere?")
    assert there.status == "ok", there.to_model_text()
    status = await notebook.execute("%agents status")
    assert f"managed kernel: running on the gateway {gateway.url}" in text_of(status)
    assert "isolated as that gateway isolates its kernels" in text_of(status)
    ran = await notebook.execute("r = %agents result\n[s.outputs[0]['text'] for s in r.steps]")
    assert "remote: 1" in text_of(ran)
    assert len(gateway.kernels()) == 1

    # the next cell without --gateway runs on this machine again, in a fresh kernel
    here = await notebook.execute(f"%%agents {flags}\nAnd here?")
    assert here.status == "ok", here.to_model_text()
    ran = await notebook.execute("r = %agents result\n[s.outputs[0]['text'] for s in r.steps]")
    assert "remote: None" in text_of(ran)
    assert gateway.kernels() == []  # the remote kernel was shut down when it moved
    await notebook.execute("await magics._session.close()")

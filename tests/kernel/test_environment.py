"""What the managed kernel can see of its caller: environment and directory."""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from agentnb import ManagedKernel

PEEK = (
    "import json, os\n"
    "environ = open('/proc/self/environ', 'rb').read().decode()\n"
    "json.dumps({name: os.environ.get(name) for name in NAMES} | "
    "{'raw': 'sk-test-secret' in environ})"
)


async def test_secrets_stay_out_of_the_kernel(
    make_kernel: Callable[..., ManagedKernel], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    monkeypatch.setenv("WAREHOUSE_PASSWORD", "hunter2")
    monkeypatch.setenv("DATABASE_URL", "postgres://me:hunter2@db/sales")
    monkeypatch.setenv("HF_TOKEN", "allowed-on-purpose")
    monkeypatch.setenv("SALES_REGION", "north")
    kernel = make_kernel(env_allow=("HF_TOKEN",), env={"EXTRA_SETTING": "on"})
    names = [
        "OPENAI_API_KEY",
        "WAREHOUSE_PASSWORD",
        "DATABASE_URL",
        "HF_TOKEN",
        "SALES_REGION",
        "EXTRA_SETTING",
    ]
    await kernel.execute(f"NAMES = {names!r}")
    result = await kernel.execute(PEEK)
    seen = json.loads(ast.literal_eval(result.outputs[0]["data"]["text/plain"]))
    assert seen == {
        "OPENAI_API_KEY": None,
        "WAREHOUSE_PASSWORD": None,
        "DATABASE_URL": None,
        "HF_TOKEN": "allowed-on-purpose",
        "SALES_REGION": "north",
        "EXTRA_SETTING": "on",
        "raw": False,
    }


async def test_working_directory_defaults_to_the_callers(
    make_kernel: Callable[..., ManagedKernel], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "sales.csv").write_text("region,revenue\nnorth,3\nsouth,4\n")
    monkeypatch.chdir(tmp_path)
    kernel = make_kernel()
    result = await kernel.execute("import csv\nlen(list(csv.reader(open('sales.csv'))))")
    assert result.outputs[0]["data"]["text/plain"] == "3"


async def test_working_directory_can_be_set(
    make_kernel: Callable[..., ManagedKernel], tmp_path: Path
) -> None:
    kernel = make_kernel(cwd=str(tmp_path))
    result = await kernel.execute("import os\nos.getcwd()")
    assert result.outputs[0]["data"]["text/plain"] == repr(str(tmp_path))


async def test_the_kernels_own_chatter_goes_to_its_log(
    make_kernel: Callable[..., ManagedKernel], capfd: pytest.CaptureFixture[str]
) -> None:
    kernel = make_kernel()
    await kernel.execute(
        "import os\nos.write(2, b'low-level note\\n')\nimport time\ntime.sleep(0.3)"
    )
    assert kernel.log_path is not None
    assert "low-level note" in kernel.log_path.read_text()
    captured = capfd.readouterr()
    assert "low-level note" not in captured.out + captured.err

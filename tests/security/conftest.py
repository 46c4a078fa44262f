"""The security tier: each attack of a hostile analyst, replayed through a real
``%%agents`` cell in a notebook's own kernel.

The notebook's kernel (unsandboxed, as a user's is) holds what an attacker is
after: an API key in its environment, a home with SSH keys, a ``.netrc``, cloud
credentials and an ``ipython_config.py``; a notebook folder with ``.env`` and
``.git``; a Jupyter runtime directory with a server's token; a TCP server on
127.0.0.1. Each hostile step prints ``LEAK`` when it gets what it came for, so
the same steps run with ``--sandbox off`` prove that every probe can tell.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..conftest import Cell
from ..faults.conftest import REPORT, Agents, step

SECRET = "agentnb-test-secret-7f3a"
"""In every place an attacker looks; never in a step's output or a transcript."""


@dataclass
class Target:
    """What the hostile steps go after, on this machine."""

    agents: Agents
    folder: Path
    """The notebook's folder (the managed kernel's working directory)."""
    home: Path
    port: int
    """A TCP server on 127.0.0.1 that the notebook's side can reach."""

    async def run(self, *codes: str, flags: str = "") -> object:
        """An analysis whose analyst proposes ``codes`` as steps, then reports."""
        analyst = [step(code, "Look around.") for code in codes] + [REPORT]
        return await self.agents(
            f"--data sales --approve never {self.agents.script(analyst)} {flags}"
        )


@pytest.fixture
def listening() -> Iterator[int]:
    """A port on 127.0.0.1 with a server that accepts connections."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield int(server.getsockname()[1])


@pytest.fixture
def make_target(
    make_cell: Callable[..., Awaitable[Cell]], tmp_path: Path, listening: int
) -> Callable[..., Awaitable[Target]]:
    """``await make_target(**notebook_kernel_config)``: the secrets planted, a notebook
    kernel that holds them and loaded agentnb."""

    async def make(**config: object) -> Target:
        home = tmp_path / "home"
        for path, text in {
            ".ssh/id_ed25519": f"-----BEGIN OPENSSH PRIVATE KEY----- {SECRET}",
            ".netrc": f"machine example.org login me password {SECRET}",
            ".aws/credentials": f"[default]\naws_secret_access_key = {SECRET}",
            ".ipython/profile_default/ipython_config.py": f"# c.Agents.gateway_token = '{SECRET}'",
        }.items():
            (home / path).parent.mkdir(parents=True, exist_ok=True)
            (home / path).write_text(text)
        (tmp_path / ".env").write_text(f"OPENAI_API_KEY={SECRET}\n")
        (tmp_path / ".git").mkdir()
        (tmp_path / ".git" / "config").write_text(f"[credential]\n\thelper = {SECRET}\n")
        (tmp_path / "data" / "nested").mkdir(parents=True)
        (tmp_path / "data" / "nested" / ".env").write_text(f"TOKEN={SECRET}\n")
        (tmp_path / "data" / "readme.txt").write_text("the data folder stays readable\n")
        runtime = tmp_path / "runtime"
        runtime.mkdir()
        (runtime / "jpserver-4242.json").write_text(
            json.dumps({"url": "http://127.0.0.1:8888/", "token": SECRET})
        )
        env = {
            "HOME": str(home),
            "JUPYTER_RUNTIME_DIR": str(runtime),
            "OPENAI_API_KEY": SECRET,
            **config.pop("env", {}),  # type: ignore[dict-item]
        }
        cell = await make_cell(env=env, **config)
        return Target(Agents(cell, tmp_path), tmp_path, home, listening)

    return make


@pytest.fixture
async def target(make_target: Callable[..., Awaitable[Target]]) -> Target:
    return await make_target()

"""A Jupyter Kernel Gateway on 127.0.0.1, for the gateway tests (test_gateway.py) and the
gateway benchmark (bench/gateway_roundtrip.py).

The gateway runs this interpreter's ``python3`` kernelspec, with a random token, and
lists its kernels (``GET /api/kernels``), so a caller can check that none is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentnb import KernelConfig
from agentnb.kernel import GatewayBackend

from ..processes import children_of, free_port


@dataclass
class Gateway:
    """A running ``jupyter kernelgateway``: its URL, token, process and log file."""

    url: str
    token: str
    process: subprocess.Popen[bytes]
    log: Path

    def kernels(self) -> list[dict[str, Any]]:
        """``GET /api/kernels``: the kernels the gateway runs now."""
        request = urllib.request.Request(
            f"{self.url}/api/kernels", headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            result: list[dict[str, Any]] = json.load(response)
            return result

    def config(self, **options: Any) -> KernelConfig:
        """A kernel configuration for this gateway (``options`` may name another way to it)."""
        return KernelConfig(**{"gateway": self.url, "gateway_token": self.token, **options})

    def backend(self, url: str | None = None) -> GatewayBackend:
        """A backend for this gateway (or for ``url``, a way to it), to give
        ``ManagedKernel(config, backend=...)`` and keep at hand."""
        return GatewayBackend(url or self.url, token=self.token)

    def children(self) -> set[int]:
        """Process ids of the gateway's kernels (its child processes)."""
        return set(children_of(self.process.pid, all_below=False))


@contextlib.contextmanager
def running_gateway(where: Path, timeout: float = 60.0) -> Iterator[Gateway]:
    """Start a gateway working in ``where`` (its log: ``where/gateway.log``); stop it
    afterwards, its kernels with it. The gateway sees this environment but agentnb's and
    pytest's variables. Raises RuntimeError, with the end of the log, if it does not start."""
    port, token = free_port(), secrets.token_hex(16)
    log = where / "gateway.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTNB_", "PYTEST_"))}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kernel_gateway",
                "--KernelGatewayApp.ip=127.0.0.1",
                f"--KernelGatewayApp.port={port}",
                "--KernelGatewayApp.port_retries=0",
                f"--KernelGatewayApp.auth_token={token}",
                "--JupyterWebsocketPersonality.list_kernels=True",
            ],
            cwd=where,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = Gateway(f"http://127.0.0.1:{port}", token, process, log)
    deadline = time.monotonic() + timeout
    while True:
        try:
            started.kernels()
            break
        except (OSError, urllib.error.URLError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(
                    f"the kernel gateway did not start (is jupyter_kernel_gateway installed?); "
                    f"its log:\n{log.read_text()[-3000:]}"
                ) from None
            time.sleep(0.2)
    try:
        yield started
    finally:
        kernels = started.children()
        process.send_signal(signal.SIGTERM)  # the gateway shuts its kernels down
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for pid in kernels:  # kernels run in sessions of their own: none may outlive it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

"""A managed kernel as a local process, started with jupyter_client over ipc.

Each kernel gets a private directory (mode 0700) for its connection file, its ipc
sockets and its log, and runs in its own process group, so that stopping it also
ends whatever the agents' code spawned. The kernel's own stdout and stderr go to
the log file, never into the user's cell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import zmq.asyncio
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from ..errors import KernelStartError
from . import leftovers
from .backend import Message
from .sandbox import (
    SandboxPolicy,
    SandboxSettings,
    SandboxUnavailable,
    find_bwrap,
    make_pids_cgroup,
    remove_cgroup,
)

__all__ = ["LocalBackend"]

log = logging.getLogger(__name__)

_SPEC_NAME = "agentnb-python"
_LOG_TAIL_LINES = 15
# frames from here down in a crash report are IPython running a cell
_MACHINERY = "IPython/core/interactiveshell.py"


class _OwnSpec(KernelSpecManager):
    """Serves one in-memory kernelspec: ipykernel on the given interpreter, in the
    sandbox when there is one."""

    def __init__(self, python: str, sandbox: SandboxPolicy | None) -> None:
        super().__init__()
        argv = [
            python,
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
            # the agents' code stays out of the user's IPython history; an
            # in-memory history rather than none, because a disabled history
            # makes ipykernel 7.4's shutdown hang in a race about half the
            # time (bench/README.md, "shutdown")
            "--HistoryManager.hist_file=:memory:",
        ]
        self._spec = KernelSpec(
            name=_SPEC_NAME,
            display_name="agentnb managed kernel",
            language="python",
            interrupt_mode="signal",
            argv=sandbox.command(argv, python=python) if sandbox else argv,
        )

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name == _SPEC_NAME:
            return self._spec
        return super().get_kernel_spec(kernel_name)


class LocalBackend:
    """A kernel process on this machine (see :class:`~agentnb.kernel.backend.KernelBackend`).

    Args:
        python: the kernel's interpreter (default: this one).
        sandbox: how to build the bubblewrap policy once the kernel's folders are
            known; ``None`` runs the kernel unsandboxed, as the user.
    """

    def __init__(
        self, python: str | None = None, *, sandbox: SandboxSettings | None = None
    ) -> None:
        self._python = python or sys.executable
        self._settings = sandbox
        self.sandbox: SandboxPolicy | None = None
        """The policy of the running kernel (None: not sandboxed, or not started)."""
        self._scratch: str | None = None
        self._cgroup: str | None = None
        self._dir: Path | None = None
        self._km: Any = None
        self._kc: Any = None
        self._context: zmq.asyncio.Context | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def sandboxed(self) -> bool:
        return self._settings is not None

    @property
    def log_path(self) -> Path | None:
        return self._dir / "kernel.log" if self._dir else None

    async def start(self, *, env: Mapping[str, str], cwd: str, timeout: float) -> None:
        if not Path(cwd).is_dir():
            raise KernelStartError(
                f"the managed kernel's working directory {cwd!r} does not exist; "
                "create it or set another one (KernelConfig.cwd)"
            )
        if self._dir is None:
            leftovers.sweep()
            self._dir = Path(tempfile.mkdtemp(prefix=leftovers.PREFIX))
        if self._settings is not None:
            # on the loop, though the first call waits for bwrap's probe and the
            # interpreter's answer (tens of ms, once per process): a kernel started
            # from a notebook cell then starts before the next cell, as unsandboxed
            self.sandbox = self._policy(cwd)
        leftovers.claim(self._dir, cgroup=self._cgroup)
        # our own zmq context, destroyed in _teardown: a context left to the
        # garbage collector with a socket still open blocks it forever
        self._context = zmq.asyncio.Context()
        km = AsyncKernelManager(
            context=self._context,
            transport="ipc",
            connection_file=str(self._dir / f"kernel-{os.urandom(4).hex()}.json"),
            kernel_spec_manager=_OwnSpec(self._python, self.sandbox),
            kernel_name=_SPEC_NAME,
        )
        assert self.log_path is not None
        try:
            with self.log_path.open("ab") as log_file:
                await km.start_kernel(
                    env=dict(env),
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                )
        except OSError as err:
            raise KernelStartError(
                f"could not run {self._python!r} to start the managed kernel: {err}"
            ) from err
        finally:
            # recorded even when the start is cancelled, so that stop() finds it;
            # the local provisioner's Popen gives the pid, the group, the exit status
            self._km = km
            self._process = getattr(km.provisioner, "process", None)
        self._kc = km.client()
        self._kc.start_channels()
        try:
            await self._kc.wait_for_ready(timeout=timeout)
        except RuntimeError as err:
            reason = self.exit_reason() if not self.is_alive() else f"{err}"
            tail = self.log_tail()
            await self.stop(graceful=False, final=False)
            raise KernelStartError(
                f"the managed kernel did not start ({reason})."
                + (f" Its log ends with:\n{tail}" if tail else "")
                + f"\nCheck that ipykernel is installed for {self._python}."
            ) from err

    async def stop(self, *, graceful: bool, final: bool) -> None:
        if graceful and self._kc is not None and self.is_alive():
            self._kc.shutdown()
            deadline = time.monotonic() + 1.0
            # a process exit has no event to await: poll, briefly
            while self.is_alive() and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        self._teardown()
        if final:
            self._remove_files()

    def kill_now(self) -> None:
        self._teardown()
        self._remove_files()

    def _policy(self, cwd: str) -> SandboxPolicy:
        settings = self._settings
        assert settings is not None
        assert self._dir is not None
        workdir = os.path.realpath(cwd)
        if workdir == "/":
            raise SandboxUnavailable(
                "the managed kernel's working folder is /, which the sandbox would show "
                "whole: start Jupyter (or agentnb) in a project folder, or set KernelConfig.cwd"
            )
        bwrap = find_bwrap()
        if self._scratch is None:
            if settings.scratch:
                Path(settings.scratch).mkdir(parents=True, exist_ok=True)
                self._scratch = os.path.abspath(settings.scratch)
            else:
                self._scratch = tempfile.mkdtemp(prefix="agentnb-scratch-")
        cache = Path(os.path.expanduser("~/.cache/agentnb/sandbox"))
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._cgroup is None:
            self._cgroup = make_pids_cgroup(
                self._dir.name.removeprefix("agentnb-"), settings.max_processes
            )
        # agentnb's own folder there (transcripts) is made now, so that the sandbox
        # hides it even when the first transcript is written after this start
        with contextlib.suppress(OSError):
            os.makedirs(os.path.join(workdir, ".agentnb"), exist_ok=True)
        return SandboxPolicy(
            bwrap=bwrap,
            workdir=workdir,
            scratch=self._scratch,
            channels=str(self._dir),
            cache=str(cache),
            network=settings.network,
            readable=settings.readable,
            max_processes=settings.max_processes,
            pids_cgroup=self._cgroup,
            memory_limit=settings.memory_limit,
            tmp_size=settings.tmp_size,
        )

    def _remove_files(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            leftovers.release(self._dir)
            self._dir = None
        if self._cgroup is not None:
            remove_cgroup(self._cgroup)
            self._cgroup = None
        if self._scratch is not None:
            if not (self._settings and self._settings.scratch):
                # what the agents wrote is the user's to keep; an empty folder is not
                with contextlib.suppress(OSError):
                    os.rmdir(self._scratch)
            self._scratch = None

    def _teardown(self) -> None:
        """Kill the process group, reap the kernel, close channels, remove files."""
        process, self._process = self._process, None
        kc, self._kc = self._kc, None
        km, self._km = self._km, None
        context, self._context = self._context, None
        if kc is not None:
            kc.stop_channels()
        if context is not None:
            context.destroy(linger=0)
        if process is not None:
            # The group outlives its leader while children the agents' code
            # started are running; the kernel is not reaped yet, so its pid
            # (the group id) cannot have been reused.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if km is not None:
            km.cleanup_connection_file()
            km.cleanup_ipc_files()

    async def interrupt(self) -> None:
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGINT)

    def is_alive(self) -> bool:
        return self._exit_info() is None

    def _exit_info(self) -> tuple[int, int] | None:
        """(si_code, si_status) once the kernel has ended; it stays unreaped."""
        process = self._process
        if process is None:
            return (os.CLD_EXITED, 0)
        if process.returncode is not None:
            code = process.returncode
            return (os.CLD_KILLED, -code) if code < 0 else (os.CLD_EXITED, code)
        try:
            info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return (os.CLD_EXITED, 0)
        return None if info is None else (info.si_code, info.si_status)

    def exit_reason(self) -> str:
        info = self._exit_info()
        if info is None:
            return "is still running"
        code, status = info
        if self.sandbox is not None and code == os.CLD_EXITED and status > 128:
            # bwrap exits with 128 + N for a command that a signal N ended
            code, status = os.CLD_KILLED, status - 128
        if code == os.CLD_EXITED:
            return f"exited with code {status}"
        name = signal.Signals(status).name if status in signal.valid_signals() else str(status)
        reason = f"was killed by signal {status} ({name})"
        if status == signal.SIGKILL:
            reason += ", which is what the out-of-memory killer sends"
        return reason

    def log_tail(self, since: int = 0) -> str:
        """What the kernel logged after byte offset ``since``, briefly.

        A crash report from faulthandler is cut down to the frames above
        IPython's machinery, which are the agents' own code; otherwise the last
        lines are returned.
        """
        path = self.log_path
        if path is None or not path.exists():
            return ""
        with path.open("rb") as f:
            f.seek(since)
            text = f.read()[-20_000:].decode("utf-8", "replace")
        return summarize_log(text)

    def log_size(self) -> int:
        path = self.log_path
        return path.stat().st_size if path is not None and path.exists() else 0

    def send(
        self, msg_type: str, content: Mapping[str, Any], *, buffers: Sequence[Any] = ()
    ) -> str:
        kc = self._kc
        msg = kc.session.msg(msg_type, dict(content))
        kc.session.send(kc.shell_channel.socket, msg, buffers=list(buffers))
        return str(msg["header"]["msg_id"])

    async def iopub(self) -> Message:
        msg: Message = await self._kc.get_iopub_msg()
        return msg

    async def shell_reply(self) -> Message:
        msg: Message = await self._kc.get_shell_msg()
        return msg


def summarize_log(text: str) -> str:
    """The crash report in a kernel log, or its last lines."""
    start = text.rfind("Fatal Python error")
    if start < 0:
        lines = [line for line in text.splitlines() if line.strip()]
        return "\n".join(lines[-_LOG_TAIL_LINES:])
    lines = text[start:].splitlines()
    kept = [lines[0]]
    for line in lines[1:]:
        if _MACHINERY in line:
            break
        if line.lstrip().startswith("File "):
            kept.append(line)
    return "\n".join(kept)

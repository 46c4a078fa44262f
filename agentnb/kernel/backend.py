"""Where a managed kernel runs, and how messages reach it.

A backend owns one kernel process (or remote kernel) and its channels, and nothing
else: what to do about timeouts, deaths, caps and data lives in
:class:`~agentnb.kernel.managed.ManagedKernel`, once, for every backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

__all__ = ["KernelBackend", "Message"]

Message = dict[str, Any]
"""A Jupyter protocol message: header, parent_header, msg_type, content, buffers."""


class KernelBackend(Protocol):
    """One kernel process and its channels."""

    @property
    def pid(self) -> int | None:
        """The kernel's process id, where it is a local process."""

    @property
    def log_path(self) -> Path | None:
        """The file that receives the kernel's own stdout and stderr, if any."""

    async def start(self, *, env: Mapping[str, str], cwd: str, timeout: float) -> None:
        """Start a kernel and wait until it answers; raise KernelStartError if not."""

    async def stop(self, *, graceful: bool, final: bool) -> None:
        """End the kernel and every process it started; return quickly.

        ``graceful`` lets the kernel exit on its own first (briefly); ``final``
        also removes the backend's files, where a restart would keep its log.
        """

    def kill_now(self) -> None:
        """End the kernel at once, without an event loop (interpreter exit)."""

    async def interrupt(self) -> None:
        """Interrupt what the kernel is running (SIGINT or interrupt_request)."""

    def is_alive(self) -> bool:
        """Whether the kernel is still running; cheap enough to poll."""

    def exit_reason(self) -> str:
        """How the kernel ended, in words ("exited with code 3", "was killed by …")."""

    def log_size(self) -> int:
        """Bytes in the kernel's log so far (a mark for :meth:`log_tail`)."""

    def log_tail(self, since: int = 0) -> str:
        """The last lines of the kernel's log written after byte offset ``since``."""

    def send(
        self, msg_type: str, content: Mapping[str, Any], *, buffers: Sequence[Any] = ()
    ) -> str:
        """Send a request on the shell channel; return its msg_id."""

    async def iopub(self) -> Message:
        """The next message from the iopub channel."""

    async def shell_reply(self) -> Message:
        """The next reply from the shell channel."""

"""Requests to a kernel and their answers, at the level of protocol messages.

:class:`Channel` sends execute requests and waits for what belongs to them (the
shell reply, the iopub outputs up to ``idle``, comm replies), while watching that
the kernel is still alive. What those answers mean is decided in
:mod:`agentnb.kernel.managed`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine, Mapping
from importlib import resources
from typing import Any, TypeVar

from .backend import KernelBackend, Message
from .inside import COMM_TARGET
from .outputs import OutputCollector

__all__ = ["COMM_TARGET", "Channel", "KernelDied", "bootstrap_code"]

T = TypeVar("T")

_DEATH_POLL = 0.1  # seconds between liveness checks while waiting on the kernel
_LATE_OUTPUT_CAP = 10  # after a reply, wait for outputs at most this many iopub timeouts


class KernelDied(Exception):
    """The kernel process ended while a request was in flight (internal)."""


class Channel:
    """Protocol-level requests to one backend's kernel."""

    def __init__(self, backend: KernelBackend) -> None:
        self.backend = backend

    def execute_request(
        self,
        code: str,
        *,
        silent: bool = False,
        user_expressions: Mapping[str, str] | None = None,
    ) -> str:
        """Send ``code``; return the request's msg_id."""
        return self.backend.send(
            "execute_request",
            {
                "code": code,
                "silent": silent,
                "store_history": not silent,
                "user_expressions": dict(user_expressions or {}),
                "allow_stdin": False,
                # requests go one at a time; aborting the queue after an error
                # would only hit a step sent right after a cancelled one
                "stop_on_error": False,
            },
        )

    async def reply_and_idle(
        self,
        msg_id: str,
        collector: OutputCollector,
        *,
        iopub_timeout: float | None = None,
        on_reply: Callable[[], object] | None = None,
    ) -> tuple[Message, bool]:
        """The shell reply to ``msg_id`` once its outputs are complete, and whether
        they are.

        Complete: the kernel's ``idle`` after the request came. The PUB socket drops
        messages when the reader falls behind, ``idle`` among them, so with
        ``iopub_timeout`` the wait ends also once, after the reply, no output of
        the request has come for that long (or for ten times that in all): then
        the outputs may be incomplete (False). ``on_reply`` is called when the
        reply comes.
        """
        reply = asyncio.ensure_future(self._shell_reply(msg_id))
        heard = [time.monotonic()]
        outputs = asyncio.ensure_future(self.drain(msg_id, collector, heard))
        try:
            await asyncio.wait({reply, outputs}, return_when=asyncio.FIRST_COMPLETED)
            if outputs.done():
                outputs.result()
                return await reply, True
            if on_reply is not None:
                on_reply()
            if iopub_timeout is None:
                await outputs
                return reply.result(), True
            now = heard[0] = time.monotonic()
            give_up = now + _LATE_OUTPUT_CAP * iopub_timeout
            while not outputs.done():
                left = min(heard[0] + iopub_timeout, give_up) - time.monotonic()
                if left <= 0:
                    return reply.result(), False
                await asyncio.wait({outputs}, timeout=left)
            outputs.result()
            return reply.result(), True
        finally:
            reply.cancel()
            outputs.cancel()

    async def drain(
        self, msg_id: str, collector: OutputCollector | None, heard: list[float] | None = None
    ) -> list[Message]:
        """Read iopub until the kernel is idle after ``msg_id``; return its comm replies
        (without a collector; with one, comm messages go to it, for widgets).
        ``heard[0]`` is set to the time of each message of the request."""
        comm_replies: list[Message] = []
        while True:
            msg = await self.backend.iopub()
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if heard is not None:
                heard[0] = time.monotonic()
            msg_type = msg["msg_type"]
            if msg_type == "status":
                if msg["content"]["execution_state"] == "idle":
                    return comm_replies
            elif collector is not None:
                collector.add(msg)
            elif msg_type == "comm_msg":
                comm_replies.append(msg)

    async def watch_death(self) -> None:
        """Return once the kernel has died."""
        # a process exit has no event to await, so poll; cheap (one waitid call)
        while self.backend.is_alive():  # noqa: ASYNC110
            await asyncio.sleep(_DEATH_POLL)

    async def await_or_die(self, work: Coroutine[Any, Any, T], timeout: float) -> T:
        """``work``'s result, unless the kernel dies or the time runs out first.

        Raises:
            KernelDied: with the kernel's exit reason.
            TimeoutError: when ``timeout`` seconds pass first.
        """
        task = asyncio.ensure_future(work)
        death = asyncio.ensure_future(self.watch_death())
        try:
            done, _ = await asyncio.wait(
                {task, death}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            death.cancel()
            if not task.done():
                task.cancel()
        if task in done:
            return task.result()
        if death in done:
            raise KernelDied(self.backend.exit_reason())
        raise TimeoutError(f"the managed kernel did not answer within {timeout:g} s")

    async def _shell_reply(self, msg_id: str) -> Message:
        while True:
            msg = await self.backend.shell_reply()
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg


def bootstrap_code(options: dict[str, Any]) -> str:
    """Code that installs :mod:`agentnb.kernel.inside`, leaving no user variable."""
    source = _inside_source()
    return (
        "def __agentnb_setup():\n"
        "    import sys, types\n"
        "    module = types.ModuleType('agentnb_inside')\n"
        f"    exec(compile({source!r}, 'agentnb_inside.py', 'exec'), module.__dict__)\n"
        "    sys.modules['agentnb_inside'] = module\n"
        f"    module.report = module.setup({options!r})\n"
        "__agentnb_setup()\n"
        "del __agentnb_setup\n"
    )


@functools.cache
def _inside_source() -> str:
    # read once per process, not at every kernel (re)start
    return resources.files(__package__).joinpath("inside.py").read_text("utf-8")

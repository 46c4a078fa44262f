"""The one bridge from synchronous code to agentnb's async core.

The CLI and ``agentnb.run`` are synchronous; the core is not. Rather than a second,
blocking copy of every class, a :class:`SyncBridge` runs coroutines on one private
event loop in a daemon thread. Objects created through a bridge (kernels, their
sockets) belong to its loop, so keep using them through the same bridge.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["SyncBridge"]

T = TypeVar("T")


class SyncBridge:
    """Runs coroutines to completion from synchronous code.

    Works where an event loop is already running in the calling thread (inside
    IPython), which ``asyncio.run`` refuses to do.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the bridge's loop and return at once."""
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` and return its result.

        A KeyboardInterrupt while waiting cancels the coroutine (a step in the
        managed kernel is interrupted) and is raised again.
        """
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except (KeyboardInterrupt, concurrent.futures.TimeoutError):
            future.cancel()
            # let the cancellation run its cleanup before returning control
            concurrent.futures.wait([future], timeout=5)
            raise

    def close(self) -> None:
        """Stop the loop and its thread (pending coroutines are cancelled)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=_serve, args=(loop,), name="agentnb-sync-bridge", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

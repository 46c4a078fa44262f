"""The managed kernel: where every line of agent-written code runs.

:class:`ManagedKernel` holds the policy, once, for any backend: a step's outputs,
its time limit (interrupt, then restart if the kernel does not settle), death
detection and restart, the data pushed in (restored after a restart), and a
kernel started ahead of time so that the first step does not wait for it.

One module past the usual length on purpose: the kernel's lifecycle, steps,
interrupts and restarts share one lock and one state.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import itertools
import logging
import os
import time
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal

from ..chat.messages import DisplayUpdate, Execution, ExecutionStatus
from ..errors import DataTransferError, KernelError, KernelStartError
from .backend import KernelBackend, Message
from .channel import COMM_TARGET, Channel, KernelDied, bootstrap_code
from .config import KernelConfig
from .environment import scrubbed_environ
from .gateway import GatewayBackend, remote_environ
from .local import LocalBackend
from .outputs import Displays, Output, OutputCollector
from .sandbox import SandboxSettings, default_memory_limit, inside, sandbox_from_env
from .transfer import decode_pull, encode_push, push_failure

__all__ = ["ManagedKernel"]

log = logging.getLogger(__name__)

_DRAIN_AFTER_DEATH = 0.2  # seconds to collect what a dying kernel had already sent
_INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
_INCARNATIONS = itertools.count(1)


class ManagedKernel:
    """A Jupyter kernel that agentnb starts, owns, limits, restarts and shuts down.

    Use it as an async context manager, or call :meth:`start` (or :meth:`prewarm`)
    and :meth:`shutdown`. One request runs at a time; :meth:`interrupt` may be
    called while a step runs. Synchronous callers go through
    :class:`agentnb.SyncBridge`.

    Args:
        config: limits, working directory and environment (:class:`KernelConfig`).
        backend: where the kernel runs; by default a local process, or a kernel on
            ``config.gateway`` when that is set.
    """

    def __init__(
        self, config: KernelConfig | None = None, *, backend: KernelBackend | None = None
    ) -> None:
        self.config = config or KernelConfig()
        self._backend: KernelBackend = backend or _default_backend(self.config)
        self._channel = Channel(self._backend)
        self._lock = asyncio.Lock()
        self._starting: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False
        self._pushed: dict[str, Any] = {}
        self._comm_id = ""
        self._displays = Displays()  # a kernel's display ids and Output widgets
        self._interrupted: asyncio.Event | None = None
        self._running = False
        self._queued = 0  # execute() calls waiting for the start or the lock
        self._interrupt_queued = False
        self.preloaded: tuple[str, ...] = ()
        """Modules the kernel imported at start (see ``KernelConfig.preload``)."""
        self.incarnation = 0
        """Which kernel process runs now, restarts included: a number no other kernel
        process started here had (0 before the first). The executions of one share
        its execution counts and display ids."""
        # Whatever happens to this object, its kernel process does not outlive it
        # (garbage collection or interpreter exit; a hard crash of this process is
        # covered by the kernel's own parent-process poller).
        self._finalizer = weakref.finalize(self, self._backend.kill_now)

    # --- lifecycle -----------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The kernel's process id (local backend), or None before start."""
        return self._backend.pid

    @property
    def log_path(self) -> Path | None:
        """The file that receives the kernel's own stdout and stderr."""
        return self._backend.log_path

    @property
    def isolation(self) -> str:
        """How the kernel is kept from the user's secrets, files and network, in words."""
        backend = self._backend
        if isinstance(backend, GatewayBackend):
            return (
                f"on the gateway {self.config.gateway}: isolated as that gateway isolates "
                "its kernels (agentnb's sandbox does not apply)"
            )
        if not isinstance(backend, LocalBackend):
            return f"on {type(backend).__name__}: isolated as that backend isolates its kernels"
        if backend.sandbox is not None:
            return backend.sandbox.describe()
        if not backend.sandboxed:
            return (
                "NOT sandboxed (--sandbox off): the agents' code runs as you, with your "
                "files, your network and your other kernels"
            )
        return "sandboxed (not started yet)"

    @property
    def sandboxed(self) -> bool | None:
        """True for a local sandboxed kernel, False for an unsandboxed one, None remote."""
        backend = self._backend
        return backend.sandboxed if isinstance(backend, LocalBackend) else None

    @property
    def scratch(self) -> str | None:
        """The folder the sandboxed kernel writes to (None unsandboxed or not started)."""
        backend = self._backend
        if isinstance(backend, LocalBackend) and backend.sandbox is not None:
            return backend.sandbox.scratch
        return None

    def can_read(self, path: str | os.PathLike[str]) -> bool:
        """Whether code in this kernel can open ``path`` of this machine: not on a
        gateway, nor in a sandbox where the path is outside the working folder and
        ``readable``, or hidden (a dotfile)."""
        if self.config.gateway:
            return False
        if not self.sandboxed:
            return True
        real = os.path.realpath(path)
        for folder in (self.config.cwd or os.getcwd(), *self.config.readable):
            folder = os.path.realpath(folder)
            if inside(real, folder):
                below = os.path.relpath(real, folder).split(os.sep)
                return not any(part.startswith(".") for part in below if part != ".")
        return False

    @property
    def is_started(self) -> bool:
        return self._started and not self._closed

    def prewarm(self) -> None:
        """Start the kernel in the background on the running event loop.

        Returns at once; the next request waits for the start only if it has not
        finished. A failed start is logged here and raised by the next request.
        """
        if self._closed or self._started or self._starting is not None:
            return
        self._starting = asyncio.get_running_loop().create_task(self._start())
        self._starting.add_done_callback(_log_failure)

    async def start(self) -> None:
        """Start the kernel (or wait for the start :meth:`prewarm` began)."""
        if self._closed:
            raise KernelError("this managed kernel has been shut down; create a new ManagedKernel")
        if self._started:
            return
        if self._starting is None or self._starting.done():
            # nothing under way, or an earlier start (or restart) has failed
            self._starting = asyncio.get_running_loop().create_task(self._start())
        task = self._starting
        try:
            # shielded: a caller that gives up waiting does not abort the start
            await asyncio.shield(task)
        finally:
            if task.done() and (task.cancelled() or task.exception() is not None):
                self._starting = None  # let the next request try again

    async def restart(self) -> None:
        """A fresh kernel process; pushed data is loaded into it again."""
        await self.start()
        async with self._lock:
            await self._restart()

    async def shutdown(self) -> None:
        """End the kernel and everything it started. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        await self._stop()

    async def _stop(self) -> None:
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            await asyncio.gather(self._starting, return_exceptions=True)
        await self._backend.stop(graceful=True, final=True)
        self._finalizer.detach()

    def close(self) -> None:
        """Begin :meth:`shutdown` and return at once.

        With an event loop running, the shutdown continues as a task on it;
        without one (interpreter exit, plain scripts), the kernel's process
        group is killed on the spot.
        """
        if self._closed:
            return
        self._closed = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._finalizer()  # kill_now, once
            return
        loop.create_task(self._stop()).add_done_callback(_log_failure)

    async def __aenter__(self) -> ManagedKernel:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def _start(self) -> None:
        config = self.config
        cwd = os.path.abspath(config.cwd or os.getcwd())
        if isinstance(self._backend, GatewayBackend):
            # the user's environment stays here; the gateway decides the kernel's
            env = remote_environ(
                os.environ, extra=config.env, launch_timeout=config.startup_timeout
            )
        else:
            env = scrubbed_environ(
                os.environ,
                allow=config.env_allow,
                extra={"MPLBACKEND": _INLINE_BACKEND, "PWD": cwd, **config.env},
            )
        await self._backend.start(env=env, cwd=cwd, timeout=config.startup_timeout)
        self.incarnation = next(_INCARNATIONS)
        self._displays = Displays()  # a new kernel has none of the old one's
        try:
            report = await self._bootstrap()
            self.preloaded = tuple(report.get("preloaded", ()))
            await self._restore_pushed()
        except BaseException:
            await self._backend.stop(graceful=False, final=False)
            raise
        self._started = True
        log.debug("managed kernel %s ready in %s", self.pid, cwd)

    async def _restart(self) -> None:
        self._started = False
        await self._backend.stop(graceful=False, final=False)
        await self._start()

    async def _bootstrap(self) -> dict[str, Any]:
        limits = self.config.output_limits
        options = {
            "preload": list(self.config.preload),
            "stream_head": limits.stream_head,
            "stream_tail": limits.stream_tail,
            "max_outputs": limits.max_outputs,
            "memory_limit": self._backend_memory_limit(),
            "max_processes": self.config.max_processes if self.sandboxed else None,
            "sandboxed": bool(self.sandboxed),
            "cpu_time_limit": self.config.cpu_time_limit,
            "crash_log": str(self.log_path) if self.log_path else None,
        }
        msg_id = self._channel.execute_request(
            bootstrap_code(options),
            silent=True,
            user_expressions={"report": "__import__('sys').modules['agentnb_inside'].report"},
        )
        try:
            reply, _ = await self._channel.await_or_die(
                self._channel.reply_and_idle(
                    msg_id, OutputCollector(), iopub_timeout=self.config.iopub_timeout
                ),
                self.config.startup_timeout,
            )
        except (KernelDied, TimeoutError) as err:
            reason = (
                f"did not finish setting up within {self.config.startup_timeout:g} s"
                if isinstance(err, TimeoutError)
                else f"{err} while being set up"
            )
            tail = self._backend.log_tail()
            raise KernelStartError(
                f"the managed kernel {reason}"
                + (f"; its log ends with:\n{tail}" if tail else "")
                + (". Is memory_limit too low?" if self.config.memory_limit else "")
            ) from None
        content = reply["content"]
        if content["status"] != "ok":
            raise KernelError(
                f"the managed kernel could not be set up: {content.get('ename')}: "
                f"{content.get('evalue')}"
            )
        report = content["user_expressions"]["report"]["data"]["text/plain"]
        self._comm_id = os.urandom(16).hex()
        self._backend.send(
            "comm_open", {"comm_id": self._comm_id, "target_name": COMM_TARGET, "data": {}}
        )
        result: dict[str, Any] = ast.literal_eval(report)
        return result

    def _backend_memory_limit(self) -> int | None:
        backend = self._backend
        if isinstance(backend, LocalBackend) and backend.sandbox is not None:
            return backend.sandbox.memory_limit
        return self.config.memory_limit

    # --- running code --------------------------------------------------------------

    async def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        on_output: Callable[[list[Output]], None] | None = None,
    ) -> Execution:
        """Run ``code`` and return what happened; failures of the code are data.

        ``on_output`` is given the outputs so far while the step runs, whenever
        they changed, at most every :data:`OUTPUT_EVERY` seconds (a view shows a
        running step as a notebook cell does).

        Raises:
            KernelError: only when the kernel itself cannot be (re)started.
        """
        self._queued += 1
        try:
            await self.start()
            await self._lock.acquire()
        finally:
            self._queued -= 1
        try:
            if self._interrupt_queued:
                self._interrupt_queued = False
                note = "interrupted before it started; nothing ran"
                return Execution(
                    code=code,
                    status="interrupted",
                    outputs=(),
                    execution_count=None,
                    duration=0.0,
                    note=note,
                )
            self._running = True
            return await self._execute(code, timeout or self.config.step_timeout, on_output)
        finally:
            self._running = False
            self._lock.release()

    async def interrupt(self) -> None:
        """Interrupt the running step, which then ends with status ``interrupted``.

        A step still waiting for the kernel to start is interrupted before it runs.
        """
        if self._running and self._interrupted is not None:
            self._interrupted.set()
            await self._backend.interrupt()
        elif self._queued:
            self._interrupt_queued = True

    async def _execute(
        self,
        code: str,
        timeout: float,
        on_output: Callable[[list[Output]], None] | None = None,
    ) -> Execution:
        backend = self._backend
        collector = OutputCollector(self.config.output_limits, self._displays)
        ticker = asyncio.ensure_future(_report_outputs(collector, on_output)) if on_output else None
        log_mark = backend.log_size()
        self._interrupted = interrupted = asyncio.Event()
        replied = asyncio.Event()
        started = time.perf_counter()
        msg_id = self._channel.execute_request(code)
        work = asyncio.ensure_future(
            self._channel.reply_and_idle(
                msg_id, collector, iopub_timeout=self.config.iopub_timeout, on_reply=replied.set
            )
        )
        death = asyncio.ensure_future(self._channel.watch_death())
        stop = asyncio.ensure_future(interrupted.wait())
        cause: Literal["timeout", "interrupted"] | None = None
        deadline = started + timeout
        try:
            while True:
                waiting = {work, death} if cause or replied.is_set() else {work, death, stop}
                # once the reply has come the step is over, whatever the clock says:
                # only its last outputs are awaited, and not for long (reply_and_idle)
                remaining = None if replied.is_set() else max(deadline - time.perf_counter(), 0)
                done, _ = await asyncio.wait(
                    waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                if work in done or death in done:
                    break
                if replied.is_set():
                    continue
                if stop in done:
                    cause = "interrupted"
                elif cause is None:
                    cause = "timeout"
                    await backend.interrupt()
                else:
                    break  # interrupted, and still busy after the grace period
                deadline = time.perf_counter() + self.config.interrupt_grace
            if death in done and work not in done:
                # keep what the kernel sent before it went
                await asyncio.wait({work}, timeout=_DRAIN_AFTER_DEATH)
        except asyncio.CancelledError:
            await backend.interrupt()  # a cancelled caller leaves no step running
            raise
        finally:
            for task in (death, stop, ticker):
                if task is not None:
                    task.cancel()
            if not work.done():
                work.cancel()
        reply, complete = work.result() if work.done() and not work.cancelled() else (None, True)
        duration = time.perf_counter() - started
        return await self._conclude(
            code, collector, reply, cause, duration, timeout, log_mark, complete=complete
        )

    async def _conclude(
        self,
        code: str,
        collector: OutputCollector,
        reply: Message | None,
        cause: Literal["timeout", "interrupted"] | None,
        duration: float,
        timeout: float,
        log_mark: int,
        *,
        complete: bool = True,
    ) -> Execution:
        """Decide the status, restart the kernel if it must, and say so."""
        content = reply["content"] if reply else {}
        collector.execution_count = content.get("execution_count")
        updates = tuple(
            DisplayUpdate(execution_count=count, outputs=tuple(outputs))
            for count, outputs in self._displays.finish(collector)
        )
        for comm_id, outputs in self._displays.captured_state():
            # as a frontend does (nbclient too): the widget in the kernel learns what
            # it shows; sent before the next request, handled before it
            with contextlib.suppress(Exception):
                self._backend.send(
                    "comm_msg",
                    {
                        "comm_id": comm_id,
                        "data": {
                            "method": "update",
                            "state": {"outputs": outputs},
                            "buffer_paths": [],
                        },
                    },
                )
        notes: list[str] = []
        status: ExecutionStatus
        restarted = False
        if self._closed:
            status = "interrupted"
            notes.append("The managed kernel was shut down while this step ran.")
        elif reply is None and not self._backend.is_alive():
            status = "died"
            reason = self._backend.exit_reason()
            tail = self._backend.log_tail(log_mark)
            await self._restart()
            restarted = True
            notes.append(
                f"The kernel {reason} while running this step, so it was restarted: "
                f"{self._lost_state()}"
            )
            if tail:
                notes.append(f"The kernel's log ends with:\n{tail}")
        elif reply is None:
            assert cause is not None
            status = cause
            await self._restart()
            restarted = True
            notes.append(
                f"{_cause_text(cause, timeout=timeout)} It did "
                f"not stop when interrupted, so the kernel was restarted: "
                f"{self._lost_state()}"
            )
        elif cause is not None:
            status = cause
            notes.append(
                f"{_cause_text(cause, timeout=timeout)} The "
                "kernel kept its state: variables from earlier steps still exist."
            )
        elif content.get("ename") == "CPUTimeLimitExceeded":
            status = "timeout"
            notes.append(
                f"The step used more than {self.config.cpu_time_limit:g} s of CPU "
                "time and was stopped. The kernel kept its state."
            )
        else:
            status = "ok" if content.get("status") == "ok" else "error"
        if reply is not None and not complete:
            notes.append(
                "The step finished, but its last output messages did not arrive (the "
                "kernel's output channel drops messages when it is flooded or the machine "
                "is busy), so its output may be incomplete. The kernel kept its state."
            )
        truncated = collector.truncation_notes()
        if truncated:
            notes.append("Output was cut: " + "; ".join(truncated) + ".")
        return Execution(
            code=code,
            status=status,
            outputs=tuple(collector.outputs()),
            execution_count=content.get("execution_count"),
            duration=duration,
            restarted=restarted,
            note="\n".join(notes),
            updates=updates,
        )

    def _lost_state(self) -> str:
        text = "variables defined by earlier steps are gone"
        if self._pushed:
            text += (
                "; the data given to the agents was loaded again ("
                + ", ".join(sorted(self._pushed))
                + ")"
            )
        return text + "."

    # --- data ----------------------------------------------------------------------

    async def push(self, name: str, value: Any) -> str:
        """Make ``value`` a variable called ``name`` in the kernel; return a summary.

        The value is kept and pushed again whenever the kernel restarts.

        Raises:
            DataTransferError: the value cannot be pickled, the name is not a valid
                variable name, or the kernel could not load it.
        """
        frames = encode_push(name, value)
        await self.start()
        async with self._lock, self._restart_on_death(name):
            summary = await self._push_frames(name, frames)
        self._pushed[name] = value
        return summary

    async def pull(self, name: str) -> Any:
        """A copy of the kernel's variable ``name`` (DataFrame, Series, array or JSON).

        Raises:
            DataTransferError: no such variable, or a type that cannot be pulled
                safely (the message says how to convert it).
        """
        await self.start()
        async with self._lock, self._restart_on_death(name):
            reply = await self._data_request({"op": "pull", "name": name}, (), name)
        data = reply["content"]["data"]
        if not data.get("ok"):
            raise DataTransferError(
                f"cannot pull {name!r} from the agents' kernel: {data.get('error')}"
            )
        return decode_pull(data, reply.get("buffers") or [])

    async def _push_frames(self, name: str, frames: list[Any]) -> str:
        reply = await self._data_request({"op": "push", "name": name}, frames, name)
        data = reply["content"]["data"]
        if not data.get("ok"):
            raise push_failure(name, str(data.get("error")))
        return str(data.get("summary", ""))

    async def _data_request(self, request: dict[str, Any], frames: Any, name: str) -> Message:
        msg_id = self._backend.send(
            "comm_msg", {"comm_id": self._comm_id, "data": request}, buffers=frames
        )
        try:
            replies = await self._channel.await_or_die(
                self._channel.drain(msg_id, None), self.config.step_timeout
            )
        except TimeoutError as err:
            raise DataTransferError(f"moving {name!r} failed: {err}") from None
        if not replies:
            raise DataTransferError(f"the agents' kernel did not answer about {name!r}")
        return replies[-1]

    @contextlib.asynccontextmanager
    async def _restart_on_death(self, name: str) -> AsyncIterator[None]:
        try:
            yield
        except KernelDied as died:
            await self._restart()
            raise DataTransferError(
                f"the agents' kernel {died} while handling {name!r}; it was restarted"
            ) from None

    async def _restore_pushed(self) -> None:
        """Push the kept data into a new kernel; what fails is dropped, and said."""
        for name, value in list(self._pushed.items()):
            try:
                await self._push_frames(name, encode_push(name, value))
            except DataTransferError as err:
                log.warning("could not load %r into the restarted kernel: %s", name, err)
                del self._pushed[name]
            except KernelDied as died:
                # restarting here again could loop forever on the same value
                del self._pushed[name]
                raise KernelStartError(
                    f"the managed kernel {died} while loading {name!r} again, so {name!r} "
                    "is no longer given to the agents; the next request starts a kernel "
                    "without it"
                ) from None


def _default_backend(config: KernelConfig) -> KernelBackend:
    if config.gateway:
        return GatewayBackend(
            config.gateway, token=config.gateway_token, kernel_name=config.gateway_kernel
        )
    sandboxed = config.sandbox if config.sandbox is not None else sandbox_from_env()
    if not sandboxed:
        return LocalBackend(config.python)
    return LocalBackend(
        config.python,
        sandbox=SandboxSettings(
            network=config.network,
            readable=config.readable,
            max_processes=config.max_processes,
            memory_limit=config.memory_limit or default_memory_limit(),
            scratch=config.scratch,
        ),
    )


def _cause_text(cause: str, *, timeout: float) -> str:
    if cause == "timeout":
        return f"The step ran longer than {timeout:g} s and was interrupted."
    return "The step was interrupted on request."


def _log_failure(task: asyncio.Task[None]) -> None:
    """Done-callback of background tasks: a failure is logged, never lost."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("managed kernel: %s", task.exception())


OUTPUT_EVERY = 0.5
"""Seconds between reports of a running step's outputs."""


async def _report_outputs(
    collector: OutputCollector, on_output: Callable[[list[Output]], None]
) -> None:
    """Give ``on_output`` the step's outputs whenever they changed."""
    last: list[Output] = []
    while True:
        await asyncio.sleep(OUTPUT_EVERY)
        now = collector.outputs()
        if now != last:
            last = now
            try:
                on_output(now)
            except Exception:  # a view's failure must not end the step
                log.exception("a view failed to show a running step's output")
